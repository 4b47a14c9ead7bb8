"""Fourier ring correlation (ptyhpc.compare.frc, register; ``ptyhpc frc``), ``--subset``, and the registered
error of ptyhpc.compare.object_errors."""
import json
import subprocess
import sys

import numpy as np

from ptyhpc.compare import frc, object_errors, register
from ptyhpc.physics import fourier_shift


def _band_limited_pair(cutoff=0.2, n=256, seed=0):
    """Two noisy copies of one image whose spectrum stops at ``cutoff`` cycles per pixel; the second shifted by
    (2.3, -1.6) px and multiplied by a phase factor."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(n)
    f = np.hypot(k[:, None], k[None, :])
    field = np.fft.ifft2((rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) * (f < cutoff)
                         / np.maximum(f, 1 / n))
    img = 1 + 0.3 * field / field.std()
    noise = lambda: 0.05 * (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)))
    return img + noise(), fourier_shift(img, np.array([2.3, -1.6])) * np.exp(0.7j) + noise()


def test_register_finds_a_subpixel_shift():
    a, b = _band_limited_pair()
    moved, shift = register(a, b)
    assert np.abs(shift - [-2.3, 1.6]).max() < 0.05, shift
    assert np.linalg.norm(moved - a) < 0.2 * np.linalg.norm(a)


def test_registered_error_sees_through_a_frame_that_crept_and_not_through_noise():
    """A reconstruction equal to the truth moved by (-0.3, +0.3) px (a frame that crept: object and probe together,
    which a far-field detector cannot see): the position-aligned error counts the move (measured 0.056), the
    registered one finds the move to 0.01 px and leaves only the Fourier shift's ringing of the truth's white
    noise at the region's edges (measured 0.0085).
    Noise is not a translation: with 5 % noise added the registered error stays at the noise's own level."""
    truth = _band_limited_pair(n=160)[0]
    scan = np.array([[20.0, 20.0], [20.0, 100.0], [100.0, 20.0], [100.0, 100.0]])  # centres span 36..116
    crept = fourier_shift(truth, np.array([-0.3, 0.3]))
    e = object_errors(crept, scan, truth, scan, 32)
    assert np.allclose(e["registered_shift_px"], [0.3, -0.3], atol=0.01), e["registered_shift_px"]
    assert e["object_nrmse_registered"] < 0.25 * e["object_nrmse_ramp"], e
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(truth.shape) + 1j * rng.standard_normal(truth.shape)
    noisy = truth + 0.05 * np.abs(truth).mean() * noise
    e = object_errors(noisy, scan, truth, scan, 32)
    assert abs(e["object_nrmse_registered"] - e["object_nrmse_ramp"]) < 0.1 * e["object_nrmse_ramp"], e
    assert np.abs(e["registered_shift_px"]).max() < 0.05, e


def test_frc_resolution_is_the_band_limit():
    """Signal up to 0.2 cycles per pixel, independent noise beyond: the half-bit crossing sits at the band edge,
    a full period of 5 px (measured 4.82); unregistered, the shift decorrelates the halves (measured 9.0 px)."""
    a, b = _band_limited_pair()
    r = frc(a, register(a, b)[0])
    assert 4.5 <= r["resolution_px"] <= 5.2, r["resolution_px"]
    assert r["frc"][1:20].min() > 0.95 and np.median(r["frc"][70:]) < 0.3
    assert frc(a, b)["resolution_px"] > 8


def _ptyhpc(*args):
    r = subprocess.run([sys.executable, "-m", "ptyhpc", *map(str, args)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_odd_and_even_halves_give_a_resolution_that_improves_with_epochs(tmp_path):
    data = tmp_path / "s.cxi"
    _ptyhpc("simulate", data, "--object-size", 192, "--probe-size", 64, "--positions", 200, "--probe-diameter", 22,
            "--aperture-radius", 8, "--initial-probe", tmp_path / "p0.npy")
    res = {}
    for epochs in (2, 60):
        for half in ("odd", "even"):
            _ptyhpc("reconstruct", data, "-o", tmp_path / f"{half}{epochs}.h5", "--subset", half, "--epochs", epochs,
                    "--probe", tmp_path / "p0.npy", "--device", "cpu", "--no-preview", "--quiet")
        res[epochs] = json.loads(_ptyhpc("frc", tmp_path / f"odd{epochs}.h5", tmp_path / f"even{epochs}.h5",
                                         "--json"))
    for r in res.values():
        assert np.abs(r["shift_px"]).max() < 0.5  # the halves share the scan's grid
    assert res[60]["resolution_px"] < 0.7 * res[2]["resolution_px"], (res[60]["resolution_px"],
                                                                       res[2]["resolution_px"])
    out = _ptyhpc("info", data, "--subset", "1/3")
    assert "67 x 64 x 64" in out or "67 patterns" in out, out
