"""Forward model and adjoints: dot tests, shift accuracy, Parseval, mode orthogonalisation."""
import numpy as np
import pytest

from ptyhpc import physics
from ptyhpc.backend import asnumpy
from ptyhpc.simulate import make_probe

rng = np.random.default_rng(7)


def crandn(*shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def test_shift_adjoint_dot_test(xp):
    probe = xp.asarray(crandn(2, 32, 32))
    w = physics.Bilinear.weights(physics.split_scan(xp.asarray(rng.uniform(0, 20, (9, 2))))[1])
    g = xp.asarray(crandn(9, 2, 32, 32))
    lhs = complex(xp.vdot(physics.shifted_probes(physics.probe_stack(probe), w), g))
    rhs = complex(xp.vdot(probe, physics.shifted_probes_adjoint(g, w)))
    assert abs(lhs - rhs) / abs(lhs) < 1e-5


def test_extract_scatter_adjoint_dot_test(xp):
    obj = xp.asarray(crandn(60, 70))
    corner = rng.integers(0, 30, (12, 2))
    patches = xp.asarray(crandn(12, 32, 32))
    acc = xp.zeros_like(obj)
    physics.scatter_add(acc, corner, patches)
    lhs = complex(xp.vdot(physics.extract(obj, xp.asarray(corner), 32), patches))
    assert abs(lhs - complex(xp.vdot(obj, acc))) / float(abs(acc).sum()) < 1e-5


def test_scatter_add_sums_overlaps(xp):
    """Windows that overlap add up (the CuPy path is one scatter-add kernel for the whole batch)."""
    acc = xp.zeros((6, 6), dtype=xp.complex64)
    physics.scatter_add(acc, np.array([[0, 0], [1, 1], [1, 1]]), xp.ones((3, 4, 4), dtype=xp.complex64) * (1 + 2j))
    expected = np.zeros((6, 6), np.complex64)
    expected[0:4, 0:4] += 1 + 2j
    expected[1:5, 1:5] += 2 * (1 + 2j)
    assert np.array_equal(asnumpy(acc), expected)


def test_integer_positions_leave_probe_unshifted(xp):
    probe = xp.asarray(crandn(1, 16, 16))
    w = physics.Bilinear.weights(physics.split_scan(xp.asarray([[3.0, 5.0]]))[1])
    assert np.array_equal(asnumpy(physics.shifted_probes(physics.probe_stack(probe), w)[0]), asnumpy(probe))


def test_bilinear_shift_of_band_limited_probe_matches_fourier_shift():
    probe = make_probe(128, 44, 16, photons=1.0)
    for d in ([0.5, 0.5], [0.25, 0.8]):
        w = physics.Bilinear.weights(physics.split_scan(np.array([d]))[1])
        bilinear = physics.shifted_probes(physics.probe_stack(probe), w)[0]
        exact = physics.fourier_shift(probe, np.array(d))
        # measured 4.3 % at a half-pixel shift, 3.0 % at (0.25, 0.8): linear interpolation attenuates the
        # probe's band edge (1/4 of Nyquist here)
        assert np.linalg.norm(bilinear - exact) / np.linalg.norm(exact) < 0.05


def test_fft_is_unitary_with_zero_frequency_at_origin(xp):
    x = xp.asarray(crandn(3, 64, 64))
    assert np.isclose(float((abs(physics.fft2(x)) ** 2).sum()), float((abs(x) ** 2).sum()), rtol=1e-5)
    assert np.isclose(complex(physics.fft2(xp.ones((8, 8), xp.complex64))[0, 0]), 8.0)
    assert np.allclose(asnumpy(physics.ifft2(physics.fft2(x))), asnumpy(x), atol=1e-5)
    assert physics.fft2(x).dtype == x.dtype  # single precision stays single


def test_threaded_fft_equals_one_thread():
    """A batch above THREADED_FFT_SIZE is split over threads; each transform is the same as on one."""
    from ptyhpc import backend

    x = crandn(16, 1, 256, 256)
    assert x.size >= physics.THREADED_FFT_SIZE[backend.FFT_LIBRARY]
    saved = backend.FFT_WORKERS
    try:
        backend.FFT_WORKERS = 1
        one = physics.fft2(x)
        backend.FFT_WORKERS = 2
        assert np.array_equal(physics.fft2(x), one)
    finally:
        backend.FFT_WORKERS = saved


def test_orthogonalize_keeps_intensity_and_sorts_modes():
    probe = crandn(3, 24, 24)
    ortho = physics.orthogonalize_modes(probe)
    gram = np.einsum("kij,lij->kl", ortho.conj(), ortho)
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 1e-3 * abs(gram).max()
    power = np.diag(gram).real
    assert np.all(np.diff(power) <= 0)
    assert np.allclose((abs(probe) ** 2).sum(0), (abs(ortho) ** 2).sum(0), rtol=1e-4)


@pytest.mark.parametrize("noise", ["gaussian", "poisson"])
def test_cost_is_zero_for_a_perfect_fit_and_ignores_masked_pixels(noise, xp):
    measured = xp.asarray(rng.poisson(50, (2, 16, 16)).astype(np.float32))
    mask = xp.ones((16, 16), bool)
    assert float(physics.cost(measured, measured, mask, noise)) == pytest.approx(0, abs=1e-3)
    wrong = measured.copy()
    wrong[:, 3, 4] += 1000
    assert float(physics.cost(wrong, measured, mask, noise)) > 1
    mask[3, 4] = False
    assert float(physics.cost(wrong, measured, mask, noise)) == pytest.approx(0, abs=1e-3)
    per_pattern = xp.ones((2, 16, 16), bool)  # a pixel left out of one pattern only (a detector marker)
    per_pattern[0, 3, 4] = False
    assert float(physics.cost(wrong, measured, per_pattern, noise)) > 1


def test_modulus_ratio_imposes_measured_amplitude_on_valid_pixels_only():
    farfield = crandn(2, 1, 16, 16)
    farfield[0, :, 5, 5] = 1e-6  # a dark pixel: its phase is rounding noise
    predicted = physics.intensity(farfield)
    measured = rng.uniform(1, 5, (2, 16, 16)).astype(np.float32)
    mask = np.ones((16, 16), bool)
    mask[0, 0] = False
    fixed = farfield * physics.modulus_ratio(predicted, measured, mask)[:, None]
    got = physics.intensity(fixed)
    lit = mask & (predicted >= physics.RATIO_FLOOR * measured.mean(axis=(1, 2), keepdims=True))
    assert np.allclose(got[lit], measured[lit], rtol=1e-4)
    assert np.allclose(got[:, 0, 0], predicted[:, 0, 0])
    # below the floor the amplitude is not blown up to the measured one
    assert got[0, 5, 5] < 1e-6 * measured[0, 5, 5]
    assert not lit[0, 5, 5]


def test_fit_amplitude_equals_cost_and_ratio():
    farfield = crandn(3, 2, 16, 16)
    predicted = physics.intensity(farfield)
    measured = rng.poisson(3, (3, 16, 16)).astype(np.float32)
    mask = rng.uniform(size=(16, 16)) > 0.1
    misfit, ratio = physics.fit_amplitude(predicted, measured, mask)
    assert float(misfit) == pytest.approx(float(physics.cost(predicted, measured, mask, "gaussian")), rel=1e-5)
    assert np.allclose(ratio, physics.modulus_ratio(predicted, measured, mask), rtol=1e-5)


def test_fftw_computes_the_same_transforms_as_scipy():
    """The opt-in FFTW backend (setting ``fft``) is the same transform as the default to rounding, keeps single
    precision and is used by physics.fft2 once selected."""
    pytest.importorskip("pyfftw")
    from ptyhpc import backend

    x = np.random.default_rng(3).standard_normal((5, 1, 96, 96)).astype(np.float32) * (1 + 1j)
    x = x.astype(np.complex64)
    plain = physics.fft2(x), physics.ifft2(x)
    try:
        backend.use_cpu_fft("fftw")
        assert backend.CPU_FFT.__name__.startswith("pyfftw")
        fast = physics.fft2(x), physics.ifft2(x)
    finally:
        backend.use_cpu_fft("scipy")
    for a, b in zip(fast, plain):
        assert a.dtype == np.complex64
        assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-6


PLANNED_PROBE = """
import hashlib
import numpy as np
import scipy.fft
from ptyhpc import backend, physics
lib = backend.use_cpu_fft("auto")
rng = np.random.default_rng(0)
def field(*shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
x = field(6, 1, 32, 32)  # planned 32^2, batches up to 4: two chunks
y, z = physics.fft2(x), physics.ifft2(x)
fftw = lib != "scipy" and backend.CPU_FFT.planned(x, 1)
fftw = fftw and not backend.CPU_FFT._missing and len(backend.CPU_FFT._plans) > 0  # FFTW computed them
ref = scipy.fft.fft2(x, norm="ortho")
batches = all(np.array_equal(physics.fft2(np.ascontiguousarray(x[:b])), y[:b]) for b in (1, 3, 4))
threads = not fftw or np.array_equal(backend.CPU_FFT.fft2(x, workers=2), y)
u = field(3, 1, 48, 48)  # not planned: scipy's transform itself
print(lib, fftw, y.dtype, hashlib.sha1(y.tobytes() + z.tobytes()).hexdigest(),
      float(np.abs(y - ref).max() / np.abs(ref).max()), batches, threads,
      np.array_equal(physics.fft2(u), scipy.fft.fft2(u, norm="ortho")), sep="|")
"""


def test_planned_fftw_computes_the_same_bits_in_every_process(tmp_path):
    """The default fft = 'auto': FFTW with the plans ``ptyhpc plan-fft`` wrote, read only. Two processes compute
    the same bits (FFTW in use, scipy's transform to rounding, single precision kept); an image's transform does
    not depend on the batch it comes in (a batch beyond the planned ones goes in chunks) nor on the threads, which
    N ranks = 1 rank rests on; an image size the wisdom does not hold is scipy's, bit for bit; without the wisdom
    file 'auto' is scipy alone."""
    import os
    import subprocess
    import sys

    pytest.importorskip("pyfftw")
    wisdom = tmp_path / "fftw-wisdom"
    r = subprocess.run([sys.executable, "-m", "ptyhpc", "plan-fft", "--sizes", "32", "--batch", "4", "--wisdom",
                        str(wisdom)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "plans" in r.stdout and wisdom.stat().st_size > 0, r.stderr

    def probe(path):
        env = dict(os.environ, PTYHPC_FFTW_WISDOM=str(path))
        r = subprocess.run([sys.executable, "-c", PLANNED_PROBE], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip().split("|")

    first, second = probe(wisdom), probe(wisdom)
    assert first == second  # the same bits in two processes
    lib, fftw, dtype, _, error, batches, threads, unplanned = first
    assert lib == "fftw (planned)" and fftw == "True" and dtype == "complex64" and float(error) < 1e-6, first
    assert batches == "True" and threads == "True" and unplanned == "True", first
    alone = probe(tmp_path / "missing")
    assert alone[0] == "scipy" and alone[1] == "False" and alone[-1] == "True", alone


def test_planned_fftw_falls_back_to_scipy_where_the_wisdom_lacks_a_plan(tmp_path):
    """A wisdom file whose record claims more than it holds (one replaced while a run reads it): the image size it
    lacks goes to scipy.fft, for every batch alike, instead of ending the run."""
    import json

    pyfftw = pytest.importorskip("pyfftw")
    from ptyhpc import backend

    path = str(tmp_path / "fftw-wisdom")
    backend.plan_fftw(path, sizes=(32,), batches=range(1, 3), modes=(1,), threads=1)
    with open(path + ".json") as f:
        families = json.load(f)
    families["batch"] = 8  # claims batches of up to 8, holds 1 and 2
    with open(path + ".json", "w") as f:
        json.dump(families, f)
    fft = backend.PlannedFFTW(pyfftw, path)
    x = crandn(6, 1, 32, 32)
    import scipy.fft

    for batch in (x, x[:2]):
        assert np.array_equal(fft.fft2(batch), scipy.fft.fft2(batch, norm="ortho"))


SCIPY_PROBE = """
import sys
import numpy as np
from ptyhpc import backend, physics
from ptyhpc.cli import main
rc = main()
print("library:", backend.FFT_LIBRARY)
print("scipy imported:", any(m == "scipy" or m.startswith("scipy.") for m in sys.modules))
x = np.random.default_rng(0).standard_normal((4, 1, 48, 48)).astype(np.complex64)
backend.use_cpu_fft("fftw")  # pyFFTW's SciPy interface after pyFFTW was imported with SciPy hidden
import scipy.fft
ref = scipy.fft.fft2(x, norm="ortho")
print("fftw error:", float(np.abs(physics.fft2(x) - ref).max() / np.abs(ref).max()))
sys.exit(rc)
"""


def test_a_run_on_planned_fftw_does_not_load_scipy(tmp_path):
    """A reconstruction whose FFTs FFTW computes from the machine's plans (the default where ``ptyhpc plan-fft``
    ran) never imports SciPy (25 MiB of every rank: backend._pyfftw), multislice included; ``fft = 'fftw'``
    (pyFFTW's SciPy interface) still works in that process and computes SciPy's transform to rounding."""
    pytest.importorskip("pyfftw")
    import subprocess
    import sys

    from ptyhpc.simulate import SimConfig, write

    data = tmp_path / "s.cxi"
    write(str(data), SimConfig(object_size=160, probe_size=64, positions=60, probe_diameter=22, aperture_radius=8,
                               seed=2))
    for algorithm, extra in (("lsqml", []), ("rpie", ["--slices", "2", "--slice-spacing", "2e-6"])):
        r = subprocess.run([sys.executable, "-c", SCIPY_PROBE, "reconstruct", str(data), "-o", str(tmp_path / "o.h5"),
                            "--algorithm", algorithm, "--epochs", "2", "--no-preview", *extra],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        if "library: fftw (planned)" not in r.stdout:
            pytest.skip("this machine has no FFTW plans (ptyhpc plan-fft has not run)")
        assert "scipy imported: False" in r.stdout, (algorithm, r.stdout)
        assert float(r.stdout.split("fftw error:")[1]) < 1e-6


def test_fftw_missing_is_one_clear_error(monkeypatch):
    """Asking for FFTW where pyFFTW is not installed names the setting and the remedy (DeviceError: the CLI
    prints it as one line on every rank); the FFT in use stays scipy."""
    import sys

    from ptyhpc import backend

    monkeypatch.setitem(sys.modules, "pyfftw", None)  # import pyfftw now raises ImportError
    with pytest.raises(backend.DeviceError, match=r"fft = 'fftw' needs pyFFTW.*ptyhpc\[fftw\]"):
        backend.use_cpu_fft("fftw")
    assert backend.FFT_LIBRARY == "scipy"
