"""Peak resident memory per rank, 1 rank vs 4 ranks, on a large simulated set (OS accounting: VmHWM).

Default: 2048^2 object, 128^2 probe, 4,200 positions (one pattern stack of 275 MB float32), DM (which keeps the
exit waves of its own positions, the largest per-position state). Each rank reads only its own patterns and
holds only its tile, so the per-rank peak should fall close to 1/R plus the fixed cost of a Python process.
``--slices S`` makes the sample thick (``ptyhpc simulate --slices S``, 2 depths of field apart) and reconstructs
S slices (multislice: every rank holds all slices of its tile). Writes benchmarks/memory.json (``--output``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import product_attrs, ptyhpc, save  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--object-size", type=int, default=2048)
    p.add_argument("--positions", type=int, default=4200)
    p.add_argument("--algorithm", default="dm")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 4])
    p.add_argument("--slices", type=int, default=1)
    p.add_argument("--output", default="memory")
    args = p.parse_args()
    thick = []
    if args.slices > 1:
        from ptyhpc.simulate import SimConfig

        pixel, wavelength, _ = SimConfig().geometry()
        thick = ["--slices", args.slices, "--slice-spacing", 4 * pixel ** 2 / wavelength]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "big.cxi")
        ptyhpc("simulate", data, "--object-size", args.object_size, "--positions", args.positions, *thick)
        size = os.path.getsize(data)
        print(f"{args.positions} patterns of 128x128 on a {args.object_size}^2 object: {size / 1e6:.0f} MB file")
        for ranks in args.ranks:
            out = os.path.join(tmp, f"out_{ranks}.h5")
            ptyhpc("reconstruct", data, "-o", out, "--algorithm", args.algorithm, "--epochs", args.epochs,
                   "--no-preview", "--quiet", *thick, ranks=ranks)
            rss = product_attrs(out)["peak_rss_bytes"]
            rows.append({"ranks": ranks, "peak_rss_bytes_per_rank": rss, "max": max(rss)})
            print(f"  {ranks} rank(s): peak RSS per rank {', '.join(f'{r / 2**20:.0f}' for r in rss)} MiB")
    base = rows[0]["max"]
    for row in rows:
        row["ratio_to_first"] = row["max"] / base
    print("  ratio of the largest rank's peak to 1 rank's: " +
          ", ".join(f"{r['ranks']} ranks {r['ratio_to_first']:.3f}" for r in rows))
    save(args.output, {"ranks": args.ranks, "object_size": args.object_size, "positions": args.positions,
                       "algorithm": args.algorithm, "slices": args.slices, "file_bytes": size, "rows": rows})


if __name__ == "__main__":
    main()
