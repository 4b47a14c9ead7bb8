"""Position correction (ptyhpc.positions, the sub-pixel shift operators, the engine's use of them, the CLI)."""
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import small_dataset
from ptyhpc import physics, positions
from ptyhpc.backend import asnumpy
from ptyhpc.compare import object_errors, position_error, position_error_parts
from ptyhpc.config import ReconConfig
from ptyhpc.engine import Reconstruction

ERRORS = {"position_error": 1.0, "position_drift": 2.0}
"""Recorded positions of the small set (64 px probe, 22 px spot, ~6 px steps): 1 px random errors per coordinate
and a 2 px drift, 1.56 px RMS in all."""


def _rand(xp, shape, rng, dtype=np.complex64):
    return xp.asarray((rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype))


def test_fourier_shift_is_exact_and_its_adjoint_passes_the_dot_test(xp):
    rng = np.random.default_rng(0)
    probe = _rand(xp, (2, 32, 32), rng)
    d = xp.asarray(rng.uniform(0, 1, (5, 2)))
    shifted = physics.Fourier.fwd(physics.Fourier.prepare(probe), d)
    for j in range(5):
        exact = physics.fourier_shift(probe, asnumpy(d[j]))
        assert float(abs(shifted[j] - exact).max() / abs(exact).max()) < 1e-5
    g = _rand(xp, shifted.shape, rng)
    lhs = complex(xp.vdot(shifted, g))
    rhs = complex(xp.vdot(probe, physics.Fourier.adj(g, d)))
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)


@pytest.mark.parametrize("shift", [physics.Bilinear, physics.Fourier])
def test_shift_derivative_matches_finite_differences(shift):
    rng = np.random.default_rng(1)
    probe = _rand(np, (1, 32, 32), rng, np.complex128)
    d = rng.uniform(0.2, 0.8, (4, 2))  # inside one pixel: the bilinear weights are smooth there
    h = 1e-4
    grad = shift.grad(shift.prepare(probe), shift.weights(d))
    for axis in (0, 1):
        e = np.zeros(2)
        e[axis] = h
        fd = (shift.fwd(shift.prepare(probe), shift.weights(d + e)) -
              shift.fwd(shift.prepare(probe), shift.weights(d - e))) / (2 * h)
        assert np.abs(grad[axis] - fd).max() <= 1e-6 * np.abs(fd).max()


def test_model_fit_recovers_drift_and_affine_map():
    rng = np.random.default_rng(2)
    recorded = rng.uniform(0, 300, (400, 2))
    c = positions.Constraint(recorded)
    t = np.arange(400) / 399 - 0.5
    truth = positions.Model(offset=np.array([0.3, -0.2]), drift=np.array([4.0, -1.5]),
                            matrix=np.array([[0.002, -0.001], [0.0005, 0.003]]), centre=c.centre)
    values = truth.offset + truth.drift * t[:, None] + (recorded - c.centre) @ truth.matrix.T
    m = c.fit(values)
    for a, b in ((m.offset, truth.offset), (m.drift, truth.drift), (m.matrix, truth.matrix)):
        assert np.abs(a - b).max() < 1e-9


def test_constraint_keeps_drift_and_random_errors_and_drops_smooth_warps(monkeypatch):
    monkeypatch.setattr(positions, "DRIFT_GAIN", 1.0)  # the projections themselves (the gain: below)
    rng = np.random.default_rng(3)
    grid = np.stack(np.meshgrid(np.arange(25) * 10.0, np.arange(25) * 10.0, indexing="ij"), -1).reshape(-1, 2)
    recorded = rng.permutation(grid + rng.uniform(-2, 2, grid.shape))  # scan order unrelated to place
    c = positions.Constraint(recorded)
    t = np.arange(len(recorded)) / (len(recorded) - 1) - 0.5
    drift = np.array([3.0, -2.0]) * t[:, None]
    scale = (recorded - c.centre) * 0.01
    random = rng.normal(0, 1, recorded.shape)
    # a warp smooth on the scale of the neighbourhood (32 positions, a radius of about 32 px here): a period of 400
    # px over the 250 px scan (measured: 14 % of it passes; of a 125 px period 37 %, which the steps then correct)
    warp = np.stack([np.sin(2 * np.pi * recorded[:, 1] / 400), np.sin(2 * np.pi * recorded[:, 0] / 400)], -1)
    assert np.abs(positions.constrain(drift + scale + 5.0, c, affine=True) - (drift + scale)).max() < 1e-9
    held = positions.constrain(drift + scale + 5.0, c, affine=False)  # the scale is held
    assert positions.rms(held - drift) < 0.1 * positions.rms(drift)  # minus its chance overlap with the map
    turn = (recorded - c.centre) @ np.array([[0.0, -0.004], [0.004, 0.0]])  # a rotation is always corrected
    assert np.abs(positions.constrain(turn + scale, c, affine=False) - turn).max() < 1e-9
    kept = positions.constrain(random, c, affine=False)
    assert np.abs(kept.mean(axis=0)).max() < 1e-12
    assert 0.8 < np.sum(kept * random) / np.sum(random * random) < 1.0  # random errors pass, nearly whole
    assert positions.rms(positions.constrain(warp, c, affine=False)) < 0.2 * positions.rms(warp)
    # a raster's time is nearly its row: a drift there is mostly a shear, and nothing is amplified
    raster = positions.Constraint(grid + rng.uniform(-0.5, 0.5, grid.shape))
    assert positions.rms(positions.constrain(drift, raster, affine=False)) <= positions.rms(drift)
    monkeypatch.setattr(positions, "DRIFT_GAIN", 2.0)
    assert np.abs(positions.constrain(drift + scale, c, affine=True) - (2 * drift + scale)).max() < 0.1 * 3


def _reconstruct(cfg, comm=None, **data):
    d, truth, p0 = small_dataset(**data)
    rec = Reconstruction(d, cfg, comm, probe=p0)
    rec.iterate(cfg.epochs)
    return rec, d, truth


def _errors(rec, d, truth):
    scan = rec.gather_scan()
    e = object_errors(rec.gather_object(), scan, truth["object"], truth["scan"], d.n)["object_nrmse_ramp"]
    return e, position_error(scan, truth["scan"])


@pytest.mark.parametrize("algorithm", ["lsqml", "rpie"])
def test_correction_recovers_positions_and_object(algorithm, device):
    """Small set, 100 epochs. Measured (CPU, 32 neighbours in the constraint): recorded positions 1.56 px RMS off;
    LSQML 0.124 px after correction (0.148 with 8 neighbours), object 0.034 against 0.089 without correction; rPIE
    0.142 px (0.157), 0.032 / 0.090."""
    cfg = ReconConfig(algorithm=algorithm, epochs=100, device=device)
    rec, d, truth = _reconstruct(cfg.replace(correct_positions=True), **ERRORS)
    fixed, _, _ = _reconstruct(cfg, **ERRORS)
    e_pc, p_pc = _errors(rec, d, truth)
    e_fixed, p_fixed = _errors(fixed, d, truth)
    assert p_fixed > 1.5
    assert p_pc <= 0.25, p_pc
    assert e_pc <= 0.6 * e_fixed, (e_pc, e_fixed)
    # what the product and the history say
    assert len(rec.history.position_rms) == 100 and rec.history.position_rms[-1] > 1.0


@pytest.mark.parametrize("algorithm", ["lsqml", "rpie"])
def test_correction_leaves_correct_positions_alone(algorithm, device):
    """Error-free positions: correction on is no worse (measured: LSQML 0.0306 with, 0.0324 without; rPIE 0.0265,
    0.0280) and the positions stay within 0.1 px RMS (measured 0.077, 0.066)."""
    cfg = ReconConfig(algorithm=algorithm, epochs=100, device=device)
    rec, d, truth = _reconstruct(cfg.replace(correct_positions=True))
    fixed, _, _ = _reconstruct(cfg)
    e_pc, p_pc = _errors(rec, d, truth)
    e_fixed, _ = _errors(fixed, d, truth)
    assert e_pc <= 1.02 * e_fixed, (e_pc, e_fixed)
    assert p_pc <= 0.1, p_pc


def test_product_and_checkpoint_carry_the_corrected_positions(tmp_path):
    cfg = ReconConfig(algorithm="lsqml", epochs=14, device="cpu", correct_positions=True, position_start=2)
    d, truth, p0 = small_dataset(**ERRORS)
    whole = Reconstruction(d, cfg, probe=p0)
    whole.iterate(14)
    first = Reconstruction(d, cfg, probe=p0)
    first.iterate(8, checkpoint=str(tmp_path / "ck.h5"), every=8)
    resumed = Reconstruction(d, cfg, resume=str(tmp_path / "ck.h5"))
    assert np.array_equal(resumed.gather_scan(), first.gather_scan())
    assert resumed.history.position_rms == first.history.position_rms
    resumed.iterate(6)
    assert np.array_equal(resumed.gather_scan(), whole.gather_scan())  # continues bit for bit
    assert np.array_equal(resumed.gather_object(), whole.gather_object())
    out = tmp_path / "r.h5"
    whole.write(str(out))
    from ptyhpc.io.product import read_product

    r = read_product(out)
    assert np.abs(r["scan"] - whole.gather_scan()).max() < 1e-6  # probe_position_x_m/_y_m are the corrected ones
    with h5py.File(out, "r") as f:
        assert np.array_equal(f["ptyhpc/recorded_scan_px"][()], d.scan)
        assert np.array_equal(f["ptyhpc/scan_px"][()], whole.gather_scan())
        rms = json.loads(f["ptyhpc"].attrs["position_rms_px"])
        model = json.loads(f["ptyhpc"].attrs["position_model"])
    assert len(rms) == 14 and rms[0] == 0 and rms[-1] > 0.3
    assert abs(positions.rms(whole.gather_scan() - d.scan) - rms[-1]) < 1e-12
    assert set(model) >= {"offset_px", "drift_px", "matrix"}


def test_positions_never_leave_their_tile_or_the_object():
    """A step bound far above the limit: every correction stops at position_limit_px, every window stays in its
    tile (LocalState.move raises otherwise) and in the object."""
    cfg = ReconConfig(algorithm="rpie", epochs=20, device="cpu", correct_positions=True, position_start=1,
                      position_step_px=50.0, position_limit_px=1.5)
    rec, d, _ = _reconstruct(cfg, **ERRORS)
    moved = np.abs(rec.gather_scan() - d.scan)
    assert moved.max() <= 1.5 + 1e-9 and moved.max() > 1.0
    assert rec.gather_scan().min() >= 0


def test_dm_refuses_position_correction():
    with pytest.raises(ValueError, match="correct_positions needs algorithm"):
        ReconConfig(algorithm="dm", correct_positions=True)


def test_cli_simulates_recorded_positions_and_compare_reports_their_error(tmp_path):
    data = tmp_path / "s.cxi"
    run = lambda *a: subprocess.run([sys.executable, "-m", "ptyhpc", *map(str, a)], capture_output=True, text=True,
                                    timeout=600)
    r = run("simulate", data, "--object-size", 192, "--probe-size", 64, "--positions", 150, "--probe-diameter", 22,
            "--aperture-radius", 8, "--position-error", 1, "--position-drift", 2,
            "--initial-probe", tmp_path / "p0.npy")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "r.h5"
    r = run("reconstruct", data, "-o", out, "--algorithm", "lsqml", "--epochs", 100, "--correct-positions",
            "--probe", tmp_path / "p0.npy",
            "--device", "cpu", "--no-preview", "--quiet")
    assert r.returncode == 0, r.stderr
    r = run("compare", out, tmp_path / "s_truth.h5", "--json")
    assert r.returncode == 0, r.stderr
    after = json.loads(r.stdout)["position_error_px"]
    from ptyhpc.io import load
    from ptyhpc.io.product import read_product

    before = position_error(load(data).scan, read_product(tmp_path / "s_truth.h5")["scan"])
    assert 1.3 < before < 1.8
    assert after < 0.3, (after, before)  # measured 0.199 (at 733d826)


@pytest.mark.parametrize("shift", [physics.Bilinear, physics.Fourier])
def test_grad_inner_is_the_inner_product_with_the_derivative(shift, xp):
    """What the step uses (Fourier: computed in Fourier space) equals Re <dP_j, h_j> from ``grad``."""
    rng = np.random.default_rng(4)
    probe = _rand(xp, (2, 32, 32), rng)
    w = shift.weights(xp.asarray(rng.uniform(0, 1, (3, 2)), dtype=np.float32))
    h = _rand(xp, (3, 2, 32, 32), rng)
    prepared = shift.prepare(probe)
    direct = asnumpy((shift.grad(prepared, w).conj() * h[None]).real.sum(axis=(2, 3, 4)))
    fast = asnumpy(shift.grad_inner(prepared, w, h))
    assert np.abs(fast - direct).max() <= 1e-4 * np.abs(direct).max()


def test_the_steps_denominator_and_the_shared_spectrum(xp):
    """The step's |dO/dr|^2 equals numpy.gradient's, and the probe's Fourier-shift adjoint of the array whose
    transform the step kept equals the adjoint computed afresh (a different array of the same values)."""
    rng = np.random.default_rng(5)
    patches = _rand(xp, (3, 32, 32), rng)
    for axis in (1, 2):
        expected = np.abs(np.gradient(asnumpy(patches), axis=axis)) ** 2
        got = asnumpy(positions._slope2(patches, axis))
        assert np.abs(got - expected).max() <= 1e-5 * expected.max()
    shift = physics.Fourier
    prepared = shift.prepare(_rand(xp, (2, 32, 32), rng))
    w = shift.weights(xp.asarray(rng.uniform(0, 1, (3, 2)), dtype=np.float32))
    g = _rand(xp, (3, 2, 32, 32), rng)
    shift.grad_inner(prepared, w, g)  # keeps F[g]
    shared = asnumpy(shift.adj(g, w))
    fresh = asnumpy(shift.adj(g.copy(), w))
    assert np.abs(shared - fresh).max() <= 1e-5 * np.abs(fresh).max()
    assert not physics._SPECTRUM  # taken once, not held


def test_position_error_parts_find_a_known_scale_rotation_and_noise():
    """A scan's error made of a 0.2 % scale, a 1 mrad rotation, an offset and 0.1 px noise per coordinate: the
    parts recover the map to 2e-4 and the noise to 5 %, and add up (least-squares projections)."""
    rng = np.random.default_rng(3)
    true = rng.uniform(0, 300, (900, 2))
    m = np.array([[0.002, -0.001], [0.001, 0.002]])
    noise = 0.1 * rng.standard_normal(true.shape)
    parts = position_error_parts(true + (true - true.mean(axis=0)) @ m.T + noise + [3.0, -1.0], true)
    assert np.abs(np.array(parts["matrix"]) - m).max() < 2e-4
    assert abs(parts["rest_px"] / (0.1 * np.sqrt(2)) - 1) < 0.05
    assert abs(parts["total_px"] ** 2 - parts["linear_px"] ** 2 - parts["rest_px"] ** 2) < 1e-9
    assert abs(parts["linear_px"] ** 2 - parts["scale_shear_px"] ** 2 - parts["rotation_px"] ** 2) < 0.02 * parts[
        "linear_px"] ** 2
    spread = np.sqrt(((true - true.mean(axis=0)) ** 2).sum(axis=1).mean())  # a rotation by w moves by w r
    assert parts["rotation_px"] == pytest.approx(0.001 * spread, rel=0.05)
    assert parts["total_px"] == pytest.approx(position_error(true + (true - true.mean(axis=0)) @ m.T + noise, true))
