"""Accuracy of each algorithm on the default simulated set (512^2 object, 128^2 probe, 700 positions, 1e6
photons per pattern): 50 epochs from a flat object and the perturbed probe (25 % more defocus, no aberrations),
object NRMSE in the rectangle spanned by the scan centres after removing a global complex factor, and also a
linear phase ramp (the metric of ../shared/peers.md), plus the probe NRMSE. Targets: rPIE <= 0.05, LSQML <= 0.06,
DM <= 0.10. Writes benchmarks/accuracy.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import product_attrs, ptyhpc, save  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--ranks", type=int, default=2)
    args = p.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        data, probe = os.path.join(tmp, "sim.cxi"), os.path.join(tmp, "p0.npy")
        ptyhpc("simulate", data, "--initial-probe", probe)
        for algorithm in ("rpie", "lsqml", "dm"):
            out = os.path.join(tmp, f"{algorithm}.h5")
            ptyhpc("reconstruct", data, "-o", out, "--algorithm", algorithm, "--epochs", args.epochs,
                   "--probe", probe, "--no-preview", "--quiet", ranks=args.ranks)
            e = json.loads(ptyhpc("compare", out, os.path.join(tmp, "sim_truth.h5"), "--json").stdout)
            costs = product_attrs(out)
            rows[algorithm] = {k: e[k] for k in ("object_nrmse", "object_nrmse_ramp", "probe_nrmse", "final_cost")}
            print(f"{algorithm:6s} object NRMSE {e['object_nrmse']:.4f}, with the phase ramp removed "
                  f"{e['object_nrmse_ramp']:.4f}; probe NRMSE {e['probe_nrmse']:.4f}; final cost "
                  f"{e['final_cost']:.4g} ({costs['epochs']} epochs, {args.ranks} ranks)", flush=True)
    save("accuracy", {"ranks": [args.ranks], "epochs": args.epochs, "results": rows})


if __name__ == "__main__":
    main()
