"""Read throughput of each rank reading its own patterns: 1, 2, 4 ranks, three read paths, on a >= 2 GB CXI.

The file: 33,000 diffraction patterns of 128^2 float32 (2.16 GB) in chunks of one pattern, as beamlines write
them, on a 182 x 182 raster with a 4-pixel step, written by ptyhpc's own CXI writer. Each run is ``mpiexec -n R
python scripts/bench_io.py --worker FILE``: every rank takes its share of the RCB partition ptyhpc itself uses
(spatially compact, so not one contiguous block of rows) and reads it through ``Dataset.read_patterns`` (the
path a reconstruction takes); the time is from a barrier before the reads to the slowest rank's end. Paths (see
PATHS): mpio with independent reads, mpio with one collective read per rank (PTYHPC_COLLECTIVE_READ=1), and
independent opens (what a serial h5py does; PTYHPC_MPIO=0). "cold": the page cache was dropped before the run
(needs root), so the disk is read; "warm": the same run again with the file cached, so what is measured is HDF5
and the copies. Writes benchmarks/io.json.

    .venv/bin/python scripts/bench_io.py [--patterns 33000] [--ranks 1 2 4] [--keep FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import save  # noqa: E402


class Repeated:
    """``count`` patterns cycling through ``base`` (BASE, N, N), sliceable along the first axis, never all in
    memory at once."""

    def __init__(self, base, count):
        self.base, self.shape, self.dtype = base, (count,) + base.shape[1:], base.dtype

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        return self.base[np.arange(len(self))[rows] % len(self.base)]


def make_file(path, count, n=128, seed=0):
    """A CXI of ``count`` Poisson patterns (a few hundred distinct ones repeated) on a square raster with a
    4-pixel step, written by the simulator's own CXI writer, block by block."""
    from ptyhpc.simulate import SimConfig, simulate, write_cxi

    cfg = SimConfig(object_size=384, probe_size=n, positions=256, seed=seed)
    base, _, _, _, mask = simulate(cfg)
    side = int(np.ceil(np.sqrt(count)))
    scan = 4.0 * np.stack(np.divmod(np.arange(count), side), axis=1)
    write_cxi(path, cfg, Repeated(base.astype(np.float32), count), scan, mask)


def worker(path):
    """One rank: read my partition share; rank 0 prints JSON with the slowest rank's time."""
    from mpi4py import MPI

    from ptyhpc.io import load
    from ptyhpc.partition import partition

    comm = MPI.COMM_WORLD
    d = load(path)
    mine = partition(d.scan, d.n, d.object_shape, comm.Get_size()).indices(comm.Get_rank())
    comm.Barrier()
    t0 = time.perf_counter()
    patterns = d.read_patterns(mine, comm).intensity
    seconds = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    read = comm.allreduce(d.patterns_read)
    runs = comm.allreduce(int((np.diff(np.sort(mine)) != 1).sum()) + 1)
    if comm.Get_rank() == 0:
        from ptyhpc.io.h5 import parallel_available

        print(json.dumps({"seconds": seconds, "patterns": read, "bytes": read * patterns[0].nbytes,
                          "hyperslab_runs": runs, "mpio": parallel_available() and comm.Get_size() > 1}))


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


PATHS = {"serial": {}, "mpio": {"PTYHPC_MPIO": "1"},
         "mpio-collective": {"PTYHPC_MPIO": "1", "PTYHPC_COLLECTIVE_READ": "1"}, "independent": {"PTYHPC_MPIO": "0"}}
"""Read paths: one rank; mpio with one independent read per run of rows; mpio with one collective read of a
rank's union of rows; each rank opening the file on its own (what a serial h5py does)."""


def run(path, ranks, kind):
    env = dict(os.environ, OMP_NUM_THREADS="1", **PATHS[kind])
    cmd = ["mpiexec", "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--worker", path]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patterns", type=int, default=33000)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--keep", help="make (or reuse) the file here instead of a temporary folder")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker)
    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or os.path.join(tmp, "big.cxi")
        if not os.path.exists(path):
            t0 = time.perf_counter()
            make_file(path, args.patterns)
            print(f"wrote {path} in {time.perf_counter() - t0:.0f} s")
        size = os.path.getsize(path)
        print(f"{args.patterns} patterns of 128x128 float32, file {size / 1e9:.2f} GB; parallel h5py: "
              f"{bool(h5py.get_config().mpi)}")
        rows = []
        print(f"{'ranks':>5} {'path':>15} {'cold pat/s':>11} {'cold MB/s':>10} {'warm pat/s':>11} {'warm MB/s':>10}")
        for ranks in args.ranks:
            for kind in ("mpio", "mpio-collective", "independent") if ranks > 1 else ("serial",):
                cold = drop_caches()
                first = run(path, ranks, kind)
                second = run(path, ranks, kind)
                row = {"ranks": ranks, "path": kind, "cold": cold,
                       "first_read": first, "second_read": second,
                       "first_patterns_per_s": first["patterns"] / first["seconds"],
                       "second_patterns_per_s": second["patterns"] / second["seconds"]}
                rows.append(row)
                print(f"{ranks:>5} {row['path']:>15} {row['first_patterns_per_s']:>11.0f} "
                      f"{first['bytes'] / first['seconds'] / 1e6:>10.0f} {row['second_patterns_per_s']:>11.0f} "
                      f"{second['bytes'] / second['seconds'] / 1e6:>10.0f}"
                      + ("" if cold else "   (page cache NOT dropped: not root?)"))
    save("io", {"file_bytes": size, "patterns": args.patterns, "pattern_shape": [128, 128], "chunks": "1 pattern",
                "note": "first_read after dropping the page cache when cold=true (disk), second_read warm (cache)",
                "runs": rows})


if __name__ == "__main__":
    main()
