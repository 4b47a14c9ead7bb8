"""Recursive coordinate bisection: balanced, compact, cores tile the object once, tiles hold every window."""
import numpy as np
import pytest

from ptyhpc.partition import bisection_order, box_size, footprints, intersect, partition, stratified_batches

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


def test_bisection_order_keeps_power_of_two_tiles_contiguous():
    """Every tile of a 2-, 4-, 8- or 16-rank partition is one run of the order (the same cuts)."""
    d, _, _ = small_dataset()
    order = bisection_order(d.scan)
    assert np.array_equal(np.sort(order), np.arange(len(d.scan)))
    for size in (2, 4, 8, 16):
        owner = partition(d.scan, d.n, d.object_shape, size).owner[order]
        assert np.count_nonzero(np.diff(owner)) == size - 1


@pytest.mark.parametrize("count,cells", [(5, 8), (7, 4), (40, 8)])
def test_stratified_batches_give_every_tile_an_even_share(count, cells):
    """The batches partition the positions, sizes within one; each tile of R <= cells ranks (powers of two)
    holds floor or ceil of its share of every batch. A plain random split of the same set misses that."""
    d, _, _ = small_dataset()
    order = bisection_order(d.scan)
    rng = np.random.default_rng(3)
    batches = stratified_batches(order, count, cells, rng)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(len(d.scan)))
    sizes = [len(b) for b in batches]
    assert max(sizes) - min(sizes) <= 1
    plain = np.array_split(rng.permutation(len(d.scan)), count)
    for size in (2, 4, 8):
        if size > cells:
            continue
        part = partition(d.scan, d.n, d.object_shape, size)
        share = np.bincount(part.owner, minlength=size) / count
        held = np.array([np.bincount(part.owner[b], minlength=size) for b in batches])
        assert (held >= np.floor(share)).all() and (held <= np.ceil(share)).all()
        held_plain = np.array([np.bincount(part.owner[b], minlength=size) for b in plain])
        assert np.abs(held_plain - share).max() > 1
    # a different draw each time: the split is random
    again = stratified_batches(order, count, cells, rng)
    assert any(not np.array_equal(np.sort(a), np.sort(b)) for a, b in zip(batches, again))
