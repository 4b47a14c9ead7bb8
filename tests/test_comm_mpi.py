"""The planned halo exchange as an operator, under mpiexec (-n 2 and -n 4): sums, round trips, dot test, bytes."""
import numpy as np
import pytest

from conftest import small_dataset
from ptyhpc.comm import Ranks, TileComm, started
from ptyhpc.partition import partition


def _world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def _setup():
    """(world, dataset, partition, TileComm) for the small set split across all world ranks."""
    world = _world()
    d, _, _ = small_dataset()
    part = partition(d.scan, d.n, d.object_shape, world.Get_size())
    return world, d, part, TileComm(world, part)


def _global_field(shape, seed=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


@pytest.mark.mpi(min_size=2)
def test_accumulate_sums_every_covering_rank():
    world, d, part, comm = _setup()
    tile = comm.tile
    # every rank contributes (rank + 1) everywhere on its tile: the sum at a pixel is the sum over covering ranks
    got = comm.accumulate(np.full(tile.shape, comm.rank + 1.0))
    expect = np.zeros(d.object_shape)
    for t in part.tiles:
        expect[t.box[0]:t.box[1], t.box[2]:t.box[3]] += t.rank + 1
    y0, y1, x0, x1 = tile.box
    assert np.array_equal(got, expect[y0:y1, x0:x1])
    assert comm.halo_bytes_sent > 0 and comm.halo_bytes_received > 0


@pytest.mark.mpi(min_size=2)
def test_exchange_round_trip_restores_a_global_field_from_cores():
    world, d, part, comm = _setup()
    truth = _global_field(d.object_shape)
    y0, y1, x0, x1 = comm.tile.box
    local = np.zeros(comm.tile.shape, complex)
    cy0, cy1, cx0, cx1 = comm.tile.core
    local[comm.tile.local(comm.tile.core)] = truth[cy0:cy1, cx0:cx1]  # only my core is known
    assert np.array_equal(comm.exchange(local), truth[y0:y1, x0:x1])


@pytest.mark.mpi(min_size=2)
def test_accumulate_is_the_adjoint_of_the_copy_to_tiles():
    """Dot test: <E x, y> = <x, E^T y>, with E: global object -> stacked tiles (copy) and E^T = accumulate + take
    cores. Checked with random complex fields."""
    world, d, part, comm = _setup()
    x = _global_field(d.object_shape, seed=1)
    rng = np.random.default_rng(100 + comm.rank)
    y = rng.standard_normal(comm.tile.shape) + 1j * rng.standard_normal(comm.tile.shape)
    y0, y1, x0, x1 = comm.tile.box
    lhs = world.allreduce(np.vdot(x[y0:y1, x0:x1], y))
    ety = comm.accumulate(y)[comm.tile.local(comm.tile.core)]
    cy0, cy1, cx0, cx1 = comm.tile.core
    rhs = world.allreduce(np.vdot(x[cy0:cy1, cx0:cx1], ety))
    assert abs(lhs - rhs) / abs(lhs) < 1e-12


@pytest.mark.mpi(min_size=2)
def test_shared_pixels_are_bitwise_equal_on_all_ranks():
    world, d, part, comm = _setup()
    rng = np.random.default_rng(comm.rank)
    summed = comm.accumulate(rng.standard_normal(comm.tile.shape).astype(np.float32))
    full = np.full(d.object_shape, np.nan, np.float32)
    for t, block in world.allgather((comm.tile, summed)):
        y0, y1, x0, x1 = t.box
        region = full[y0:y1, x0:x1]
        seen = ~np.isnan(region)
        assert np.array_equal(region[seen], block[seen])
        full[y0:y1, x0:x1] = block


@pytest.mark.mpi(min_size=2)
def test_accumulate_adds_in_rank_order_in_place_also_for_planes():
    """Every shared pixel is the float32 sum over the covering ranks taken in rank order (what makes ranks agree
    bitwise), computed in place, whether the array travels whole or as planes (a complex array's real and
    imaginary views and a real array, in one message per neighbour)."""
    world, d, part, comm = _setup()
    rng = np.random.default_rng(11 + comm.rank)
    num = (rng.standard_normal(comm.tile.shape) + 1j * rng.standard_normal(comm.tile.shape)).astype(np.complex64)
    den = rng.random(comm.tile.shape, dtype=np.float32)
    expect = np.zeros((3,) + comm.tile.shape, np.float32)
    y0, y1, x0, x1 = comm.tile.box
    for t, (n, w) in zip(part.tiles, world.allgather((num, den))):  # in rank order
        a = (max(t.box[0], y0), min(t.box[1], y1), max(t.box[2], x0), min(t.box[3], x1))
        if a[0] < a[1] and a[2] < a[3]:
            mine = (slice(a[0] - y0, a[1] - y0), slice(a[2] - x0, a[3] - x0))
            theirs = (slice(a[0] - t.box[0], a[1] - t.box[0]), slice(a[2] - t.box[2], a[3] - t.box[2]))
            expect[(slice(None),) + mine] += np.stack([n.real, n.imag, w])[(slice(None),) + theirs]
    whole = np.stack([num.real, num.imag, den])
    assert comm.accumulate(whole) is whole and np.array_equal(whole, expect)
    planes = [num.real, num.imag, den]
    assert comm.accumulate(planes) is planes
    assert np.array_equal(num.real, expect[0]) and np.array_equal(num.imag, expect[1])
    assert np.array_equal(den, expect[2])


@pytest.mark.mpi(min_size=2)
def test_halo_bytes_match_the_plan():
    world, d, part, comm = _setup()
    comm.accumulate(np.zeros((3,) + comm.tile.shape, np.float32))
    planned = sum(3 * 4 * (b[1] - b[0]) * (b[3] - b[2]) for _, b in part.neighbours(comm.rank))
    assert comm.halo_bytes_sent == planned == comm.halo_bytes_received


@pytest.mark.mpi(min_size=2)
def test_accumulate_on_the_shared_box_matches_the_whole_tile():
    world, d, part, comm = _setup()
    rng = np.random.default_rng(comm.rank)
    a = rng.standard_normal((2,) + comm.tile.shape)
    box = comm.shared_box
    assert box is not None
    whole = comm.accumulate(a.copy())
    assert np.array_equal(comm.accumulate(np.ascontiguousarray(a[(...,) + box]), box), whole[(...,) + box])
    outside = np.ones(comm.tile.shape, bool)
    outside[box] = False
    assert np.array_equal(whole[:, outside], a[:, outside])  # nothing outside the shared box changes


@pytest.mark.mpi(min_size=2)
def test_allreduce_many_packs_arrays_of_mixed_types_into_one_collective():
    world, d, part, comm = _setup()
    rng = np.random.default_rng(7 + comm.rank)
    arrays = [(rng.standard_normal((2, 3, 4)) + 1j * rng.standard_normal((2, 3, 4))),  # complex128
              rng.standard_normal((1, 3, 4)),                                            # float64
              rng.standard_normal(5).astype(np.float32)]
    expect = [world.allreduce(a) for a in arrays]  # pickle-based sums, one collective each
    before = comm.reduce_bytes
    got = comm.allreduce_many(arrays)
    for g, e, a in zip(got, expect, arrays):
        assert g.dtype == a.dtype and g.shape == a.shape
        np.testing.assert_allclose(g, e, rtol=1e-6)
    # one buffer in float64: 2 x 24 + 12 + 5 values
    assert comm.reduce_bytes - before == (2 * 24 + 12 + 5) * 8


@pytest.mark.mpi(min_size=2)
def test_allreduce_many_mixes_sums_and_maxima_in_one_collective():
    """Maxima ride in the same summed buffer, one row per rank: exact, and one collective of known size."""
    world, d, part, comm = _setup()
    rng = np.random.default_rng(11 + comm.rank)
    total, peak = rng.standard_normal((3, 4)), rng.standard_normal(2)
    before = comm.reduce_bytes
    got_total, got_peak = comm.allreduce_many([total, peak], op=("sum", "max"))
    from mpi4py import MPI

    expect = np.empty_like(peak)
    world.Allreduce(peak, expect, op=MPI.MAX)
    assert np.array_equal(got_peak, expect)
    np.testing.assert_allclose(got_total, world.allreduce(total), rtol=1e-12)
    assert comm.reduce_bytes - before == (12 + 2 * comm.size) * 8


@pytest.mark.mpi(min_size=2)
def test_allgather_returns_every_ranks_value_in_rank_order():
    world, d, part, comm = _setup()
    got = comm.allgather(np.arange(comm.rank + 1.0))
    assert [len(g) for g in got] == list(range(1, comm.size + 1))
    assert all(np.array_equal(g, np.arange(r + 1.0)) for r, g in enumerate(got))


@pytest.mark.mpi(min_size=2)
def test_ranks_collectives_outside_the_halo():
    """What the engine, the writer, the stream and the error path use instead of calling MPI: each rank's value
    reaches rank 0 in rank order (gather, and one piece at a time by send/receive), rank 0's reaches every rank,
    all ranks of one machine are one node, and the one-process stand-in behaves as one rank."""
    world = _world()
    ranks = Ranks.of(world)
    size, rank = world.Get_size(), world.Get_rank()
    assert (ranks.rank, ranks.size) == (rank, size) and Ranks.of(ranks) is ranks
    assert (started().rank, started().size) == (rank, size)  # MPI has started: the error path sees every rank
    got = ranks.gather(np.full(3, rank * 10.0))
    if rank == 0:
        assert np.array_equal(np.stack(got), np.arange(size)[:, None] * np.full(3, 10.0))
    else:
        assert got is None
    assert ranks.bcast({"from": rank}) == {"from": 0}
    assert ranks.node() == (rank, size)  # mpiexec here starts every rank on this machine
    if rank == 0:
        assert [ranks.receive(r, tag=5) for r in range(1, size)] == [("piece", r) for r in range(1, size)]
    else:
        ranks.send(("piece", rank), tag=5)
    ranks.barrier()
    one = Ranks(None)
    assert (one.rank, one.size, one.mpi, one.node()) == (0, 1, None, (0, 1))
    assert one.gather(7) == [7] and one.bcast(7) == 7
    part = _setup()[2]
    tile = TileComm(ranks, part)  # built from the Ranks as from the communicator: the same plan
    assert isinstance(tile, Ranks) and (tile.rank, tile.size) == (rank, size)
    assert tile.links == TileComm(world, part).links and tile.links
