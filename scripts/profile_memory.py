"""Where each rank's memory goes: resident memory (VmRSS) and its peak so far (VmHWM) at the stages of one
reconstruction, per rank, as the OS counts them.

Stages: ``start`` (Python, NumPy, h5py, mpi4py and ptyhpc imported), ``before setup`` (the command line parsed,
the file opened), ``after setup`` (this rank's patterns read, its tile, probe and the algorithm's state made), and
``epoch k`` after each epoch. So the fixed cost of a process, the state a rank holds and what an epoch adds on top
of it (peak - resident before it) can be told apart, and compared between rank counts. ``--traced`` (first)
adds Python's own count of the memory its arrays and objects hold (``tracemalloc``: now, and the peak since the
previous stage), which leaves out the libraries' code and what the allocator keeps of freed memory. It profiles
whatever ptyhpc is imported. Each rank prints one line per stage at exit (sort the output). Usage, e.g.:

    mpiexec -n 4 .venv/bin/python scripts/profile_memory.py [--traced] -- \\
        reconstruct big.cxi -o out.h5 --algorithm lsqml --epochs 2 --no-preview --quiet --slices 3 ...
"""
from __future__ import annotations

import atexit
import sys
import tracemalloc

from ptyhpc import engine

stages: list[tuple[str, int, int, str]] = []


def _mib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith(key + ":"))


def mark(stage: str) -> None:
    traced = ""
    if tracemalloc.is_tracing():
        now, peak = tracemalloc.get_traced_memory()
        traced = f"  traced {now >> 20:6d} MiB  traced peak {peak >> 20:6d} MiB"
        tracemalloc.reset_peak()
    stages.append((stage, _mib("VmRSS"), _mib("VmHWM"), traced))


def instrument() -> None:
    init, iterate = engine.Reconstruction.__init__, engine.Reconstruction.iterate

    def setup(self, *args, **kwargs):
        mark("before setup")
        init(self, *args, **kwargs)
        mark("after setup")

    def epochs(self, n, *args, **kwargs):
        out = None
        for _ in range(n):
            out = iterate(self, 1, *args, **kwargs)
            mark(f"epoch {len(self.history.seconds)}")
        return out

    engine.Reconstruction.__init__, engine.Reconstruction.iterate = setup, epochs


def report() -> None:
    try:
        from mpi4py import MPI

        rank = MPI.COMM_WORLD.Get_rank()
    except ImportError:
        rank = 0
    print("\n".join(f"rank {rank} {stage:14s} resident {rss:6d} MiB  peak {peak:6d} MiB{traced}"
                     for stage, rss, peak, traced in stages), flush=True)


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] == "--traced":
        tracemalloc.start()
        args = args[1:]
    mark("start")
    if args and args[0] == "--":
        args = args[1:]
    instrument()
    atexit.register(report)
    from ptyhpc.cli import main as cli

    sys.argv = ["ptyhpc"] + args
    cli()


if __name__ == "__main__":
    main()
