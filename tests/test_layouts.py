"""What detectors write, read under ``mpiexec -n 2`` and ``-n 4`` with parallel HDF5: integer patterns with the
detector's markers for overflow and gaps (masked in their own pattern and reported), and the same patterns behind a
virtual dataset (Eiger master files), an external link and compression, which must reconstruct exactly as the
plain float32 file does."""
import json
import os
import shutil

import h5py
import numpy as np
import pytest

from clirun import one_error_line, ptyhpc, run
from ptyhpc.simulate import SimConfig, write
from test_malformed import D, _external_data, _virtual_data

RUN = ("--epochs", 3, "--quiet", "--no-preview", "--algorithm", "lsqml")


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    path = tmp_path_factory.mktemp("plain") / "plain.cxi"
    write(path, SimConfig(object_size=96, probe_size=32, positions=30, probe_diameter=12, aperture_radius=4))
    with h5py.File(path, "r") as f:
        assert np.array_equal(f[D][()], np.round(f[D][()]))  # photon counts: integer types hold them exactly
        assert f[D][()].max() < 65535
    return path


def _reconstruct(path, out, ranks):
    r = run(ptyhpc(ranks, "reconstruct", path, "-o", out, *RUN), timeout=120)
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        return f["object"][0], f["loss_values"][-1], dict(f["ptyhpc"].attrs), r.stderr


def _as_type(src, dst, dtype):
    if os.fspath(src) != os.fspath(dst):
        shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        data = f[D][()].astype(dtype)
        del f[D]
        f.create_dataset(D, data=data, chunks=(1,) + data.shape[1:])


MARKERS = {np.uint16: 65535, np.uint32: 0xFFFFFFFF, np.int32: -1}


@pytest.mark.parametrize("ranks", [2, 4])
@pytest.mark.parametrize("dtype", sorted(MARKERS, key=lambda t: t.__name__), ids=lambda t: t.__name__)
def test_detector_markers_are_masked_in_their_pattern(dtype, ranks, plain, tmp_path):
    """Two pixels at the marker (one at each end of the scan, so on different ranks): reported, left out of their
    own pattern's fit, and the cost is that of the clean data to 2 % (trusting the marker as a count made it 1e5
    times too high)."""
    clean, marked = tmp_path / "clean.cxi", tmp_path / "marked.cxi"
    _as_type(plain, clean, dtype)
    shutil.copy(clean, marked)
    with h5py.File(marked, "a") as f:
        f[D][0, 16, 16] = MARKERS[dtype]  # the brightest pixel of the first pattern
        f[D][29, 5, 7] = MARKERS[dtype]
    _, cost0, _, _ = _reconstruct(clean, tmp_path / "clean.h5", ranks)
    _, cost, attrs, stderr = _reconstruct(marked, tmp_path / "marked.h5", ranks)
    assert f"{marked}: entry_1/data_1/data: 2 pixel(s) in 2 pattern(s) hold the detector's marker" in stderr, stderr
    assert attrs["masked_marker_pixels"] == 2 and attrs["masked_marker_patterns"] == 2
    assert abs(cost / cost0 - 1) < 0.02, (cost, cost0)


def _plugin(name, **options):
    """Recompress with one of hdf5plugin's filters (those Eiger and other detectors write)."""
    def make(path):
        hdf5plugin = pytest.importorskip("hdf5plugin")
        _recompress(path, **getattr(hdf5plugin, name)(**options))
    return make


LAYOUTS = {
    "virtual": _virtual_data,
    "external-link": _external_data,
    "gzip": lambda p: _recompress(p, compression="gzip", compression_opts=4),
    "lzf": lambda p: _recompress(p, compression="lzf"),
    "bitshuffle-lz4": _plugin("Bitshuffle", cname="lz4"),
    "blosc": _plugin("Blosc"),
    "zstd": _plugin("Zstd"),
    "uint16-bitshuffle": lambda p: (_as_type(p, p, np.uint16), _plugin("Bitshuffle", cname="lz4")(p)),
}


def _recompress(path, **options):
    with h5py.File(path, "a") as f:
        data = f[D][()]
        del f[D]
        f.create_dataset(D, data=data, chunks=(1,) + data.shape[1:], **options)


@pytest.mark.parametrize("ranks", [2, 4])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layouts_reconstruct_exactly_as_the_plain_file(layout, ranks, plain, tmp_path):
    """Bit for bit: the same patterns reach the same ranks whichever way the file stores them (the virtual dataset
    through independent opens, since parallel HDF5 cannot read one)."""
    obj0, cost0, attrs0, _ = _reconstruct(plain, tmp_path / "plain.h5", ranks)
    path = tmp_path / f"{layout}.cxi"
    shutil.copy(plain, path)
    LAYOUTS[layout](str(path))
    obj, cost, attrs, _ = _reconstruct(path, tmp_path / f"{layout}.h5", ranks)
    assert np.array_equal(obj, obj0) and cost == cost0
    read = json.loads(attrs["patterns_read_per_rank"])
    assert read == json.loads(attrs0["patterns_read_per_rank"]) and sum(read) == 30  # each rank: its own rows
    itemsize = 2 if layout.startswith("uint16") else 4
    assert json.loads(attrs["bytes_read_per_rank"]) == [k * 32 * 32 * itemsize for k in read]


def test_dead_frames_are_reported_and_left_out(plain, tmp_path):
    """Two frames without a single count (missed triggers) in uint16 data, on 2 ranks: reported, counted in the
    product, and the result is as good as without them (their positions' other frames carry the object there)."""
    clean, dead = tmp_path / "clean.cxi", tmp_path / "dead.cxi"
    _as_type(plain, clean, np.uint16)
    shutil.copy(clean, dead)
    with h5py.File(dead, "a") as f:
        f[D][3] = 0
        f[D][20] = 0
    obj0, _, _, _ = _reconstruct(clean, tmp_path / "clean.h5", 2)
    obj, _, attrs, stderr = _reconstruct(dead, tmp_path / "dead.h5", 2)
    assert f"{dead}: entry_1/data_1/data: 2 dead frame(s) (not a single count) left out of the fit" in stderr
    assert attrs["dead_frames"] == 2 and attrs["masked_marker_pixels"] == 0
    from ptyhpc.compare import compare_files

    truth = str(plain).replace(".cxi", "_truth.h5")
    e0, e = (compare_files(p, truth)["object_nrmse_ramp"] for p in (tmp_path / "clean.h5", tmp_path / "dead.h5"))
    assert e <= 1.05 * e0, (e, e0)


def test_virtual_dataset_named_when_a_source_is_missing_through_info(plain, tmp_path):
    path = tmp_path / "v.cxi"
    shutil.copy(plain, path)
    _virtual_data(str(path))
    os.remove(tmp_path / "frames_2.h5")
    r = run(ptyhpc(1, "info", path))
    one_error_line(r, path, "frames_2.h5 is missing", "zeros")
