"""Malformed inputs: each case runs ``mpiexec -n 2 ptyhpc reconstruct BAD -o OUT`` for real and asserts one
clear line naming the file, the dataset and the problem, a non-zero exit of the job, no hang (the harness
times out, not the code), and that an existing OUT is neither overwritten nor left half-written."""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from ptyhpc.simulate import SimConfig, write

T = "entry_1/sample_1/geometry_1/translation"
D = "entry_1/instrument_1/detector_1/data"
E = "entry_1/instrument_1/source_1/energy"
M = "entry_1/instrument_1/detector_1/mask"
L = "entry_1/data_1/data"  # the soft link to D, which readers name


def _rewrite(path, key, value):
    with h5py.File(path, "a") as f:
        del f[key]
        if value is not None:
            f[key] = value


def _edit(key, fn):
    def make(path):
        with h5py.File(path, "r") as f:
            value = f[key][()]
        _rewrite(path, key, fn(value))
    return make


def _data(fn):
    """Replace the patterns (and the soft link to them stays valid)."""
    return _edit(D, fn)


def _truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def _nan_in_rank1_slice(path):
    with h5py.File(path, "a") as f:
        d = f[D]
        d[d.shape[0] - 1, 3, 3] = np.nan  # far end of the spiral: owned by one rank only


# name -> (make(path), dataset substring, problem substring); ~20 ways for an input to be wrong
CASES = {
    "missing-file": (lambda p: os.remove(p), "-", "no such file"),
    "empty-file": (lambda p: open(p, "w").close(), "-", "empty"),
    "not-hdf5": (lambda p: open(p, "w").write("hello, not HDF5\n" * 10), "-", "not a readable HDF5"),
    "truncated": (_truncate, "-", "not a readable HDF5"),
    "missing-data": (lambda p: (_rewrite(p, L, None), _rewrite(p, D, None)), L,
                     "missing"),
    "missing-translation": (lambda p: _rewrite(p, T, None), T, "missing"),
    "count-mismatch": (_edit(T, lambda t: t[:-3]), L, "30 patterns but 27 scan positions"),
    "nan-in-data": (_nan_in_rank1_slice, L, "NaN or Inf"),
    "inf-in-data": (_data(lambda d: np.where(np.arange(d.size).reshape(d.shape) == 5, np.inf, d)), L, "NaN or Inf"),
    "negative-intensity": (_data(lambda d: d - 10), L, "negative"),
    "data-2d": (_data(lambda d: d[0]), L, "3-D"),
    "data-4d": (_data(lambda d: d[None]), L, "3-D"),
    "non-square": (_data(lambda d: d[:, :, :20]), L, "square"),
    "zero-patterns": (lambda p: (_data(lambda d: d[:0])(p), _edit(T, lambda t: t[:0])(p)), L, "zero-size"),
    "string-data": (_data(lambda d: np.array([b"x"] * d.shape[0])), L, "numbers"),
    "translation-1d": (_edit(T, lambda t: t[:, 0]), T, "(POSI, 2 or 3)"),
    "positions-in-mm": (_edit(T, lambda t: t * 1e4), T, "sane object"),
    "nan-position": (_edit(T, lambda t: np.where(np.arange(t.size).reshape(t.shape) == 4, np.nan, t)), T, "NaN"),
    "duplicated-positions": (_edit(T, lambda t: np.concatenate([t[:15], t[:15]])), T, "duplicated"),
    "energy-in-ev": (_edit(E, lambda e: 10000.0), E, "plausible range"),
    "no-energy": (lambda p: _rewrite(p, E, None), "energy or wavelength", "missing"),
    "mask-wrong-shape": (_edit(M, lambda m: m[:16]), M, "mask shape"),
}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.cxi"
    write(path, SimConfig(object_size=96, probe_size=32, positions=30, probe_diameter=12, aperture_radius=4))
    return path


def _run(cmd, timeout=90):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _mpiexec(n):
    return ["mpiexec", "-n", str(n)] if n > 1 else []


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_input_fails_cleanly_on_every_rank(name, good, tmp_path):
    make, dataset, problem = CASES[name]
    bad = tmp_path / "bad.cxi"
    shutil.copy(good, bad)
    make(bad)
    out = tmp_path / "out.h5"
    out.write_bytes(b"previous result")
    ranks = 2 if shutil.which("mpiexec") else 1
    r = _run(_mpiexec(ranks) + [sys.executable, "-m", "ptyhpc", "reconstruct", str(bad), "-o", str(out),
                                "--epochs", "2", "--no-preview", "--quiet"])
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("ptyhpc: error")]
    assert errors, r.stderr
    line = errors[0]
    assert str(bad) in line and dataset in line and problem in line, line
    assert "Traceback" not in r.stderr
    assert out.read_bytes() == b"previous result"
    assert not (tmp_path / "out.h5.partial").exists()


def test_probe_larger_than_patterns(good, tmp_path):
    probe = tmp_path / "big.npy"
    np.save(probe, np.ones((1, 64, 64), np.complex64))
    r = _run([sys.executable, "-m", "ptyhpc", "reconstruct", str(good), "-o", str(tmp_path / "o.h5"),
              "--probe", str(probe), "--epochs", "1"])
    assert r.returncode != 0
    assert f"{probe}: probe: probe is 64 x 64 but the patterns are 32 x 32" in r.stderr


def test_npz_missing_scan_and_corrupt_npz(tmp_path):
    np.savez(tmp_path / "a.npz", data=np.ones((3, 8, 8)))
    (tmp_path / "b.npz").write_bytes(b"PK\x03\x04 not really a zip")
    for name, expect in (("a.npz", "a.npz: scan: missing"), ("b.npz", "b.npz: -: not a readable npz")):
        r = _run([sys.executable, "-m", "ptyhpc", "info", str(tmp_path / name)])
        assert r.returncode != 0 and expect in r.stderr


def test_ptychodus_folder_without_product(tmp_path):
    (tmp_path / "diffraction.h5").write_bytes(b"")
    r = _run([sys.executable, "-m", "ptyhpc", "info", str(tmp_path)])
    assert r.returncode != 0 and "product-in.h5: -: missing" in r.stderr
