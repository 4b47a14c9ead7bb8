"""Spatial partition of the scan across ranks: recursive coordinate bisection (RCB) of probe centres.

Each rank gets a spatially compact group of positions with balanced counts, a *core* (its cell of the RCB cut,
a rectangle; the cores of all ranks tile the object exactly once) and a *tile*: the bounding box of its probe
footprints joined with its core. The tile minus the core is the halo. Two ranks are neighbours when their tiles
overlap; only neighbours exchange data. Positions stay in global object coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple  # (y0, y1, x0, x1), half-open, global object pixels


def intersect(a: Box, b: Box) -> Box | None:
    y0, y1, x0, x1 = max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])
    return (y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None


def box_size(b: Box) -> int:
    return (b[1] - b[0]) * (b[3] - b[2])


@dataclass(frozen=True)
class Tile:
    """One rank's share of the object. Boxes are (y0, y1, x0, x1), half-open, in global object pixels."""

    rank: int
    core: Box
    """The rectangle this rank owns and writes; the cores of all ranks partition the object."""
    box: Box
    """The rectangle this rank holds in memory (core plus halo)."""

    @property
    def origin(self) -> tuple[int, int]:
        return self.box[0], self.box[2]

    @property
    def shape(self) -> tuple[int, int]:
        return self.box[1] - self.box[0], self.box[3] - self.box[2]

    def local(self, b: Box) -> tuple[slice, slice]:
        """Slices of this tile's array that hold the global box ``b`` (which must lie inside the tile)."""
        y, x = self.origin
        return slice(b[0] - y, b[1] - y), slice(b[2] - x, b[3] - x)


@dataclass(frozen=True)
class Partition:
    shape: tuple[int, int]
    """Global object shape (H, W)."""
    tiles: tuple[Tile, ...]
    owner: np.ndarray
    """(POSI,) int: the rank that owns each scan position."""

    @property
    def size(self) -> int:
        return len(self.tiles)

    def indices(self, rank: int) -> np.ndarray:
        """Sorted global indices of the positions owned by ``rank``."""
        return np.flatnonzero(self.owner == rank)

    def neighbours(self, rank: int) -> list[tuple[int, Box]]:
        """[(other rank, overlap box)] for every other rank whose tile overlaps this one, by rank."""
        me = self.tiles[rank].box
        out = []
        for t in self.tiles:
            if t.rank != rank and (ov := intersect(me, t.box)) is not None:
                out.append((t.rank, ov))
        return out


def footprints(scan: np.ndarray, n: int) -> np.ndarray:
    """(POSI, 4) boxes of the object pixels each probe window touches."""
    c = np.floor(scan).astype(np.int64)
    return np.stack([c[:, 0], c[:, 0] + n, c[:, 1], c[:, 1] + n], axis=1)


def _lower_half(sizes: np.ndarray) -> np.ndarray:
    """How many of a run of each size go to its lower half when a bisection splits it: the rounded middle count,
    as :func:`partition` cuts for a power-of-two rank count (so its tiles are runs of the bisection order)."""
    return np.rint(sizes / 2).astype(np.int64)


def bisection_order(points: np.ndarray) -> np.ndarray:
    """Indices of ``points`` (P, 2) in recursive-bisection order: sorted along the longer extent, split at the
    middle count, each half ordered the same way, down to single points. Every cell of such a bisection (and so,
    up to a point, every tile of :func:`partition`, which cuts the same way) is a contiguous run of the order.
    Vectorised: one sort per level, log2(P) levels."""
    points = np.asarray(points, dtype=np.float64)
    order = np.arange(len(points))
    cell = np.zeros(len(points), dtype=np.int64)  # the cell of each slot of ``order``, non-decreasing
    while len(points) > 1:
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
        sizes = np.diff(np.r_[starts, len(points)])
        if sizes.max() == 1:
            break
        p = points[order]
        extent = np.maximum.reduceat(p, starts) - np.minimum.reduceat(p, starts)
        axis = (extent[:, 1] > extent[:, 0]).astype(np.int64)[cell]
        order = order[np.lexsort((order, p[np.arange(len(p)), axis], cell))]
        upper = (np.arange(len(p)) - starts[cell]) >= _lower_half(sizes)[cell]
        cell = np.cumsum(np.r_[True, (cell[1:] != cell[:-1]) | (upper[1:] != upper[:-1])]) - 1
    return order


def bisection_cells(n: int, cells: int) -> np.ndarray:
    """Edges (cells + 1,) of the ``cells`` (a power of two) runs of an ``n``-long bisection order that are the
    cells of its bisection at depth log2(cells): each run split in two as :func:`bisection_order` splits it."""
    edges = np.array([0, n])
    while len(edges) - 1 < cells:
        middle = edges[:-1] + _lower_half(np.diff(edges))
        edges = np.insert(edges, np.arange(1, len(edges)), middle)
    return edges


def stratified_batches(order: np.ndarray, count: int, cells: int, rng) -> list:
    """Random batches stratified in space: ``order`` (positions in :func:`bisection_order`) is cut into ``cells``
    (a power of two) bisection cells; each cell's positions are shuffled and the cells, one after the other,
    dealt to the ``count`` batches in turn from a random start. Within a cell a batch is a random subset, as
    in a plain random split; but every batch holds an even share (+-1) of every run of whole cells, such as
    the positions of one rank when 2, 4, ... ``cells`` ranks bisect the scan the same way. Returns ``count``
    arrays of positions (sizes differ by at most one)."""
    n = len(order)
    slot = np.arange(n)
    cell = np.searchsorted(bisection_cells(n, min(cells, max(n, 1))), slot, side="right") - 1
    members = order[np.lexsort((rng.random(n), cell))]
    label = (slot + rng.integers(count)) % count
    members = members[np.argsort(label, kind="stable")]
    return np.split(members, np.cumsum(np.bincount(label, minlength=count))[:-1])


def partition(scan: np.ndarray, n: int, shape: tuple[int, int], size: int, margin: int = 0,
              reach: int = 0) -> Partition:
    """Split ``scan`` (POSI, 2) into ``size`` spatially compact groups by recursive coordinate bisection.

    ``margin``: pixels added around each tile's footprints (within the object), so that a position may move that
    far from ``scan`` (position correction) and its window still lie in its tile. ``reach``: each tile holds its
    core and at least this many pixels around it (within the object), for operations whose value at a point reads
    its neighbourhood (the multislice regularisation).

    At each level the rank count splits into floor(r/2) and the rest; positions are sorted along the longer
    extent of their probe centres and cut where the counts match the rank ratio; the cut line (midway between
    the two centres) splits the cell. Deterministic: every rank computes the same partition.
    """
    npos = len(scan)
    if size < 1:
        raise ValueError(f"partition size must be >= 1, not {size}")
    if npos < size:
        raise ValueError(f"{npos} scan positions cannot be split across {size} ranks (need at least one each)")
    centres = scan + n / 2
    owner = np.empty(npos, dtype=np.int64)
    cores: dict[int, Box] = {}

    def split(idx: np.ndarray, ranks: range, cell: list):
        if len(ranks) == 1:
            owner[idx] = ranks[0]
            cores[ranks[0]] = tuple(int(v) for v in cell)
            return
        c = centres[idx]
        axis = int(np.ptp(c[:, 1]) > np.ptp(c[:, 0]))  # 0: cut across rows, 1: across columns
        order = np.lexsort((idx, c[:, axis]))
        idx, c = idx[order], c[order]
        left = len(ranks) // 2
        k = int(round(len(idx) * left / len(ranks)))
        k = min(max(k, left), len(idx) - (len(ranks) - left))
        lo, hi = (cell[0], cell[1]) if axis == 0 else (cell[2], cell[3])
        cut = int(np.clip(np.round((c[k - 1, axis] + c[k, axis]) / 2), lo + 1, hi - 1))
        a, b = list(cell), list(cell)
        a[2 * axis + 1] = cut
        b[2 * axis] = cut
        split(idx[:k], ranks[:left], a)
        split(idx[k:], ranks[left:], b)

    split(np.arange(npos), range(size), [0, shape[0], 0, shape[1]])
    fp = footprints(scan, n)
    tiles = []
    for r in range(size):
        f = fp[owner == r]
        core = cores[r]
        box = (min(max(f[:, 0].min() - margin, 0), max(core[0] - reach, 0)),
               max(min(f[:, 1].max() + margin, shape[0]), min(core[1] + reach, shape[0])),
               min(max(f[:, 2].min() - margin, 0), max(core[2] - reach, 0)),
               max(min(f[:, 3].max() + margin, shape[1]), min(core[3] + reach, shape[1])))
        tiles.append(Tile(rank=r, core=core, box=tuple(int(v) for v in box)))
    return Partition(shape=tuple(shape), tiles=tuple(tiles), owner=owner)
