"""Each algorithm reconstructs the small simulated set (192^2 object, 64^2 probe, 150 positions, 1e6 photons)
from a flat object and a perturbed probe. Bounds: measured NRMSE (ramp and global factor removed) + ~20 %."""
import numpy as np
import pytest

from conftest import small_dataset
from ptyhpc.backend import asnumpy
from ptyhpc.compare import object_errors, probe_error
from ptyhpc.config import ReconConfig
from ptyhpc.engine import Reconstruction

# (settings, epochs, object NRMSE bound); measured on this machine: rPIE 0.031, LSQML 0.042, DM 0.054,
# LSQML-Poisson 0.046, rPIE with 2 modes 0.034, rPIE complex128 0.031
CASES = [
    (dict(algorithm="rpie"), 30, 0.038),
    (dict(algorithm="lsqml"), 30, 0.050),
    (dict(algorithm="dm"), 30, 0.065),
    (dict(algorithm="lsqml", noise="poisson"), 30, 0.055),
    (dict(algorithm="rpie", probe_modes=2), 30, 0.041),
    (dict(algorithm="rpie", precision="complex128"), 30, 0.038),
]


def run(settings, epochs, device="cpu", **kw):
    d, truth, p0 = small_dataset(**kw)
    rec = Reconstruction(d, ReconConfig(epochs=epochs, device=device, **settings), probe=p0)
    rec.iterate(epochs)
    errors = object_errors(rec.gather_object(), d.scan, truth["object"], truth["scan"], d.n)
    return rec, errors, probe_error(asnumpy(rec.state.probe), truth["probe"])


@pytest.mark.parametrize("settings,epochs,bound", CASES, ids=lambda v: str(v))
def test_reconstruction_error_against_ground_truth(settings, epochs, bound, device):
    rec, errors, probe_nrmse = run(settings, epochs, device)
    assert errors["object_nrmse_ramp"] <= bound
    assert probe_nrmse <= 0.2
    costs = rec.history.costs
    assert costs[-1] < 0.15 * costs[0]
    assert len(costs) == epochs


def test_dm_with_the_power_bound_does_not_diverge(device):
    """Plain DM (dm_power_bound=0) diverges on noisy data; relaxed to the Poisson noise it does not. Measured on
    this set at 30/60/90/120 iterations: plain 0.074/0.199/0.276/0.339, relaxed 0.054/0.049/0.049/0.050."""
    d, truth, p0 = small_dataset()
    rec = Reconstruction(d, ReconConfig(algorithm="dm", device=device), probe=p0)
    errors = []
    for _ in range(2):
        rec.iterate(30)
        errors.append(object_errors(rec.gather_object(), d.scan, truth["object"], truth["scan"], d.n)["object_nrmse_ramp"])
    assert errors[1] <= errors[0]


def test_compact_batching_also_converges(device):
    rec, errors, _ = run(dict(algorithm="rpie", batching="compact"), 30, device)
    assert errors["object_nrmse_ramp"] <= 0.075  # measured 0.061


def test_probe_fixed_keeps_the_probe(device):
    d, truth, p0 = small_dataset()
    rec = Reconstruction(d, ReconConfig(algorithm="lsqml", update_probe=False, epochs=3, device=device),
                         probe=truth["probe"])
    before = asnumpy(rec.state.probe).copy()
    rec.iterate(3)
    assert np.array_equal(before, asnumpy(rec.state.probe))


def test_object_clip_bounds_amplitude(device):
    d, _, p0 = small_dataset()
    rec = Reconstruction(d, ReconConfig(algorithm="rpie", object_clip=1.0, device=device), probe=p0)
    rec.iterate(5)
    assert np.abs(asnumpy(rec.state.obj)).max() <= 1.0 + 1e-6


def test_initial_probe_is_rescaled_to_the_data(device):
    d, truth, p0 = small_dataset()
    rec = Reconstruction(d, ReconConfig(device=device), probe=p0 * 1000)
    mean_power = d.read_patterns(np.arange(d.count)).intensity.sum() / d.count
    assert np.isclose((abs(asnumpy(rec.state.probe)) ** 2).sum(), mean_power, rtol=1e-4)


def test_probe_from_mean_pattern_when_none_is_given(device):
    d, truth, _ = small_dataset()
    rec = Reconstruction(d, ReconConfig(algorithm="rpie", epochs=20, device=device))
    rec.iterate(20)
    # measured 0.35: a focused guess cannot become this defocused probe quickly, but the misfit must fall
    assert rec.history.costs[-1] < 0.45 * rec.history.costs[0]


def test_gpu_request_without_gpu_is_a_clear_error():
    from ptyhpc.backend import DeviceError, _cupy

    if _cupy() is not None:
        pytest.skip("this machine has a usable GPU")
    d, _, _ = small_dataset()
    with pytest.raises(DeviceError, match="no usable GPU"):
        Reconstruction(d, ReconConfig(device="gpu"))


def test_auto_device_is_the_default_and_uses_what_there_is():
    """``device = 'auto'`` (the default): CuPy where a GPU is usable, NumPy otherwise; the run facts name it."""
    from conftest import GPU

    d, _, p0 = small_dataset()
    rec = Reconstruction(d, ReconConfig(), probe=p0)
    assert ReconConfig().device == "auto"
    assert (rec.xp is not np) == GPU


def test_alpha_ramp_starts_fast_and_resumes_on_its_epoch(tmp_path):
    """``alpha_ramp``: rPIE's alpha rising from 0.02 converges faster than 0.1 throughout where the data are good
    (the small set at 1e7 photons, 30 epochs: measured 0.0165 against 0.0198), and the ramp follows the run's
    epoch, not the process's: stopped at epoch 4 and resumed from the checkpoint, it ends where the uninterrupted
    run ends, bit for bit."""
    errors = {ramp: run(dict(algorithm="rpie", alpha_ramp=ramp), 30, photons=1e7, seed=2)[1]["object_nrmse_ramp"]
              for ramp in (0, 50)}
    assert errors[50] < 0.9 * errors[0], errors
    d, _, p0 = small_dataset()
    cfg = ReconConfig(algorithm="rpie", alpha_ramp=10, device="cpu")
    whole = Reconstruction(d, cfg, probe=p0)
    whole.iterate(7)
    first = Reconstruction(d, cfg, probe=p0)
    first.iterate(4, checkpoint=str(tmp_path / "ck.h5"), every=4)
    resumed = Reconstruction(d, cfg, resume=str(tmp_path / "ck.h5"))
    resumed.iterate(3)
    assert np.array_equal(resumed.gather_object(), whole.gather_object())
    assert ReconConfig(alpha_ramp=10).at_epoch(5).alpha == pytest.approx(0.06)
    assert ReconConfig(alpha_ramp=0).at_epoch(0).alpha == 0.1
    # several ranks: the overlaps averaged after every batch while alpha rises, every 4th after (0 stays 0)
    assert [ReconConfig(alpha_ramp=50).at_epoch(e).sync_every for e in (0, 49, 50)] == [1, 1, 4]
    assert ReconConfig(alpha_ramp=50, sync_every=0).at_epoch(0).sync_every == 0


def test_lsqml_delta_damps_the_weakly_lit_object_of_a_low_dose_scan():
    """``lsqml_delta`` reaches LSQML's preconditioner (Eq. 25): on the small set at 1e4 photons per pattern, 50
    epochs, 0.1 leaves a lower object error than the default 0.01 (measured 0.1154 against 0.1343); the noise
    the default lets into the weakly lit object is what the larger damping keeps out."""
    errors = {delta: run(dict(algorithm="lsqml", lsqml_delta=delta), 50, photons=1e4, seed=1)[1]["object_nrmse_ramp"]
              for delta in (0.01, 0.1)}
    assert errors[0.1] < 0.93 * errors[0.01], errors


def test_inner_products_are_the_real_parts_of_the_sums(xp):
    """``physics.inner`` (LSQML's step sizes' terms, OPR's weight steps, the bilinear position gradient: one dot
    product of real views per position) equals Re sum conj(a) b per position summed in double precision, to 1e-6
    of the largest term, on complex64 waves (BATCH, MODES, N, N), also with leading axes that broadcast ((2, BATCH,
    ...) against (BATCH, ...)); a rank without positions in a batch gets an empty result."""
    from ptyhpc import physics

    def inner(u, v):
        return physics.inner(u, v, 3)

    rng = np.random.default_rng(5)
    shape = (6, 2, 32, 32)
    a, b = [(rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64) for _ in range(2)]
    b[2] = 1j * a[2]  # a term that is 0 (Re <a, i a>)
    expect = np.array([np.vdot(x.astype(np.complex128), y.astype(np.complex128)).real for x, y in zip(a, b)])
    for u, v, ref in ((a, b, expect), (a, a, (abs(a.astype(np.complex128)) ** 2).sum(axis=(1, 2, 3)))):
        got = asnumpy(inner(xp.asarray(u), xp.asarray(v)))
        assert got.dtype == np.float64 and got.shape == (6,)
        assert np.abs(got - ref).max() <= 1e-6 * np.abs(ref).max()
    assert asnumpy(inner(xp.asarray(a[:0]), xp.asarray(b[:0]))).shape == (0,)
    pair = asnumpy(physics.inner(xp.asarray(np.stack([a, b])), xp.asarray(b), 3))
    assert pair.shape == (2, 6)
    assert np.abs(pair[0] - expect).max() <= 1e-6 * np.abs(expect).max()
    assert np.abs(pair[1] - (abs(b.astype(np.complex128)) ** 2).sum(axis=(1, 2, 3))).max() <= 1e-6 * pair[1].max()
