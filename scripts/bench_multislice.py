"""Multislice over the epochs: each slice's error and the projection's, on the default set through a thick sample.

usage: python scripts/bench_multislice.py [--epochs 100] [--every 10] [--depths 2] [--algorithms lsqml,rpie]

``ptyhpc simulate --slices 2`` of the default set (512^2 object, 128^2 probe, 700 positions) with the slices
``--depths`` depths of field (2 dx^2 / lambda) apart; ptyhpc reconstructs 2 slices from the usual starting
probe, 1 process, and every ``--every`` epochs scores each slice and the slices' product against the truth's
(NRMSE, ramp removed) and records the misfit. Writes benchmarks/multislice.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ptyhpc, save  # noqa: E402

from ptyhpc.compare import object_errors  # noqa: E402
from ptyhpc.config import ReconConfig  # noqa: E402
from ptyhpc.engine import Reconstruction  # noqa: E402
from ptyhpc.io import load  # noqa: E402
from ptyhpc.io.product import read_product  # noqa: E402
from ptyhpc.simulate import SimConfig  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--depths", type=float, default=2.0)
    ap.add_argument("--algorithms", default="lsqml,rpie")
    args = ap.parse_args()
    pixel, wavelength, _ = SimConfig().geometry()
    spacing = args.depths * 2 * pixel ** 2 / wavelength
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data, probe = os.path.join(tmp, "thick.cxi"), os.path.join(tmp, "p0.npy")
        ptyhpc("simulate", data, "--slices", 2, "--slice-spacing", spacing, "--initial-probe", probe)
        truth = read_product(os.path.join(tmp, "thick_truth.h5"))
        d = load(data)
        for algorithm in args.algorithms.split(","):
            cfg = ReconConfig(algorithm=algorithm, slices=2, slice_spacing_m=spacing, device="cpu")
            rec = Reconstruction(d, cfg, probe=np.load(probe))

            def score(epoch, cost, seconds):
                if epoch % args.every:
                    return
                layers = rec.gather_object()
                each = [object_errors(a, d.scan, b, truth["scan"], d.n)["object_nrmse_ramp"]
                        for a, b in zip(layers, truth["layers"])]
                projection = object_errors(np.prod(layers, axis=0), d.scan, truth["object"], truth["scan"],
                                           d.n)["object_nrmse_ramp"]
                rows.append({"algorithm": algorithm, "epoch": epoch, "cost": cost, "slices": each,
                             "projection": projection})
                print(f"{algorithm:5s} epoch {epoch:4d}  misfit {cost:10.1f}  slices "
                      f"{', '.join(f'{e:.4f}' for e in each)}  projection {projection:.4f}", flush=True)

            rec.iterate(args.epochs, progress=score)
    save("multislice", {"epochs": args.epochs, "depths_of_field": args.depths, "slice_spacing_m": spacing,
                        "set": "ptyhpc simulate defaults, --slices 2", "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
