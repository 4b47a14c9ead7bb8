"""OPR (--opr-modes) on a probe that varies along the scan and on a constant one: object NRMSE with and without.

The small simulated set of the tests (192^2 object, 64 px probe with a 22 px spot, 150 positions, 1e6 photons),
once with a probe whose defocus drifts by +-F and intensity by +-F/2 along the scan (``--probe-variation F``) and
once constant; rPIE and LSQML, 100 epochs from the usual starting probe, 1 process, without OPR and with
``--modes`` variable modes. Prints the object NRMSE (ramp removed) and writes benchmarks/opr.json.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import save  # noqa: E402

from ptyhpc.compare import object_errors  # noqa: E402
from ptyhpc.config import ReconConfig  # noqa: E402
from ptyhpc.engine import Reconstruction  # noqa: E402
from ptyhpc.io.dataset import from_arrays  # noqa: E402
from ptyhpc.simulate import SimConfig, initial_probe_guess, simulate  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--modes", type=int, default=3)
    p.add_argument("--variation", type=float, default=0.3)
    args = p.parse_args()
    rows = []
    for variation in (args.variation, 0.0):
        sim = SimConfig(object_size=192, probe_size=64, positions=150, probe_diameter=22, aperture_radius=8,
                        probe_variation=variation)
        patterns, scan, obj, _, mask = simulate(sim)
        for algorithm in ("lsqml", "rpie"):
            errors = {}
            for modes in (0, args.modes):
                d = from_arrays(patterns, scan, mask=mask)
                cfg = ReconConfig(algorithm=algorithm, epochs=args.epochs, device="cpu", opr_modes=modes)
                rec = Reconstruction(d, cfg, probe=initial_probe_guess(sim))
                rec.iterate(args.epochs)
                errors[modes] = object_errors(rec.gather_object(), rec.gather_scan(), obj, scan,
                                              d.n)["object_nrmse_ramp"]
            row = {"variation": variation, "algorithm": algorithm, "without": errors[0], "with": errors[args.modes],
                   "ratio": errors[args.modes] / errors[0]}
            rows.append(row)
            print(f"probe variation {variation:.2f}  {algorithm:5s}  without OPR {row['without']:.4f}  with "
                  f"{args.modes} modes {row['with']:.4f}  ratio {row['ratio']:.2f}", flush=True)
    save("opr", {"ranks": 1, "epochs": args.epochs, "modes": args.modes, "results": rows})


if __name__ == "__main__":
    main()
