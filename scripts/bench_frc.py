"""FRC resolution of the real Velociprobe Siemens star (../shared/data) from its odd and even positions.

For each variant (plain; ``--correct-positions``; ``--opr-modes 3``; both) the odd and the even positions are
reconstructed separately on the whole scan's object grid (``ptyhpc reconstruct --subset odd|even``, rPIE, the
star's usual start: its modelled probe, a flat object) and compared with ``ptyhpc frc`` (registration, Fourier
ring correlation over the region both halves cover, half-bit threshold). Prints the full-period resolution in
object pixels (the file holds no geometry) and writes benchmarks/frc.json. ``--seeds`` repeats each variant with
other batch orders (``ptyhpc reconstruct --seed``) to size the spread; ``--set KEY=VALUE`` changes a setting of
every run; ``--output`` names the record.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, ptyhpc, save  # noqa: E402

STAR = os.path.join(os.path.dirname(ROOT), "shared", "data", "siemens-star-velociprobe", "siemens-star-small.npz.bz2")
VARIANTS = {"plain": [], "positions": ["--correct-positions"], "opr": ["--opr-modes", "3"],
            "positions+opr": ["--correct-positions", "--opr-modes", "3"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--algorithm", default="rpie")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[None], help="batch-order seeds (default: the default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting of every run")
    p.add_argument("--output", default="frc")
    args = p.parse_args()
    if not os.path.exists(STAR):
        sys.exit(f"{STAR} is missing (../shared/data beside the project)")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            for seed in args.seeds:
                name = variant if seed is None else f"{variant} seed {seed}"
                for half in ("odd", "even"):
                    ptyhpc("reconstruct", STAR, "-o", os.path.join(tmp, f"{half}.h5"), "--subset", half,
                           "--algorithm", args.algorithm, "--epochs", args.epochs, "--device", "cpu", "--no-preview",
                           "--quiet", *VARIANTS[variant], *([] if seed is None else ["--seed", seed]),
                           *(a for item in args.set for a in ("--set", item)),
                           ranks=args.ranks)
                out = ptyhpc("frc", os.path.join(tmp, "odd.h5"), os.path.join(tmp, "even.h5"), "--json").stdout
                r = json.loads(out)
                results[name] = {"variant": variant, "seed": seed, "resolution_px": r["resolution_px"],
                                 "shift_px": r["shift_px"], "region": r["region"], "frc": r["frc"],
                                 "threshold": r["threshold"]}
                print(f"{name:18s} FRC resolution {r['resolution_px']:.2f} px (full period, half-bit), halves "
                      f"registered by ({r['shift_px'][0]:+.2f}, {r['shift_px'][1]:+.2f}) px", flush=True)
    save(args.output, {"data": "siemens-star-velociprobe (516 positions; odd/even halves of 258)", "ranks": args.ranks,
                 "algorithm": args.algorithm, "epochs": args.epochs, "seeds": args.seeds, "settings": args.set,
                 "results": results})


if __name__ == "__main__":
    main()
