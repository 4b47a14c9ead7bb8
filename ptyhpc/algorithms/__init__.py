"""Reconstruction algorithms, one module each, chosen from an explicit table.

Every module offers ``init(state, comm, cfg, saved=None) -> algorithm state`` (``saved``: the per-position arrays
named in ``CHECKPOINT``, from a checkpoint) and ``iterate(state, astate, comm, cfg, batches)
-> local misfit``. All sums over scan positions are partial sums over this rank's positions, completed with
``comm.accumulate`` (object-sized, neighbours only) or ``comm.allreduce`` (probe-sized and scalars), so the same
code gives the single-rank answer on one rank and on many. ``BATCHES`` says how batches are formed:
'global' (the same batches on every rank, synchronised per batch), 'local' (each rank its own, no collective
inside the batch loop) or 'aligned' (each rank splits its own positions into as many batches as one rank would
use for all positions, so every rank runs the same number of batches). ``CHECKPOINT`` names the per-position
arrays of the algorithm state that a checkpoint must keep (the rest of the state is empty between epochs, and the
batches follow from the seed and the epoch number alone).
"""
from . import dm, lsqml, rpie

ALGORITHMS = {"rpie": rpie, "dm": dm, "lsqml": lsqml}
