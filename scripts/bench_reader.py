"""Memory of reading one's own patterns through Ptychodus' reader (``--reader APS_Velociprobe``), 1 and 4 ranks.

The file set: a scan in the APS Velociprobe layout (``simulate.write_velociprobe``: an Eiger master file with
external links to 8 data files of uint32 frames, 128^2, and a positions CSV), 8,000 frames (524 MB of frames).
Each run is ``mpiexec -n R python scripts/bench_reader.py --worker STEM``: every rank opens the set through
Ptychodus' readers (``io.load(..., reader=...)``), takes its share of ptyhpc's partition and reads it with
``Dataset.read_patterns``; it reports its peak resident memory (VmHWM) before and after the read and the size
of its patterns as float32. Ptychodus reads these frames from HDF5 (``H5DiffractionPatternArray``), so each rank
reads its own rows only: the read adds about its own share, not the scan. Writes benchmarks/reader.json.

    .venv/bin/python scripts/bench_reader.py [--frames 8000] [--ranks 1 4] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import save  # noqa: E402


def make(stem, count, n=128):
    """The Velociprobe-layout set: ``count`` frames cycling through a few hundred simulated ones, on a square
    raster with a 4-pixel step."""
    from ptyhpc.simulate import SimConfig, simulate, wavelength_from_ev, write_velociprobe

    cfg = SimConfig(object_size=384, probe_size=n, positions=256)
    base = simulate(cfg)[0]
    frames = np.fft.fftshift(base, axes=(-2, -1)).astype(np.uint32)[np.arange(count) % len(base)]
    side = int(np.ceil(np.sqrt(count)))
    px = wavelength_from_ev(cfg.energy_ev) * cfg.distance_m / (n * cfg.detector_pixel_m)
    yx = 4.0 * np.stack(np.divmod(np.arange(count), side), axis=1) * px
    return write_velociprobe(stem, cfg, frames, yx[:, 1], yx[:, 0], files=8)


def worker(stem):
    from mpi4py import MPI

    from ptyhpc.engine import peak_rss
    from ptyhpc.io import load
    from ptyhpc.partition import partition

    comm = MPI.COMM_WORLD
    d = load(f"{stem}_master.h5", reader="APS_Velociprobe", positions=f"{stem}_positions.csv",
             positions_reader="APS_Velociprobe_LI")
    mine = partition(d.scan, d.n, d.object_shape, comm.size).indices(comm.rank)
    before = peak_rss()
    patterns = d.read_patterns(mine).intensity
    facts = comm.gather({"rank": comm.rank, "patterns": len(mine), "pattern_bytes": int(patterns.nbytes),
                         "peak_rss_before_read": before, "peak_rss_after_read": peak_rss()}, root=0)
    if comm.rank == 0:
        print(json.dumps(facts))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=8000)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 4])
    p.add_argument("--keep", help="folder for the file set (default: a temporary one)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker)
    folder = args.keep or tempfile.mkdtemp(prefix="ptyhpc-reader-")
    stem = os.path.join(folder, "scan")
    if not os.path.exists(f"{stem}_master.h5"):
        make(stem, args.frames)
    runs = []
    for r in args.ranks:
        cmd = (["mpiexec", "-n", str(r)] if r > 1 else []) + [sys.executable, __file__, "--worker", stem]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        ranks = json.loads(out.strip().splitlines()[-1])
        added = max(x["peak_rss_after_read"] - x["peak_rss_before_read"] for x in ranks)
        share = max(x["pattern_bytes"] for x in ranks)
        print(f"{r} rank(s): largest share {share / 2**20:.0f} MiB of float32 patterns; the read raised a rank's "
              f"peak memory by at most {added / 2**20:.0f} MiB ({added / share:.2f}x its share)")
        runs.append({"ranks": r, "per_rank": ranks, "max_added_bytes": added, "max_share_bytes": share})
    save("reader", {"frames": args.frames, "frame_bytes": 128 * 128 * 4, "reader": "APS_Velociprobe",
                    "runs": runs})


if __name__ == "__main__":
    main()
