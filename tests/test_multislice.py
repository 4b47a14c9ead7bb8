"""Multislice: a thick sample as S slices, the wave carried through them; accuracy on a simulated two-slice
sample, the model's consistency with one slice, the product file, and the settings."""
import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from conftest import thick_dataset
from ptyhpc.algorithms.common import batch_model
from ptyhpc.compare import object_errors
from ptyhpc.config import ReconConfig
from ptyhpc.engine import Reconstruction
from ptyhpc.state import batches_on


def _run(d, cfg, p0):
    rec = Reconstruction(d, cfg, probe=p0)
    rec.iterate(cfg.epochs)
    return rec


def _slice_errors(rec, d, truth):
    return [object_errors(a, d.scan, b, truth["scan"], d.n)["object_nrmse_ramp"]
            for a, b in zip(rec.gather_object(), truth["object"])]


def test_an_empty_second_slice_gives_the_single_slice_model(device):
    """Two slices whose second is 1 everywhere predict the same intensities as one slice: free-space propagation
    before a far field changes only the phase of each frequency (checks the chain and its propagator)."""
    d, truth, p0 = thick_dataset()
    one = Reconstruction(d, ReconConfig(device=device, subpixel="fourier"), probe=p0)
    two = Reconstruction(d, ReconConfig(device=device, subpixel="fourier", slices=2, slice_spacing_m=truth["spacing"]),
                         probe=p0)
    xp = one.xp
    rng = np.random.default_rng(1)
    obj = (1 + 0.3 * rng.normal(size=one.state.obj.shape) * np.exp(1j * rng.normal(size=one.state.obj.shape)))
    one.state.obj = xp.asarray(obj, dtype=one.state.obj.dtype)
    two.state.obj = xp.asarray(np.stack([obj, np.ones_like(obj)]), dtype=two.state.obj.dtype)
    b = batches_on(xp, [np.arange(16)])[0]
    a = batch_model(one.state, one.state.prepared(), b).predicted
    c = batch_model(two.state, two.state.prepared(), b).predicted
    assert float(abs(a - c).max() / abs(a).max()) <= 1e-5
    # and a second slice that is not empty changes them
    two.state.obj[1] = xp.asarray(obj, dtype=two.state.obj.dtype)
    c = batch_model(two.state, two.state.prepared(), b).predicted
    assert float(abs(a - c).max() / abs(a).max()) > 0.05


@pytest.mark.parametrize("algorithm", ["lsqml", "rpie"])
def test_two_slices_two_depths_of_field_apart(algorithm):
    """The small set's geometry through two slices 2 depths of field (2 dx^2 / lambda = 43 um) apart, 100 epochs
    from the usual starting probe. Measured: each slice's NRMSE (ramp removed) 0.1195 and 0.1132 (LSQML, batch 64,
    its multislice default; 0.1206 / 0.1127 with 32), 0.1188 and 0.1126 (rPIE) with the default regularisation;
    without it 0.127 / 0.121 and 0.127 / 0.122: the slices' smooth content, which propagation over 86 um hardly
    changes, drifts between them unless pulled towards an even share. The issue's 0.12 per slice. The two-slice
    model fits the data better than one slice with the same settings (misfit per pattern, LSQML: 665 against 698
    at two slices' damping 0.01, 645 against 658 at 0.03), so the models are compared at the two-slice run's
    damping; one slice at its own default, 0.03, reaches 658, below two slices' 665 at theirs: on this set the
    damping moves the misfit as much as the second slice does."""
    d, truth, p0 = thick_dataset()
    cfg = ReconConfig(algorithm=algorithm, epochs=100, slices=2, slice_spacing_m=truth["spacing"], device="cpu")
    rec = _run(d, cfg, p0)
    errors = _slice_errors(rec, d, truth)
    free = _slice_errors(_run(d, dataclasses.replace(cfg, slice_regularization=0.0), p0), d, truth)
    assert max(errors) <= 0.12 and max(errors) < max(free) - 0.004, (errors, free)
    single = _run(d, ReconConfig(algorithm=algorithm, epochs=100, device="cpu", lsqml_delta=cfg.delta), p0)
    assert rec.history.costs[-1] < 0.97 * single.history.costs[-1], (rec.history.costs[-1], single.history.costs[-1])


def test_the_slices_share_what_propagation_cannot_tell_apart():
    """physics.share_unresolved: a smooth difference between the slices goes to their mean, a sharp one stays;
    on a tile holding 4 widths around its core, the core gets the whole object's values bit for bit."""
    from ptyhpc import physics

    rng = np.random.default_rng(0)
    y, x = np.mgrid[:96, :96]
    smooth = np.exp(1j * 0.3 * np.sin(2 * np.pi * x / 48))  # a period of 48 px
    sharp = np.exp(1j * 0.3 * (-1.0) ** (x + y))  # the highest frequency
    width = 1.2
    for pattern, kept in ((smooth, False), (sharp, True)):
        obj = np.stack([pattern, np.ones_like(pattern)]).astype(np.complex64)
        out = physics.share_unresolved(obj.copy(), width)
        inner = (slice(None), slice(10, -10), slice(10, -10))
        before = abs(obj[0] - obj[1])[inner[1:]].mean()
        after = abs(out[0] - out[1])[inner[1:]].mean()
        assert (after > 0.8 * before) if kept else (after < 0.03 * before), (kept, before, after)
        assert np.allclose(out.prod(axis=0)[inner[1:]], obj.prod(axis=0)[inner[1:]], atol=0.05) or kept
    obj = (rng.normal(size=(3, 80, 90)) + 1j * rng.normal(size=(3, 80, 90))).astype(np.complex64)
    whole = physics.share_unresolved(obj.copy(), width, 0.1)
    reach = int(np.ceil(4 * width))
    tile = physics.share_unresolved(obj[:, 20:70, 0:60].copy(), width, 0.1)  # core rows 25:65, columns 0:55
    assert np.array_equal(tile[:, reach:-reach, :-reach], whole[:, 20 + reach:70 - reach, 0:60 - reach])


def test_multislice_settings_are_checked():
    with pytest.raises(ValueError, match="slice_spacing_m must be > 0"):
        ReconConfig(slices=2)
    with pytest.raises(ValueError, match="needs algorithm 'rpie' or 'lsqml'"):
        ReconConfig(algorithm="dm", slices=2, slice_spacing_m=1e-6)
    with pytest.raises(ValueError, match="not built with correct_positions or opr_modes"):
        ReconConfig(slices=2, slice_spacing_m=1e-6, opr_modes=2)


def test_simulate_reconstruct_compare_a_thick_sample(tmp_path):
    """Through the command line: simulate --slices 2, reconstruct --slices 2, the product holds (2, H, W) layers
    and their spacing as Ptychodus keys them, compare scores each slice, the preview shows both."""
    import h5py

    data, out = tmp_path / "thick.cxi", tmp_path / "out.h5"
    spacing = "8.61e-5"
    common = ["--object-size", "192", "--probe-size", "64", "--positions", "150", "--probe-diameter", "22",
              "--aperture-radius", "8"]
    r = subprocess.run([sys.executable, "-m", "ptyhpc", "simulate", data, *common, "--slices", "2", "--slice-spacing",
                        spacing, "--initial-probe", tmp_path / "p0.npy"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "ptyhpc", "reconstruct", data, "-o", out, "--slices", "2",
                        "--slice-spacing", spacing, "--algorithm", "lsqml", "--epochs", "30", "--probe",
                        tmp_path / "p0.npy", "--quiet"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as f:
        assert f["object"].shape[0] == 2 and np.allclose(f["object_layer_spacing_m"][()], [8.61e-5])
    with h5py.File(tmp_path / "thick_truth.h5") as f:
        assert f["object"].shape[0] == 2
    r = subprocess.run([sys.executable, "-m", "ptyhpc", "compare", out, tmp_path / "thick_truth.h5", "--json"],
                       capture_output=True, text=True)
    import json

    errors = json.loads(r.stdout)
    assert len(errors["slices"]) == 2 and all(e["object_nrmse_ramp"] < 0.3 for e in errors["slices"]), errors
    assert (tmp_path / "out.png").stat().st_size > 0


def test_ptychodus_reads_the_layers(tmp_path):
    """Ptychodus' own product reader takes the (S, H, W) object and its layer spacing."""
    ptychodus = pytest.importorskip("ptychodus.api.io")

    d, truth, p0 = thick_dataset()
    rec = Reconstruction(d, ReconConfig(algorithm="lsqml", epochs=1, slices=2, slice_spacing_m=truth["spacing"],
                                        device="cpu"), probe=p0)
    rec.iterate(1)
    rec.write(tmp_path / "p.h5")
    product = ptychodus.load_product(tmp_path / "p.h5")
    layers = product.object_.get_array()
    assert product.object_.num_layers == 2 and layers.shape[0] == 2
    assert np.allclose(product.object_.layer_spacing_m, [truth["spacing"]])
    assert np.allclose(layers, rec.gather_object(), atol=1e-6)


def test_checkpoint_resume_continues_with_the_slices(tmp_path):
    """A multislice run stopped at epoch 4 and resumed from its checkpoint ends where the uninterrupted run ends."""
    d, truth, p0 = thick_dataset()
    cfg = ReconConfig(algorithm="lsqml", epochs=7, slices=2, slice_spacing_m=truth["spacing"], device="cpu")
    whole = _run(d, cfg, p0)
    first = Reconstruction(d, cfg, probe=p0)
    first.iterate(4, checkpoint=str(tmp_path / "ck.h5"), every=4)
    resumed = Reconstruction(d, cfg, resume=str(tmp_path / "ck.h5"))
    assert resumed.state.obj.shape[0] == 2
    resumed.iterate(3)
    assert np.array_equal(resumed.gather_object(), whole.gather_object())
