"""Parallel HDF5 for real, under mpiexec -n 2 and -n 4: every read path (mpio with independent or collective
reads, and the independent opens a serial h5py takes, forced with PTYHPC_MPIO=0) reads only each rank's own
patterns, and the product file written on each path holds the one-rank object."""
import numpy as np
import pytest

from conftest import small_set
from ptyhpc.backend import asnumpy
from ptyhpc.config import ReconConfig
from ptyhpc.engine import Reconstruction

pytestmark = pytest.mark.mpi(min_size=2)


@pytest.fixture(scope="module")
def cxi(tmp_path_factory):
    from mpi4py import MPI

    from ptyhpc.simulate import write_cxi

    world = MPI.COMM_WORLD
    path = None
    if world.Get_rank() == 0:
        path = tmp_path_factory.mktemp("io") / "s.cxi"
        cfg, patterns, scan, _, probe, mask = small_set()
        write_cxi(path, cfg, patterns, scan, mask)
    return world.bcast(path, root=0)


@pytest.mark.parametrize("mpio,collective", [("1", "0"), ("1", "1"), ("0", "0")])
def test_each_rank_reads_its_own_patterns_and_writes_its_core(cxi, mpio, collective, monkeypatch, device):
    import h5py
    from mpi4py import MPI

    from ptyhpc.io import load
    from ptyhpc.io.h5 import open_file
    from ptyhpc.io.product import read_product

    monkeypatch.setenv("PTYHPC_MPIO", mpio)
    monkeypatch.setenv("PTYHPC_COLLECTIVE_READ", collective)
    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    with open_file(cxi, "r", world) as f:
        assert f.driver == ("mpio" if mpio == "1" and h5py.get_config().mpi else "sec2")
    d = load(cxi)
    cfg = ReconConfig(algorithm="dm", epochs=3, device=device)
    rec = Reconstruction(d, cfg, world)
    mine = rec.partition.indices(rank)
    assert d.patterns_read == len(mine)  # this rank read its own patterns and no other
    assert world.allreduce(d.patterns_read) == d.count
    # the rows a rank holds are the file's rows of its own positions (zero frequency moved to [0, 0])
    with h5py.File(cxi, "r") as f:
        stored = f["entry_1/data_1/data"][np.sort(mine)]
    assert np.array_equal(asnumpy(rec.state.patterns), np.fft.ifftshift(stored, axes=(-2, -1)).astype(np.float32))
    rec.iterate(cfg.epochs)
    out = world.bcast(str(cxi).replace(".cxi", f"_{mpio}{collective}_{world.Get_size()}.h5") if rank == 0 else None,
                      root=0)
    rec.write(out)
    # the one-rank object, computed on every rank alone
    one = Reconstruction(load(cxi), cfg, None)
    one.iterate(cfg.epochs)
    written = read_product(out)["object"]
    ref = one.gather_object()
    assert np.linalg.norm(written - ref) / np.linalg.norm(ref) <= 1e-5
    world.Barrier()


@pytest.mark.mpi(min_size=2)
def test_ranks_with_different_numbers_of_blocks_read_without_waiting(cxi, monkeypatch, device):
    """Under mpio the file is opened once per rank (collectively) and the blocks are read independently: rank 0
    reads 7 blocks while the others read 1, and nobody waits (the harness times out a hang)."""
    from mpi4py import MPI

    from ptyhpc.io import dataset as ds
    from ptyhpc.io import load

    monkeypatch.setattr(ds, "BLOCK", 2)
    world = MPI.COMM_WORLD
    d = load(cxi)
    mine = np.arange(13) if world.Get_rank() == 0 else np.array([20, 21])
    got = d.read_patterns(mine, world).intensity
    ref = load(cxi).read_patterns(mine).intensity  # this rank alone, no communicator
    assert np.array_equal(got, ref) and d.patterns_read == len(mine)
    world.Barrier()
