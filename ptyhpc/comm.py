"""The only module that knows MPI.

:class:`Ranks` is the job's ranks as the rest of ptyhpc sees them: this rank's index, their count, the ranks that
share a node, and the few collectives outside the halo exchange (broadcast from rank 0, gather to rank 0, a
rank's piece sent to rank 0, barrier, abort). :class:`TileComm` adds what algorithms see: ``allreduce`` for small
global sums (probe, costs, step sizes) and ``accumulate`` / ``exchange``, the planned halo operations between
neighbouring tiles. Built from ``None`` either is the single-process stand-in with the same interface, so no
algorithm, reader or writer ever asks whether it runs in parallel. The one thing handed on is the communicator
itself (``Ranks.mpi``) to parallel HDF5 (h5py's ``mpio`` driver, ``io.h5.open_file``), which calls MPI itself.

GPU buffers: when the MPI library is CUDA-aware (detected, or forced with ``PTYHPC_CUDA_AWARE=1``/``0``), CuPy
arrays go to mpi4py's upper-case methods directly after the current stream is synchronised; otherwise they are
staged through host memory.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from .backend import array_module, asnumpy, is_gpu_array, synchronize
from .partition import Partition, intersect

_TAG_HALO = 17


class Ranks:
    """The ranks of one job (an mpi4py communicator), or one process (``None``) with the same interface.

    ``rank``, ``size``: this rank's index and the count. ``mpi``: the communicator when there are several ranks,
    None on one: for parallel HDF5 only (see the module's docstring). :meth:`of` takes a communicator, None or a
    Ranks, so callers may pass any of them.
    """

    def __init__(self, mpi_comm=None):
        self.size = mpi_comm.Get_size() if mpi_comm is not None else 1
        self.rank = mpi_comm.Get_rank() if mpi_comm is not None else 0
        self.mpi = mpi_comm if self.size > 1 else None

    @classmethod
    def of(cls, comm) -> "Ranks":
        """``comm`` itself when it is a Ranks (a TileComm too), else the Ranks of the communicator (or None)."""
        return comm if isinstance(comm, Ranks) else cls(comm)

    def node(self) -> tuple[int, int]:
        """(this rank's index among the ranks on its node, how many ranks share the node)."""
        if self.mpi is None:
            return 0, 1
        from mpi4py import MPI

        node = self.mpi.Split_type(MPI.COMM_TYPE_SHARED)
        try:
            return node.Get_rank(), node.Get_size()
        finally:
            node.Free()

    def bcast(self, value):
        """Rank 0's ``value`` (any picklable object) on every rank."""
        return self.mpi.bcast(value, root=0) if self.mpi is not None else value

    def gather(self, value) -> list | None:
        """[value of rank 0, value of rank 1, ...] on rank 0, None on the others (picklable values)."""
        return self.mpi.gather(value, root=0) if self.mpi is not None else [value]

    def send(self, value, tag: int) -> None:
        """Send ``value`` to rank 0 (which takes it with :meth:`receive`): one rank's piece at a time, where a
        gather would make rank 0 hold every rank's at once."""
        self.mpi.send(value, dest=0, tag=tag)

    def receive(self, source: int, tag: int):
        """On rank 0: the value rank ``source`` sent with ``tag``."""
        return self.mpi.recv(source=source, tag=tag)

    def barrier(self) -> None:
        if self.mpi is not None:
            self.mpi.Barrier()

    def abort(self, code: int) -> None:
        """End every rank of the job (MPI_Abort) with exit status ``code``; nothing on one process."""
        if self.mpi is not None:
            self.mpi.Abort(code)


def world() -> Ranks:
    """The ranks of mpi4py's COMM_WORLD (MPI is started here if it was not), or one process where mpi4py is not
    installed (a serial install)."""
    try:
        from mpi4py import MPI
    except ImportError:
        return Ranks(None)
    return Ranks(MPI.COMM_WORLD)


def started() -> Ranks:
    """COMM_WORLD's ranks when this process has started MPI already (mpi4py.MPI imported), else one process:
    never starts MPI itself (what an error path needs, which may run before anything parallel did)."""
    mpi = sys.modules.get("mpi4py.MPI")
    return Ranks(mpi.COMM_WORLD if mpi is not None else None)


def cuda_aware() -> bool:
    """Whether CuPy buffers may be handed to MPI directly (``PTYHPC_CUDA_AWARE`` overrides the detection)."""
    forced = os.environ.get("PTYHPC_CUDA_AWARE")
    if forced is not None:
        return forced.strip().lower() in ("1", "true", "yes", "on")
    if os.environ.get("MPICH_GPU_SUPPORT_ENABLED") == "1":  # Cray MPICH with the GTL library (Polaris)
        return True
    try:
        from mpi4py import MPI

        query = getattr(MPI, "Query_cuda_support", None)
        return bool(query()) if query is not None else False
    except Exception:
        return False


def _pinned_empty(shape, dtype):
    """A host array in page-locked memory (CuPy's pinned pool), for fast device <-> host staging."""
    import cupyx

    return cupyx.empty_pinned(shape, dtype)


def _pinned_copy(block):
    """Copy a contiguous CuPy array into pinned host memory."""
    out = _pinned_empty(block.shape, block.dtype)
    block.get(out=out)
    return out


class TileComm(Ranks):
    """Collectives over the ranks of one reconstruction, and the halo exchange planned from its partition.

    Parameters
    ----------
    comm : Ranks, mpi4py communicator or None
        None (or a communicator of size 1) gives the serial stand-in.
    partition : Partition
        Its ``size`` must equal the communicator's.
    """

    def __init__(self, comm, partition: Partition):
        ranks = Ranks.of(comm)
        self.mpi, self.rank, self.size = ranks.mpi, ranks.rank, ranks.size
        if partition.size != self.size:
            raise ValueError(f"partition has {partition.size} tiles but the communicator {self.size} ranks")
        self.partition = partition
        self.tile = partition.tiles[self.rank]
        # The plan: for each neighbour (by rank), the slices of my tile that overlap its tile.
        self.links = [(other, self.tile.local(box)) for other, box in partition.neighbours(self.rank)]
        # For exchange(): the part of each overlap that lies in the neighbour's core, as slices of my tile and
        # of the received overlap block.
        self._fill = []
        for other, box in partition.neighbours(self.rank):
            theirs = intersect(partition.tiles[other].core, box)
            if theirs is not None:
                rel = (slice(theirs[0] - box[0], theirs[1] - box[0]), slice(theirs[2] - box[2], theirs[3] - box[2]))
                self._fill.append((other, self.tile.local(theirs), rel))
        # The smallest box of my tile that holds every overlap: only there can ranks disagree (None: no overlap).
        self.shared_box = None
        if self.links:
            ys = [sl[0] for _, sl in self.links]
            xs = [sl[1] for _, sl in self.links]
            self.shared_box = (slice(min(s.start for s in ys), max(s.stop for s in ys)),
                               slice(min(s.start for s in xs), max(s.stop for s in xs)))
        self._cell_plans = {}
        self.cuda_aware = cuda_aware()
        self.halo_bytes_sent = 0
        self.halo_bytes_received = 0
        self.reduce_bytes = 0

    # --- small global reductions -------------------------------------------------------------------------------
    def allreduce(self, x, op: str = "sum"):
        """Sum (or max) of ``x`` over all ranks: a float, a NumPy or a CuPy array (returned in the same kind)."""
        if self.mpi is None:
            return x
        from mpi4py import MPI

        mop = {"sum": MPI.SUM, "max": MPI.MAX}[op]
        if np.isscalar(x) or getattr(x, "ndim", 1) == 0 and not is_gpu_array(x):
            self.reduce_bytes += 8
            return self.mpi.allreduce(float(x), op=mop)
        xp = array_module(x)
        buf = np.ascontiguousarray(asnumpy(x)) if (xp is not np and not self.cuda_aware) else xp.ascontiguousarray(x)
        if xp is not np:
            synchronize(xp)
        out = array_module(buf).empty_like(buf)
        self.mpi.Allreduce(buf, out, op=mop)
        self.reduce_bytes += out.nbytes
        return xp.asarray(out)

    def allreduce_many(self, arrays, op="sum") -> list:
        """Sums (or maxima) of several small arrays over all ranks in one collective. ``op``: "sum", "max", or one
        of them per array. They travel packed in one buffer of their common real type (complex arrays as pairs of
        reals) through one sum: an array whose op is "max" goes as R rows, this rank's in its row and zeros in
        the others, and the maximum is taken over the summed rows (adding zeros is exact). Returns arrays of the
        same shapes and types, in the same order."""
        if self.mpi is None:
            return list(arrays)
        ops = [op] * len(arrays) if isinstance(op, str) else list(op)
        if len(set(ops)) == 1:
            return self._allreduce_packed(arrays, ops[0])
        xp = array_module(arrays[0])
        spread = []
        for a, o in zip(arrays, ops):
            if o == "max":
                rows = xp.zeros((self.size,) + a.shape, dtype=a.dtype)
                rows[self.rank] = a
                a = rows
            spread.append(a)
        return [s.max(axis=0) if o == "max" else s for s, o in zip(self._allreduce_packed(spread, "sum"), ops)]

    def _allreduce_packed(self, arrays, op: str) -> list:
        xp = array_module(arrays[0])
        real = [xp.ascontiguousarray(a).view(a.real.dtype) if a.dtype.kind == "c" else a for a in arrays]
        rtype = xp.result_type(*[r.dtype for r in real])
        packed = self.allreduce(xp.concatenate([r.ravel().astype(rtype, copy=False) for r in real]), op=op)
        out, start = [], 0
        for a, r in zip(arrays, real):
            part = packed[start:start + r.size].astype(r.dtype, copy=False)
            out.append((part.view(a.dtype) if a.dtype.kind == "c" else part).reshape(a.shape))
            start += r.size
        return out

    def allgather(self, value) -> list:
        """[value of rank 0, value of rank 1, ...] on every rank, for small picklable values (host arrays,
        numbers, dicts): one collective."""
        return self.mpi.allgather(value) if self.mpi is not None else [value]

    # --- halo ----------------------------------------------------------------------------------------------------
    @staticmethod
    def _within(sl, box):
        """Slices ``sl`` of the tile, relative to the sub-box ``box`` of the tile (None: the whole tile)."""
        if box is None:
            return sl
        return tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(sl, box))

    def _swap(self, a, box=None):
        """Send my part of every overlap to its neighbour and receive theirs: {rank: received block}. ``a``: one
        array (..., h, w), or a list of arrays (h, w) whose parts travel stacked in one message."""
        if self.mpi is None or not self.links:
            return {}
        planes = isinstance(a, (list, tuple))
        xp = array_module(a[0] if planes else a)
        stage = xp is not np and not self.cuda_aware
        sends, recvs, reqs = [], {}, []
        for other, sl in self.links:
            sl = self._within(sl, box)
            block = xp.stack([p[sl] for p in a]) if planes else xp.ascontiguousarray(a[(...,) + sl])
            buf = _pinned_copy(block) if stage else block
            sends.append(buf)
            recvs[other] = _pinned_empty(buf.shape, buf.dtype) if stage else xp.empty_like(buf)
        if xp is not np and not stage:
            synchronize(xp)
        for (other, _), buf in zip(self.links, sends):
            reqs.append(self.mpi.Irecv(recvs[other], source=other, tag=_TAG_HALO))
            reqs.append(self.mpi.Isend(buf, dest=other, tag=_TAG_HALO))
        from mpi4py import MPI

        MPI.Request.Waitall(reqs)
        for buf in sends:
            self.halo_bytes_sent += buf.nbytes
        for buf in recvs.values():
            self.halo_bytes_received += buf.nbytes
        return {k: xp.asarray(v) for k, v in recvs.items()} if stage else recvs

    def _cells(self, box):
        """The overlaps of my tile (relative to ``box``) cut into rectangles each covered by one set of ranks:
        [(slices of my array, [(rank, slices of its received block, or None for mine), ...] in rank order)]."""
        key = None if box is None else tuple((s.start, s.stop) for s in box)
        if key not in self._cell_plans:
            links = [(other, self._within(sl, box)) for other, sl in self.links]
            ys = sorted({v for _, sl in links for v in (sl[0].start, sl[0].stop)})
            xs = sorted({v for _, sl in links for v in (sl[1].start, sl[1].stop)})
            cells = []
            for y0, y1 in zip(ys[:-1], ys[1:]):
                for x0, x1 in zip(xs[:-1], xs[1:]):
                    cover = [(other, (slice(y0 - sy.start, y1 - sy.start), slice(x0 - sx.start, x1 - sx.start)))
                             for other, (sy, sx) in links
                             if sy.start <= y0 and y1 <= sy.stop and sx.start <= x0 and x1 <= sx.stop]
                    if cover:
                        cells.append(((slice(y0, y1), slice(x0, x1)), sorted(cover + [(self.rank, None)])))
            self._cell_plans[key] = cells
        return self._cell_plans[key]

    def accumulate(self, a, box=None):
        """Sum over ranks, pixel by pixel, in place: every pixel of my tile becomes the sum of the values that all
        ranks whose tiles cover it hold there. ``a`` : (..., h, w) on my tile, or on the sub-box ``box`` (slices of
        the tile that contain every overlap, e.g. ``shared_box``); or a list of such (h, w) arrays (views
        included, such as a complex array's ``real`` and ``imag``), exchanged in one message per neighbour.
        Returns ``a``.

        Contributions are added in rank order, so every rank computes bitwise the same value for a shared pixel.
        No tile-sized temporary: each rectangle of one cover (:meth:`_cells`) is summed where it lies, and only a
        rectangle where my rank comes third or later in the order takes a temporary of its own size.
        """
        received = self._swap(a, box)
        if not received:
            return a
        planes = isinstance(a, (list, tuple))
        for p, target in enumerate(a if planes else [a]):
            block = {other: r[p] if planes else r for other, r in received.items()}
            for mine, cover in self._cells(box):
                here = target[(...,) + mine]
                if [o for o, _ in cover].index(self.rank) <= 1:  # x + y is y + x: start from my value
                    for other, rel in cover:
                        if other != self.rank:
                            here += block[other][(...,) + rel]
                    continue
                total = block[cover[0][0]][(...,) + cover[0][1]].copy()
                for other, rel in cover[1:]:
                    total += here if other == self.rank else block[other][(...,) + rel]
                here[...] = total
        return a

    def exchange(self, a):
        """Fill my halo from the owners, in place: every pixel of my tile outside my core takes the value held by
        the rank whose core contains it. ``a`` : (..., h, w); returns ``a`` (my core is unchanged)."""
        received = self._swap(a)
        for other, mine, rel in self._fill:
            a[(...,) + mine] = received[other][(...,) + rel]
        return a
