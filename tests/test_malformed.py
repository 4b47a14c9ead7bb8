"""Malformed inputs and unsafe outputs: each case runs ``mpiexec -n 2 ptyhpc reconstruct BAD -o OUT`` for real
(``-n 4`` too for the data layouts) and asserts one clear line naming the file, the dataset and the problem, a
non-zero exit of the job, no hang (the harness times out, not the code), that every input file is byte for byte
unchanged and that an existing OUT is neither overwritten nor left half-written (no ``OUT.partial``)."""
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from clirun import checksums, mpiexec, one_error_line, ptyhpc, run
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


def _corrupt_metadata(path):
    """Break the signature of the first symbol-table node: HDF5 then cannot list the groups' links."""
    data = bytearray(open(path, "rb").read())
    at = data.find(b"SNOD")
    data[at:at + 4] = b"XXXX"
    open(path, "wb").write(bytes(data))


def _external_data(path, target="data.h5"):
    """Move the patterns to ``target`` beside ``path``, behind an external link (what many detectors write)."""
    folder = os.path.dirname(path)
    with h5py.File(path, "a") as f:
        with h5py.File(os.path.join(folder, target), "w") as g:
            g.create_dataset("data", data=f[D][()], chunks=(1,) + f[D].shape[1:])
        del f[D]
        f[D] = h5py.ExternalLink(target, "/data")


def _virtual_data(path, parts=3):
    """Split the patterns over ``parts`` files (``frames_K.h5``) joined by a virtual dataset, as Eiger master files
    assemble their data files."""
    folder = os.path.dirname(path)
    with h5py.File(path, "a") as f:
        data = f[D][()]
        layout = h5py.VirtualLayout(shape=data.shape, dtype=data.dtype)
        cuts = np.linspace(0, len(data), parts + 1).astype(int)
        for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
            with h5py.File(os.path.join(folder, f"frames_{k}.h5"), "w") as g:
                g.create_dataset("data", data=data[a:b], chunks=(1,) + data.shape[1:])
            layout[a:b] = h5py.VirtualSource(f"frames_{k}.h5", "data", shape=(b - a,) + data.shape[1:])
        del f[D]
        f.create_virtual_dataset(D, layout, fillvalue=0)


def _virtual_missing_source(path):
    _virtual_data(path)
    os.remove(os.path.join(os.path.dirname(path), "frames_1.h5"))


def _npy(name, array):
    """Save ``array`` beside the input as ``name`` and return the options that pass it."""
    def make(path):
        target = os.path.join(os.path.dirname(path), name)
        np.save(target, array)
        return ["--probe" if name.startswith("probe") else "--object", target]
    return make


def _toml(text):
    def make(path):
        target = os.path.join(os.path.dirname(path), "run.toml")
        open(target, "w").write(text)
        return ["--config", target]
    return make


# name -> (make(path) [returns a list of extra options, or anything else], file suffix, dataset substring, problem substring)
CASES = {
    "missing-file": (lambda p: os.remove(p), "", "-", "no such file"),
    "empty-file": (lambda p: open(p, "w").close(), "", "-", "empty"),
    "not-hdf5": (lambda p: open(p, "w").write("hello, not HDF5\n" * 10), "", "-", "not a readable HDF5"),
    "truncated": (_truncate, "", "-", "not a readable HDF5"),
    "missing-data": (lambda p: (_rewrite(p, L, None), _rewrite(p, D, None)), "", L, "missing"),
    "missing-translation": (lambda p: _rewrite(p, T, None), "", T, "missing"),
    "count-mismatch": (_edit(T, lambda t: t[:-3]), "", L, "30 patterns but 27 scan positions"),
    "nan-in-data": (_nan_in_rank1_slice, "", L, "NaN or Inf"),
    "inf-in-data": (_data(lambda d: np.where(np.arange(d.size).reshape(d.shape) == 5, np.inf, d)), "", L,
                    "NaN or Inf"),
    "negative-intensity": (_data(lambda d: d - 10), "", L, "negative"),
    "data-2d": (_data(lambda d: d[0]), "", L, "3-D"),
    "data-4d": (_data(lambda d: d[None]), "", L, "3-D"),
    "non-square": (_data(lambda d: d[:, :, :20]), "", L, "square"),
    "zero-patterns": (lambda p: (_data(lambda d: d[:0])(p), _edit(T, lambda t: t[:0])(p)), "", L, "zero-size"),
    "string-data": (_data(lambda d: np.array([b"x"] * d.shape[0])), "", L, "numbers"),
    "translation-1d": (_edit(T, lambda t: t[:, 0]), "", T, "(POSI, 2 or 3)"),
    "positions-in-mm": (_edit(T, lambda t: t * 1e4), "", T, "sane object"),
    "nan-position": (_edit(T, lambda t: np.where(np.arange(t.size).reshape(t.shape) == 4, np.nan, t)), "", T, "NaN"),
    "duplicated-positions": (_edit(T, lambda t: np.concatenate([t[:15], t[:15]])), "", T, "duplicated"),
    "energy-in-ev": (_edit(E, lambda e: 10000.0), "", E, "plausible range"),
    "no-energy": (lambda p: _rewrite(p, E, None), "", "energy or wavelength", "missing"),
    "mask-wrong-shape": (_edit(M, lambda m: m[:16]), "", M, "mask shape"),
    # silently wrong before: an inverted mask gave cost 0 and a flat object, a missing virtual source read zeros
    "mask-all-bad": (_edit(M, lambda m: np.ones_like(m)), "", M, "every pixel bad"),
    "virtual-source-missing": (_virtual_missing_source, "", L, "frames_1.h5 is missing"),
    # tracebacks before
    "all-blank-data": (_data(lambda d: np.zeros_like(d)), "", L, "every pattern is zero"),
    "corrupt-metadata": (_corrupt_metadata, "", "-", "corrupt"),
    "external-link-missing": (lambda p: (_external_data(p), os.remove(os.path.join(os.path.dirname(p), "data.h5"))),
                              "", L, "external link to data.h5:/data cannot be followed"),
    "probe-1d": (_npy("probe.npy", np.ones(32, np.complex64)), "probe.npy", "probe", "1-D"),
    "probe-zero": (_npy("probe.npy", np.zeros((1, 32, 32), np.complex64)), "probe.npy", "probe", "zero everywhere"),
    "object-wrong-shape": (_npy("object.npy", np.ones((50, 50), np.complex64)), "object.npy", "object",
                           "object is 50x50 but this scan's object is"),
    "toml-syntax": (_toml("[reconstruct]\nepochs = = 3\n"), "run.toml", "-", "TOML syntax error"),
    "toml-wrong-type": (_toml("[reconstruct]\nepochs = 'ten'\n"), "run.toml", "reconstruct",
                        "epochs = 'ten': must be an integer"),
    "toml-bool-typo": (_toml("[reconstruct]\nupdate_probe = 'flase'\n"), "run.toml", "reconstruct",
                       "update_probe = 'flase': must be true or false"),
}
LAYOUT_CASES = ("mask-all-bad", "virtual-source-missing", "external-link-missing", "all-blank-data")
"""Cases about how the data are laid out in files: run on 4 ranks as well."""


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.cxi"
    write(path, SimConfig(object_size=96, probe_size=32, positions=30, probe_diameter=12, aperture_radius=4))
    return path


@pytest.mark.parametrize("name,ranks", [(n, 2) for n in sorted(CASES)] + [(n, 4) for n in LAYOUT_CASES])
def test_malformed_input_fails_cleanly_on_every_rank(name, ranks, good, tmp_path):
    make, suffix, dataset, problem = CASES[name]
    inputs = tmp_path / "in"
    inputs.mkdir()
    bad = inputs / "bad.cxi"
    shutil.copy(good, bad)
    extra = make(str(bad))
    extra = extra if isinstance(extra, list) else []  # makers that only edit the file return something else
    before = checksums(inputs)
    out = tmp_path / "out.h5"
    out.write_bytes(b"previous result")
    r = run(ptyhpc(ranks, "reconstruct", bad, "-o", out, "--epochs", 2, "--no-preview", "--quiet", *extra))
    one_error_line(r, str(inputs / suffix) if suffix else str(bad), dataset, problem)
    assert checksums(inputs) == before
    assert out.read_bytes() == b"previous result"
    assert not (tmp_path / "out.h5.partial").exists()


def test_probe_larger_than_patterns(good, tmp_path):
    probe = tmp_path / "big.npy"
    np.save(probe, np.ones((1, 64, 64), np.complex64))
    r = run([sys.executable, "-m", "ptyhpc", "reconstruct", str(good), "-o", str(tmp_path / "o.h5"),
             "--probe", str(probe), "--epochs", "1"])
    assert r.returncode != 0
    assert f"{probe}: probe: probe is 64 x 64 but the patterns are 32 x 32" in r.stderr


def test_npz_missing_scan_and_corrupt_npz(tmp_path):
    np.savez(tmp_path / "a.npz", data=np.ones((3, 8, 8)))
    (tmp_path / "b.npz").write_bytes(b"PK\x03\x04 not really a zip")
    for name, expect in (("a.npz", "a.npz: scan: missing"), ("b.npz", "b.npz: -: not a readable npz")):
        r = run([sys.executable, "-m", "ptyhpc", "info", str(tmp_path / name)])
        assert r.returncode != 0 and expect in r.stderr


def test_ptychodus_folder_without_product(tmp_path):
    (tmp_path / "diffraction.h5").write_bytes(b"")
    r = run([sys.executable, "-m", "ptyhpc", "info", str(tmp_path)])
    assert r.returncode != 0 and "product.h5: -: missing" in r.stderr


SETTINGS = {  # --set KEY=VALUE -> what the one line must say (the key, the value, what is allowed)
    "update_probe=flase": "--set update_probe=flase: setting update_probe must be true/false, yes/no, on/off or 1/0",
    "epochs=ten": "--set epochs=ten: setting epochs must be an integer",
    "alpha=0.1x": "--set alpha=0.1x: setting alpha must be a number",
    "lsqml_beta=-5": "lsqml_beta must lie in (0, 1], not -5.0",
    "dm_power_bound=-1": "dm_power_bound must be >= 0 (0: plain projection), not -1.0",
    "seed=-3": "seed must be >= 0, not -3",
    "no_such_key=1": "--set no_such_key=1: unknown setting 'no_such_key'",
}


@pytest.mark.parametrize("item", sorted(SETTINGS))
def test_settings_errors_name_the_key_value_and_what_is_allowed(item, good, tmp_path):
    out = tmp_path / "out.h5"
    r = run(ptyhpc(2, "reconstruct", good, "-o", out, "--epochs", 1, "--quiet", "--set", item))
    one_error_line(r, SETTINGS[item])
    assert not out.exists()


@pytest.mark.parametrize("word,value", [("true", True), ("No", False), ("1", True), ("off", False)])
def test_boolean_words(word, value):
    from ptyhpc.config import ReconConfig

    assert ReconConfig.parse("update_probe", word) is value


def test_checkpoint_errors(good, tmp_path):
    """A checkpoint without its epoch, and one that holds NaN (a diverged run's, written before ptyhpc refused to
    write those), are refused with one line; the existing result survives."""
    out = tmp_path / "r.h5"
    r = run(ptyhpc(2, "reconstruct", good, "-o", out, "--epochs", 2, "--quiet", "--no-preview",
                   "--checkpoint-every", 2))
    assert r.returncode == 0, r.stderr
    ckpt = tmp_path / "r.checkpoint.h5"
    no_epoch, nan = tmp_path / "no_epoch.h5", tmp_path / "nan.h5"
    shutil.copy(ckpt, no_epoch)
    shutil.copy(ckpt, nan)
    with h5py.File(no_epoch, "a") as f:
        del f["checkpoint"].attrs["epoch"]
    with h5py.File(nan, "a") as f:
        f["object"][0, 40, 40] = np.nan
    before = checksums(tmp_path)
    for resume, dataset, problem in ((no_epoch, "checkpoint/@epoch", "missing"), (nan, "object", "NaN or Inf")):
        r = run(ptyhpc(2, "reconstruct", good, "-o", out, "--epochs", 4, "--quiet", "--no-preview",
                       "--resume", resume))
        one_error_line(r, resume, dataset, problem)
        assert checksums(tmp_path) == before


def _zstd_copy(good, tmp_path):
    """A copy of ``good`` whose patterns are compressed with zstd (an hdf5plugin filter)."""
    hdf5plugin = pytest.importorskip("hdf5plugin")
    bad = tmp_path / "zstd.cxi"
    shutil.copy(good, bad)
    with h5py.File(bad, "a") as f:
        data = f[D][()]
        del f[D]
        f.create_dataset(D, data=data, chunks=(1,) + data.shape[1:], **hdf5plugin.Zstd())
    return bad


def test_missing_compression_filter_is_named(good, tmp_path):
    """Data compressed with a filter this installation lacks (here: zstd, with hdf5plugin made unimportable) is
    named as such, not reported as corruption."""
    bad = _zstd_copy(good, tmp_path)
    without = "import sys; sys.modules['hdf5plugin'] = None; from ptyhpc.cli import main; sys.exit(main())"
    r = run(mpiexec(2) + [sys.executable, "-c", without, "reconstruct", str(bad), "-o", str(tmp_path / "o.h5"),
                          "--epochs", "1", "--quiet"])
    one_error_line(r, bad, L, "HDF5 filter 32015", "pip install hdf5plugin")
    r = run(ptyhpc(2, "reconstruct", bad, "-o", tmp_path / "o.h5", "--epochs", 1, "--quiet", "--no-preview"))
    assert r.returncode == 0, r.stderr  # with hdf5plugin importable, the same file reads


def test_hdf5plugin_is_imported_only_for_a_file_that_needs_it(good, tmp_path):
    """A process that reads a plain file does not import hdf5plugin (about 6 MiB of every rank's memory); one
    that reads a zstd-compressed file imports it and reads the same patterns (same misfit after one epoch)."""
    bad = _zstd_copy(good, tmp_path)
    code = ("import sys; from ptyhpc.cli import main; rc = main(); "
            "print('hdf5plugin imported:', 'hdf5plugin' in sys.modules); sys.exit(rc)")
    costs = []
    for path, imported in ((good, False), (bad, True)):
        r = run([sys.executable, "-c", code, "reconstruct", str(path), "-o", str(tmp_path / "o.h5"), "--epochs", "1",
                 "--no-preview"])
        assert r.returncode == 0, r.stderr
        assert f"hdf5plugin imported: {imported}" in r.stdout
        costs.append(re.search(r"final cost (\S+)", r.stdout + r.stderr).group(1))
    assert costs[0] == costs[1]


def test_compare_into_a_closed_pipe(good, tmp_path):
    """``ptyhpc compare A B | head``: the reader leaving early is no error worth a traceback."""
    truth = str(good).replace(".cxi", "_truth.h5")
    p = subprocess.Popen([sys.executable, "-m", "ptyhpc", "compare", truth, truth], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.close()  # before the child has printed anything
    err = p.stderr.read()
    assert p.wait(timeout=60) != 0
    assert err == "", err
