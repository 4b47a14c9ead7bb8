"""Where each rank's time goes: wall seconds per section of an algorithm, per rank, for one reconstruction.

Wraps the algorithm module's functions, the physics kernels and the communicator's collectives with timers, and
with ``--barrier`` puts an MPI barrier (timed as ``wait.*``) before every collective, to tell the wait for the
slower rank from the collective's own cost. Prints one table per rank at exit (sections overlap: a function's
time includes the ones it calls, and ``comm.*`` includes ``wait.*``). It profiles whatever ptyhpc is imported,
so PYTHONPATH=<an older checkout> profiles that one. Usage, e.g.:

    OMP_NUM_THREADS=1 mpiexec -n 2 .venv/bin/python scripts/profile_ranks.py [--barrier] -- \\
        reconstruct data.cxi -o out.h5 --algorithm lsqml --epochs 10 --no-preview --quiet
"""
from __future__ import annotations

import atexit
import collections
import sys
import time

from ptyhpc import comm as _comm, physics
from ptyhpc.algorithms import ALGORITHMS

seconds = collections.defaultdict(float)
calls = collections.Counter()


def _timed(owner, name, key):
    f = getattr(owner, name, None)
    if f is None:  # an older ptyhpc without this method
        return

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            seconds[key] += time.perf_counter() - t
            calls[key] += 1

    setattr(owner, name, timed)


def _barriered(name):
    f = getattr(_comm.TileComm, name, None)
    if f is None:
        return

    def waited(self, *args, **kwargs):
        if self.mpi is not None:
            t = time.perf_counter()
            self.mpi.Barrier()
            seconds["wait." + name] += time.perf_counter() - t
        return f(self, *args, **kwargs)

    setattr(_comm.TileComm, name, waited)


def instrument(barrier: bool):
    for module in set(ALGORITHMS.values()):
        short = module.__name__.rsplit(".", 1)[-1]
        for name, f in list(vars(module).items()):
            if callable(f) and getattr(f, "__module__", "").startswith("ptyhpc.algorithms") and not isinstance(f, type):
                _timed(module, name, f"{short}.{name}")
    for name in ("extract", "scatter_add", "shifted_probes", "fft2", "ifft2", "cost"):
        _timed(physics, name, "physics." + name)
    collectives = ("allreduce", "allreduce_many", "allgather", "accumulate", "exchange")
    if barrier:
        for name in ("allreduce", "allgather", "accumulate", "exchange"):
            _barriered(name)
    for name in collectives:
        _timed(_comm.TileComm, name, "comm." + name)


def report():
    try:
        from mpi4py import MPI

        rank = MPI.COMM_WORLD.Get_rank()
    except ImportError:
        rank = 0
    lines = [f"rank {rank}: seconds (calls)"]
    lines += [f"  {k:34s} {v:8.3f} ({calls[k]})" for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])]
    sys.stderr.write("\n".join(lines) + "\n")


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit(__doc__)
    mine, args = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    instrument(barrier="--barrier" in mine)
    atexit.register(report)
    from ptyhpc.cli import main as cli

    return cli(args)


if __name__ == "__main__":
    sys.exit(main())
