"""Near-field (Fresnel) ptychography: the propagation operator, the cone-beam geometry, the detector's axes, a
simulated scan and the real PETRA III P25 scan (../shared/data; skipped where it is absent)."""
import dataclasses
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import near_field_dataset
from ptyhpc import physics
from ptyhpc.compare import compare_files, spokes, star_centre
from ptyhpc.config import ReconConfig
from ptyhpc.engine import Reconstruction
from ptyhpc.io import load
from ptyhpc.io.dataset import InputError, in_near_field, orient, orientation_of

P25 = "petra3-p25-near-field/PETRAIII_P25_Near_Field_Ptycho.cxi"


def _random(rng, shape, dtype=np.complex64):
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(dtype)


def _dot_error(op_fwd, op_adj, shape, rng):
    """| <F x, y> - <x, F^H y> | / (|F x| |y|) for random complex64 x, y."""
    x, y = _random(rng, shape), _random(rng, shape)
    fx, ay = op_fwd(x), op_adj(y)
    lhs, rhs = np.vdot(y, fx), np.vdot(ay, x)
    return abs(lhs - rhs) / (np.linalg.norm(fx) * np.linalg.norm(y))


def test_propagators_pass_the_dot_test():
    rng = np.random.default_rng(0)
    prop = physics.AngularSpectrum(64, 1.8e-7, 9.8e-11, 3.6e-3)
    shape = (5, 2, 64, 64)
    assert _dot_error(prop.fwd, prop.adj, shape, rng) <= 1e-5
    batch = prop.at(rng.uniform(0, 1, (5, 2)).astype(np.float32))  # with the sub-pixel translation
    assert _dot_error(batch.fwd, batch.adj, shape, rng) <= 1e-5
    assert _dot_error(physics.FarField.fwd, physics.FarField.adj, shape, rng) <= 1e-5
    # unitary: the adjoint is the inverse, so the probe power is the detected power
    x = _random(rng, shape)
    assert np.allclose(batch.adj(batch.fwd(x)), x, atol=1e-5 * abs(x).max())


def test_angular_spectrum_matches_the_analytic_gaussian_beam():
    """A Gaussian waist w0 = 1 um propagated 50 mm (w grows 1.9x) at 0.1 nm: the Fresnel solution
    E(r, z) = w0^2 / q exp(-r^2 / q), q = w0^2 + i lambda z / pi, to 1e-3 of its peak."""
    n, pixel, wavelength, z, w0 = 256, 1e-7, 1e-10, 0.05, 1e-6
    r = (np.arange(n) - n // 2) * pixel
    rr = r[:, None] ** 2 + r[None, :] ** 2
    start = np.exp(-rr / w0 ** 2)
    q = w0 ** 2 + 1j * wavelength * z / np.pi
    analytic = w0 ** 2 / q * np.exp(-rr / q)
    out = physics.AngularSpectrum(n, pixel, wavelength, z).fwd(start.astype(np.complex128))
    assert np.abs(out - analytic).max() <= 1e-3 * np.abs(analytic).max()
    assert abs(np.abs(analytic).max() - 1 / 1.9) < 0.1  # the beam did spread: not a trivial propagation
    back = physics.AngularSpectrum(n, pixel, wavelength, -z).fwd(out)
    assert np.abs(back - start).max() <= 1e-9


def test_fresnel_scaling_of_the_p25_geometry():
    """The shared data README's figures: z1 = 3.65 mm, z2 = 1.12 m, 55 um pixels -> magnification ~308, ~179 nm
    pixel, ~3.64 mm propagation."""
    pixel, z, m = physics.fresnel_scaling(55e-6, 1.12, 3.65e-3)
    assert m == pytest.approx(307.85, abs=0.01)
    assert pixel == pytest.approx(178.66e-9, rel=1e-4)
    assert z == pytest.approx(3.638e-3, rel=1e-3)
    assert physics.fresnel_scaling(55e-6, 1.12) == (55e-6, 1.12, 1.0)  # parallel beam


def test_detector_axes_from_basis_vectors():
    p = 55e-6
    assert orientation_of("f", "b", [[0, -p], [-p, 0], [0, 0]]) == (False, True, True)  # P25: rows -y, columns -x
    assert orientation_of("f", "b", [[0, p], [p, 0], [0, 0]]) == (False, False, False)
    assert orientation_of("f", "b", [[p, 0], [0, -p], [0, 0]]) == (True, True, False)  # rows along +x
    assert orientation_of("f", "b", np.array([[0, -p], [-p, 0], [0, 0]]).T) == (False, True, True)  # (2, 3)
    with pytest.raises(InputError, match="not along the lab's x or y"):
        orientation_of("f", "b", [[p, p], [p, -p], [0, 0]])
    x = np.arange(2 * 6 * 6).reshape(2, 6, 6)
    for o in [(False, True, True), (True, True, False), (True, False, True)]:
        assert np.array_equal(orient(orient(x, o), o, inverse=True), x)
    # reversal about pixel 0 keeps a zero frequency at [0, 0]
    assert orient(x, (False, True, True))[0, 0, 0] == x[0, 0, 0]


def test_p25_reads_with_its_detector_axes(shared_data):
    d = load(shared_data / P25)
    assert d.orientation == (False, True, True) and not d.near_field
    with h5py.File(shared_data / P25) as f:
        raw = f["entry_1/instrument_1/detector_1/data"][:3].astype(np.float32)
    nf = in_near_field(d, 3.65e-3)
    got = nf.read_patterns(np.arange(3)).intensity
    assert np.array_equal(got, orient(raw, (False, True, True)))  # unshifted, only turned
    assert nf.pixel_size == pytest.approx(178.66e-9, rel=1e-4)
    span = np.ptp(nf.scan, axis=0) * nf.pixel_size
    assert np.allclose(span, np.ptp(d.scan, axis=0) * d.pixel_size)  # the same metres on the new grid


def test_simulated_near_field_scan_reconstructs(tmp_path):
    """A cone-beam near-field scan like P25's (128 px detector, 200 positions, 1e8 photons per image, magnification
    549, Fresnel-scaled distance 3.64 mm), read from its CXI file with nothing but --near-field (the file states
    the focus distance): rPIE with the defaults, 100 epochs. Measured 0.036 (ramp removed)."""
    data, out = tmp_path / "nf.cxi", tmp_path / "out.h5"
    sim = [sys.executable, "-m", "ptyhpc", "simulate", data, "--near-field", "--object-size", "256", "--positions",
           "200", "--photons", "1e8", "--seed", "1"]
    assert subprocess.run(sim, capture_output=True).returncode == 0
    info = subprocess.run([sys.executable, "-m", "ptyhpc", "info", data, "--near-field"], capture_output=True,
                          text=True)
    assert "near field (cone beam, focus 0.00365 m upstream" in info.stdout, info.stdout
    r = subprocess.run([sys.executable, "-m", "ptyhpc", "reconstruct", data, "-o", out, "--near-field", "--epochs",
                        "100", "--quiet", "--no-preview"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    errors = compare_files(out, tmp_path / "nf_truth.h5")
    assert errors["object_nrmse_ramp"] <= 0.05, errors
    with h5py.File(out) as f:
        assert f["object"].attrs["pixel_width_m"] == pytest.approx(75e-6 / ((3.65e-3 + 2.0) / 3.65e-3))


def test_far_field_reading_of_a_near_field_scan_fails_to_fit(tmp_path):
    """The geometry matters: the same patterns taken as far-field ones fit far worse (so the near-field result
    above is not one the far-field model would also give)."""
    d, truth = near_field_dataset()
    costs = {}
    for near in (True, False):
        cfg = ReconConfig(algorithm="rpie", epochs=20, device="cpu")
        data = d if near else dataclasses.replace(d, near_field=False)
        rec = Reconstruction(data, cfg)
        rec.iterate(20)
        costs[near] = rec.history.costs[-1]
    assert costs[True] < 0.3 * costs[False], costs


def test_near_field_settings_are_checked():
    with pytest.raises(ValueError, match="not built for the near field"):
        ReconConfig(near_field=True, correct_positions=True)
    with pytest.raises(ValueError, match="focus_distance_m must be >= 0"):
        ReconConfig(focus_distance_m=-1.0)
    assert ReconConfig(near_field=True).shift == "fourier"


@pytest.mark.slow
def test_p25_near_field_scan_reconstructs(shared_data, tmp_path):
    """The real P25 scan with cdtools' example geometry (focus 3.65 mm upstream): LSQML, 100 epochs. Measured: the
    misfit falls to 0.54 of the first epoch's; a Siemens star of 28 periods (66 % and 74 % of the angular power of
    the phase at radii 45 and 60 px; a noisy or blurred image has no dominant period) centred 1.9 px from the
    scan's centre."""
    out = tmp_path / "p25.h5"
    r = subprocess.run([sys.executable, "-m", "ptyhpc", "reconstruct", shared_data / P25, "-o", out, "--near-field",
                        "--focus-distance", "3.65e-3", "--algorithm", "lsqml", "--epochs", "100", "--quiet",
                        "--no-preview"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    from ptyhpc.io.product import read_product

    p = read_product(out)
    costs = [c for _, c in p["losses"]]
    assert costs[-1] < 0.65 * costs[0], costs
    obj = p["object"]
    d = in_near_field(load(shared_data / P25), 3.65e-3)
    scan_centre = d.scan.mean(axis=0) + d.n / 2
    centre = star_centre(obj, tuple(np.round(scan_centre).astype(int)), radius=60, search=20, step=2)
    assert np.hypot(*(np.asarray(centre) - scan_centre)) < 10, (centre, scan_centre)
    found = [spokes(obj, centre, r) for r in (45, 60)]
    assert len({k for k, _ in found}) == 1 and 24 <= found[0][0] <= 32, found
    assert all(share > 0.5 for _, share in found), found
