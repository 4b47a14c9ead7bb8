"""Position correction on the standard simulated set: what issue 13 asks of it, measured.

The standard set (512^2 object, 128^2 probe, 700 positions, 1e6 photons; ``ptyhpc simulate``) once with its true
positions and once with recorded positions 2 px (normal, per coordinate) random errors and a 4 px linear drift
off them (``--position-error 2 --position-drift 4``; the patterns are the same). For rPIE and LSQML, 100 epochs
from the usual starting probe, 1 process:

- ``true``: the true positions, no correction (the reference);
- ``recorded``: the recorded positions, no correction;
- ``corrected``: the recorded positions with ``--correct-positions`` (defaults);
- ``true corrected``: the true positions with correction on (it must not make them worse).

Prints and records (benchmarks/positions.json) the object NRMSE (ramp removed, ptyhpc.compare.object_errors), its
ratio to ``true``, the RMS position error after the mean offset (ptyhpc.compare.position_error) and the seconds
per epoch (median of epochs 2..E), the affine map fitted to the final corrections (``position_model``), and the
position error's parts (ptyhpc.compare.position_error_parts): the part a linear map of the true positions
explains, split into scale and shear (which correction holds, ptyhpc.positions) and rotation, and the rest.
``--seeds`` repeats it on independently simulated sets; ``--set KEY=VALUE`` changes a setting of the corrected
runs (e.g. ``position_affine=true``, ``subpixel=bilinear``) and ``--output`` names the record.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import save  # noqa: E402

from ptyhpc.compare import object_errors, position_error, position_error_parts  # noqa: E402
from ptyhpc.config import ReconConfig  # noqa: E402
from ptyhpc.engine import Reconstruction  # noqa: E402
from ptyhpc.io import load  # noqa: E402
from ptyhpc.io.product import read_product  # noqa: E402
from ptyhpc.simulate import SimConfig, initial_probe_guess, write  # noqa: E402

RUNS = (("true", False, False), ("recorded", True, False), ("corrected", True, True), ("true corrected", False, True))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--algorithms", nargs="+", default=["rpie", "lsqml"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--output", default="positions")
    args = p.parse_args()
    settings = {k: ReconConfig.parse(k, v) for k, v in (item.split("=", 1) for item in args.set)}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            sim = SimConfig(seed=seed, position_error=2.0, position_drift=4.0)
            files = {True: os.path.join(tmp, f"recorded{seed}.cxi"), False: os.path.join(tmp, f"true{seed}.cxi")}
            write(files[True], sim)
            write(files[False], SimConfig(seed=seed))
            truth = read_product(os.path.join(tmp, f"recorded{seed}_truth.h5"))
            p0 = initial_probe_guess(sim)
            for algorithm in args.algorithms:
                rows = {}
                for name, recorded, correct in RUNS:
                    d = load(files[recorded])
                    cfg = ReconConfig(algorithm=algorithm, epochs=args.epochs, device="cpu", correct_positions=correct,
                                      **(settings if correct else {}))
                    t0 = time.perf_counter()
                    rec = Reconstruction(d, cfg, probe=p0)
                    rec.iterate(args.epochs)
                    scan = rec.gather_scan()
                    e = object_errors(rec.gather_object(), scan, truth["object"], truth["scan"], d.n)
                    rows[name] = {"nrmse_ramp": e["object_nrmse_ramp"], "position_error_px":
                                  position_error(scan, truth["scan"]),
                                  "position_error_parts": position_error_parts(scan, truth["scan"]),
                                  "s_per_epoch": float(np.median(rec.history.seconds[1:])),
                                  "wall_s": time.perf_counter() - t0}
                    if correct:
                        rows[name]["position_model"] = rec.position_model().to_dict()
                for name, row in rows.items():
                    row["nrmse_vs_true"] = row["nrmse_ramp"] / rows["true"]["nrmse_ramp"]
                    scale = np.diag(row["position_model"]["matrix"]) if "position_model" in row else np.zeros(2)
                    parts = row["position_error_parts"]
                    print(f"seed {seed} {algorithm:5s} {name:15s} NRMSE {row['nrmse_ramp']:.4f} "
                          f"({row['nrmse_vs_true']:.2f}x true)  positions {row['position_error_px']:.3f} px  "
                          f"{row['s_per_epoch']:.3f} s/epoch  scale of the corrections {scale[0]:+.4f} "
                          f"{scale[1]:+.4f}; position error's parts: scale and shear {parts['scale_shear_px']:.3f}, "
                          f"rotation {parts['rotation_px']:.3f}, rest {parts['rest_px']:.3f} px", flush=True)
                results.append({"seed": seed, "algorithm": algorithm, "runs": rows})
    save(args.output, {"ranks": 1, "epochs": args.epochs, "settings": args.set, "set": "standard (512^2, 128^2 probe, "
                       "700 positions, 1e6 photons); recorded positions: 2 px random + 4 px drift", "results": results})


if __name__ == "__main__":
    main()
