"""The multislice regularisation's strength, chosen on a family of thick samples (not on one set).

For every set of the family (the small set's geometry: 192^2 object, 64^2 probe, 150 positions; 2 slices 1, 2 and
4 depths of field (2 dx^2 / lambda) apart at 1e5 and 1e6 photons per pattern, and 3 slices 2 depths apart at
1e6) and every ``slice_regularization`` of ``--strengths``, ptyhpc reconstructs the slices (LSQML and rPIE,
``--epochs`` from the usual starting probe, 1 process) and scores each slice against the truth (NRMSE, ramp
removed). Prints, per algorithm and strength, the worse slice's error averaged over the family, its largest value
and the mean ratio to no regularisation. ``--batch`` sets the positions per batch (0: each algorithm's default).
Writes benchmarks/slice_regularization.json (``--output`` names it).

    .venv/bin/python scripts/bench_slice_regularization.py [--epochs 100] [--strengths 0 0.05 0.1 0.2 0.4]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import save  # noqa: E402

from ptyhpc.compare import object_errors  # noqa: E402
from ptyhpc.config import ReconConfig  # noqa: E402
from ptyhpc.engine import Reconstruction  # noqa: E402
from ptyhpc.io.dataset import from_arrays  # noqa: E402
from ptyhpc.simulate import SimConfig, initial_probe_guess, simulate  # noqa: E402

FAMILY = [(2, 1.0, 1e5), (2, 1.0, 1e6), (2, 2.0, 1e5), (2, 2.0, 1e6), (2, 4.0, 1e5), (2, 4.0, 1e6), (3, 2.0, 1e6)]
"""(slices, spacing in depths of field, photons per pattern) of each set."""


def thick(slices: int, depths: float, photons: float):
    base = SimConfig(object_size=192, probe_size=64, positions=150, probe_diameter=22, aperture_radius=8,
                     photons=photons)
    pixel, wavelength, _ = base.geometry()
    cfg = dataclasses.replace(base, slices=slices, slice_spacing_m=depths * 2 * pixel ** 2 / wavelength)
    patterns, scan, obj, _, mask = simulate(cfg)
    d = dataclasses.replace(from_arrays(patterns, scan, mask=mask, pixel_size=pixel), wavelength=wavelength,
                            distance=cfg.distance_m, detector_pixel=cfg.detector_pixel_m)
    return d, obj, scan, cfg.slice_spacing_m, initial_probe_guess(cfg)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.4])
    p.add_argument("--algorithms", nargs="+", default=["lsqml", "rpie"])
    p.add_argument("--batch", type=int, default=0, help="positions per batch (0: each algorithm's default)")
    p.add_argument("--output", default="slice_regularization")
    args = p.parse_args()
    rows = []
    for slices, depths, photons in FAMILY:
        d, truth, scan, spacing, p0 = thick(slices, depths, photons)
        for algorithm in args.algorithms:
            for strength in args.strengths:
                cfg = ReconConfig(algorithm=algorithm, epochs=args.epochs, slices=slices, slice_spacing_m=spacing,
                                  slice_regularization=strength, batch_size=args.batch, device="cpu")
                rec = Reconstruction(d, cfg, probe=p0)
                rec.iterate(cfg.epochs)
                errors = [object_errors(a, d.scan, b, scan, d.n)["object_nrmse_ramp"]
                          for a, b in zip(rec.gather_object(), truth)]
                rows.append({"slices": slices, "depths_of_field": depths, "photons": photons,
                             "algorithm": algorithm, "strength": strength, "slice_nrmse_ramp": errors,
                             "worst": max(errors)})
                print(f"  {slices} slices, {depths:g} DOF, {photons:.0e} photons, {algorithm:5s} strength "
                      f"{strength:<5g}: " + " ".join(f"{e:.4f}" for e in errors), flush=True)
    summary = {}
    print("\nworse slice's NRMSE (ramp removed) over the family: mean, max, mean ratio to strength 0")
    for algorithm in args.algorithms:
        free = {(r["slices"], r["depths_of_field"], r["photons"]): r["worst"] for r in rows
                if r["algorithm"] == algorithm and r["strength"] == 0.0}
        for strength in args.strengths:
            sel = [r for r in rows if r["algorithm"] == algorithm and r["strength"] == strength]
            worst = [r["worst"] for r in sel]
            ratio = [r["worst"] / free[(r["slices"], r["depths_of_field"], r["photons"])] for r in sel] if free else []
            summary[f"{algorithm} {strength:g}"] = {"mean": float(np.mean(worst)), "max": float(np.max(worst)),
                                                   "mean_ratio_to_none": float(np.mean(ratio)) if ratio else None}
            s = summary[f"{algorithm} {strength:g}"]
            print(f"  {algorithm:5s} {strength:<5g} mean {s['mean']:.4f}  max {s['max']:.4f}  "
                  + (f"ratio {s['mean_ratio_to_none']:.3f}" if ratio else ""))
    save(args.output, {"ranks": 1, "epochs": args.epochs, "batch": args.batch, "family": FAMILY, "rows": rows,
                       "summary": summary})


if __name__ == "__main__":
    main()
