"""Recursive coordinate bisection: balanced, compact, cores tile the object once, tiles hold every window."""
import numpy as np
import pytest

from ptyhpc.partition import box_size, footprints, intersect, partition

from conftest import small_dataset


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 16])
def test_partition_is_balanced_and_exact(size):
    d, _, _ = small_dataset()
    part = partition(d.scan, d.n, d.object_shape, size)
    counts = np.bincount(part.owner, minlength=size)
    assert counts.max() - counts.min() <= 1
    assert sum(box_size(t.core) for t in part.tiles) == d.object_shape[0] * d.object_shape[1]
    for a in part.tiles:
        for b in part.tiles:
            if a.rank < b.rank:
                assert intersect(a.core, b.core) is None
    fp = footprints(d.scan, d.n)
    for t in part.tiles:
        mine = fp[part.owner == t.rank]
        assert (mine[:, 0] >= t.box[0]).all() and (mine[:, 1] <= t.box[1]).all()
        assert (mine[:, 2] >= t.box[2]).all() and (mine[:, 3] <= t.box[3]).all()
        assert intersect(t.box, t.core) == t.core


def test_tiles_shrink_with_rank_count():
    d, _, _ = small_dataset()
    full = d.object_shape[0] * d.object_shape[1]
    largest = {r: max(box_size(t.box) for t in partition(d.scan, d.n, d.object_shape, r).tiles) for r in (1, 4, 16)}
    assert largest[1] == full
    assert largest[4] < 0.6 * full
    assert largest[16] < largest[4]


def test_neighbours_are_symmetric():
    d, _, _ = small_dataset()
    part = partition(d.scan, d.n, d.object_shape, 5)
    for r in range(5):
        for other, box in part.neighbours(r):
            assert (r, box) in part.neighbours(other)
