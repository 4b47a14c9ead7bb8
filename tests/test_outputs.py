"""Never lose data: a run never writes over a file it reads, refuses a wrong output location before its first
epoch, and never writes a non-finite result (a diverging run stops on every rank, keeping the previous result and
checkpoint). Each case is a real ``mpiexec -n 2 ptyhpc reconstruct``; inputs are checked byte for byte."""
import os
import shutil
import time

import h5py
import numpy as np
import pytest

from clirun import checksums, one_error_line, ptyhpc, run
from ptyhpc.simulate import SimConfig, write


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A small CXI scan, a finished 2-rank result of it and that run's checkpoint (read-only for the tests)."""
    folder = tmp_path_factory.mktemp("scan")
    data = folder / "scan.cxi"
    write(data, SimConfig(object_size=96, probe_size=32, positions=30, probe_diameter=12, aperture_radius=4))
    r = run(ptyhpc(2, "reconstruct", data, "-o", folder / "prev.h5", "--epochs", 2, "--quiet",
                   "--checkpoint-every", 2))
    assert r.returncode == 0, r.stderr
    return folder


def _copy(scan, tmp_path):
    folder = tmp_path / "work"
    shutil.copytree(scan, folder)
    return folder


def _ptychodus_folder(folder):
    """A Ptychodus input folder (diffraction.h5, product-in.h5) holding the same scan as scan.cxi."""
    from ptyhpc.io import load

    d = load(folder / "scan.cxi")
    sub = folder / "ptychodus"
    sub.mkdir()
    with h5py.File(folder / "scan.cxi", "r") as f:
        patterns = f["entry_1/data_1/data"][()]
    with h5py.File(sub / "diffraction.h5", "w") as f:
        f["patterns"] = patterns
    centres = (d.scan + d.n / 2 - np.asarray(d.object_shape) / 2) * d.pixel_size
    with h5py.File(sub / "product-in.h5", "w") as f:
        f.attrs.update({"detector_object_distance_m": d.distance, "probe_energy_eV": 10000.0})
        f["probe_position_x_m"], f["probe_position_y_m"] = centres[:, 1], centres[:, 0]
        f["probe"] = np.ones((1, 1, d.n, d.n), np.complex64)
        f.create_dataset("object", data=np.ones((1, 8, 8), np.complex64)).attrs["pixel_width_m"] = d.pixel_size
    return sub


# name -> (input and options of the run, given the folder; the path -o names; the option whose file it is)
TARGETS = {
    "input": lambda w: (["scan.cxi"], w / "scan.cxi", "INPUT"),
    "input-via-symlink": lambda w: (os.symlink(w / "scan.cxi", w / "link.h5"), ["scan.cxi"], w / "link.h5",
                                    "INPUT")[1:],
    "input-via-hardlink": lambda w: (os.link(w / "scan.cxi", w / "hard.h5"), ["scan.cxi"], w / "hard.h5",
                                     "INPUT")[1:],
    "probe": lambda w: (["scan.cxi", "--probe", w / "prev.h5"], w / "prev.h5", "--probe"),
    "object": lambda w: (["scan.cxi", "--object", w / "prev.h5"], w / "prev.h5", "--object"),
    "resume": lambda w: (["scan.cxi", "--resume", w / "prev.checkpoint.h5"], w / "prev.checkpoint.h5", "--resume"),
    "config": lambda w: ((w / "run.toml").write_text("[reconstruct]\nepochs = 1\n"), ["scan.cxi", "--config",
                         w / "run.toml"], w / "run.toml", "--config")[1:],
    "ptychodus-folder-file": lambda w: ([_ptychodus_folder(w)], w / "ptychodus" / "diffraction.h5", "INPUT"),
}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_output_never_replaces_an_input(name, scan, tmp_path):
    work = _copy(scan, tmp_path)
    args, out, option = TARGETS[name](work)
    args = [work / a if a == "scan.cxi" else a for a in args]
    before = checksums(work)
    r = run(ptyhpc(2, "reconstruct", *args, "-o", out, "--epochs", 2, "--quiet"), timeout=60)
    one_error_line(r, out, "-o", f"is the file given as {option}")
    assert checksums(work) == before  # nothing read was changed, nothing was added


def test_preview_and_checkpoint_names_are_checked_too(scan, tmp_path):
    """``-o scan.h5`` would write its preview to scan.png and its checkpoint to scan.checkpoint.h5."""
    work = _copy(scan, tmp_path)
    shutil.copy(work / "scan.cxi", work / "data.png")
    before = checksums(work)
    r = run(ptyhpc(2, "reconstruct", work / "data.png", "-o", work / "data.h5", "--epochs", 2, "--quiet"))
    one_error_line(r, work / "data.png", "preview", "is the file given as INPUT")
    assert checksums(work) == before


def test_resuming_replaces_only_its_own_checkpoint(scan, tmp_path):
    """The one file a run may replace is the checkpoint it resumed from (``OUT.checkpoint.h5``, the documented
    way to continue): the input is unchanged and the new checkpoint is complete."""
    work = _copy(scan, tmp_path)
    data = checksums(work)["scan.cxi"]
    r = run(ptyhpc(2, "reconstruct", work / "scan.cxi", "-o", work / "prev.h5", "--epochs", 4, "--quiet",
                   "--resume", work / "prev.checkpoint.h5", "--checkpoint-every", 4))
    assert r.returncode == 0, r.stderr
    assert checksums(work)["scan.cxi"] == data
    with h5py.File(work / "prev.checkpoint.h5", "r") as f:
        assert f["checkpoint"].attrs["epoch"] == 4


LOCATIONS = {  # name -> (-o given the work folder, what the line must say)
    "missing-directory": (lambda w: w / "no" / "such" / "dir" / "r.h5", "does not exist"),
    "a-directory": (lambda w: w, "is a directory"),
    "read-only-filesystem": (lambda w: "/proc/ptyhpc-result.h5", "cannot write in /proc"),
}


@pytest.mark.parametrize("name", sorted(LOCATIONS))
def test_output_location_refused_before_the_first_epoch(name, scan, tmp_path):
    """A run of 100000 epochs that cannot write its result fails at once: no epoch runs, no traceback."""
    work = _copy(scan, tmp_path)
    where, problem = LOCATIONS[name]
    out = where(work)
    t0 = time.monotonic()
    r = run(ptyhpc(2, "reconstruct", work / "scan.cxi", "-o", out, "--epochs", 100000), timeout=60)
    seconds = time.monotonic() - t0
    one_error_line(r, out, "-o", problem)
    assert "epoch" not in r.stderr.replace(one_error_line(r), "")  # not one epoch was run
    assert seconds < 5, f"{seconds:.1f} s to refuse"
    assert not [p for p in os.listdir(work) if p.endswith(".partial")]


def test_diverging_run_keeps_previous_result_and_checkpoint(scan, tmp_path):
    """A finite start whose model overflows single precision (object amplitude 1e20): the cost is NaN after the
    first epoch; every rank stops with the epoch named, nothing is written, the earlier result and checkpoint
    stay as they were."""
    work = _copy(scan, tmp_path)
    np.save(work / "huge.npy", np.full((96, 96), 1e20, np.complex64))
    before = checksums(work)
    r = run(ptyhpc(2, "reconstruct", work / "scan.cxi", "-o", work / "prev.h5", "--object", work / "huge.npy",
                   "--epochs", 5, "--checkpoint-every", 1))
    one_error_line(r, work / "prev.h5", "not written", "in epoch 1", "diverged")
    assert checksums(work) == before


def test_no_result_is_written_when_the_object_is_not_finite(tmp_path):
    """``Reconstruction.write`` refuses a state holding NaN, whatever the cost said (in process, one rank)."""
    from conftest import small_dataset
    from ptyhpc.config import ReconConfig
    from ptyhpc.engine import Diverged, Reconstruction

    d, _, p0 = small_dataset()
    rec = Reconstruction(d, ReconConfig(epochs=1), probe=p0)
    rec.iterate(1)
    rec.state.obj[10, 10] = np.nan
    out = tmp_path / "r.h5"
    with pytest.raises(Diverged, match="NaN or Inf after epoch 1"):
        rec.write(out)
    assert os.listdir(tmp_path) == []
