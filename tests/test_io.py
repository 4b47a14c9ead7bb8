"""Readers and writers: every format round-trips positions, patterns, mask and probe; product files round-trip."""
import bz2
import os

import h5py
import numpy as np
import pytest

from conftest import small_set
from ptyhpc.io import load
from ptyhpc.io.product import Product, read_product, write_product
from ptyhpc.simulate import SimConfig, write


@pytest.fixture(scope="module")
def cxi(tmp_path_factory):
    out = tmp_path_factory.mktemp("cxi") / "sim.cxi"
    cfg = SimConfig(object_size=128, probe_size=32, positions=40, probe_diameter=12, aperture_radius=4,
                    bad_pixels=3, seed=2)
    write(out, cfg)
    return out, cfg


def _offset(a, b, atol=1e-6):
    d = a - b
    assert np.allclose(d, d[0], atol=atol), "positions differ by more than a constant shift"
    return d[0]


def test_cxi_round_trip(cxi):
    path, cfg = cxi
    from ptyhpc.simulate import simulate

    patterns, scan, obj, probe, mask = simulate(cfg)
    d = load(path)
    assert (d.count, d.n) == (40, 32)
    off = _offset(d.scan, scan)
    assert np.allclose(off, np.round(off), atol=1e-6)  # frames differ by whole pixels only
    assert np.array_equal(d.read_patterns(np.arange(40)).intensity, patterns)  # zero frequency back at [0, 0]
    assert np.array_equal(d.mask, mask) and (~d.mask).sum() == 3
    assert d.pixel_size == pytest.approx(1.23984e-10 * 2.0 / (32 * 75e-6), rel=1e-4)


def test_reads_only_the_requested_patterns_in_any_order(cxi):
    path, _ = cxi
    d = load(path)
    full = d.read_patterns(np.arange(d.count)).intensity
    got = d.read_patterns([7, 3, 30, 4]).intensity
    assert np.array_equal(got, full[[7, 3, 30, 4]])
    assert d.patterns_read == d.count + 4


def test_flip_translation_mirrors_positions(cxi):
    path, _ = cxi
    a, b = load(path), load(path, flip_translation=True)
    c = a.scan - a.scan.mean(0)
    assert np.allclose(c, -(b.scan - b.scan.mean(0)), atol=1e-6)


def test_tike_npz_and_bz2(tmp_path):
    cfg, patterns, scan, obj, probe, mask = small_set()
    plain = tmp_path / "d.npz"
    np.savez(plain, data=patterns[None], scan=scan[None].astype(np.float32), probe=probe[None, None, None])
    packed = tmp_path / "d.npz.bz2"
    packed.write_bytes(bz2.compress(plain.read_bytes()))
    for path in (plain, packed):
        d = load(path)
        assert d.count == len(scan) and d.probe.shape == (1, 64, 64)
        off = _offset(d.scan, scan, atol=1e-4)  # stored as float32
        assert np.allclose(off, np.round(off), atol=1e-4)
        assert np.array_equal(d.read_patterns([5]).intensity, patterns[[5]])


def test_ptychodus_folder(tmp_path):
    cfg, patterns, scan, obj, probe, mask = small_set()
    px = 2e-8
    with h5py.File(tmp_path / "diffraction.h5", "w") as f:
        f["patterns"] = np.fft.fftshift(patterns, axes=(-2, -1))
        f["indexes"] = np.arange(len(scan))[::-1]  # indexes need not be in order
        f["bad_pixels"] = np.fft.fftshift(~mask)
    c = (scan + 32 - 96) * px
    with h5py.File(tmp_path / "product-in.h5", "w") as f:
        f.attrs.update({"detector_object_distance_m": 2.0, "probe_energy_eV": 10000.0})
        idx = np.arange(len(scan))[::-1]
        f["probe_position_indexes"] = np.arange(len(scan))
        f["probe_position_x_m"] = c[idx, 1]
        f["probe_position_y_m"] = c[idx, 0]
        f["probe"] = probe[None]
        o = f.create_dataset("object", data=obj[None])
        o.attrs["pixel_width_m"] = px
    d = load(tmp_path)
    assert d.count == len(scan)
    # pattern k has index (POSI-1-k): its position is c[idx][POSI-1-k] = c[k]
    assert np.allclose(_offset(d.scan, scan), np.round(_offset(d.scan, scan)), atol=1e-4)
    assert np.array_equal(d.read_patterns([3]).intensity, patterns[[3]])
    assert np.array_equal(d.mask, mask)


def test_product_round_trip_and_atomic_write(tmp_path):
    cfg, patterns, scan, obj, probe, mask = small_set()
    out = tmp_path / "p.h5"
    write_product(out, Product(core=obj, probe=probe, scan=scan, n=64, pixel_size=3e-8, wavelength=1.24e-10,
                               distance=2.0, losses=[(1, 5.0), (2, 4.0)]))
    assert not os.path.exists(f"{out}.partial")
    r = read_product(out)
    assert np.array_equal(r["object"], obj) and np.array_equal(r["probe"], probe)
    assert np.allclose(r["scan"], scan) and r["losses"] == [(1, 5.0), (2, 4.0)]
    with h5py.File(out) as f:  # the keys Ptychodus' H5ProductFileIO reads
        for key in ("probe_position_indexes", "probe_position_x_m", "probe_position_y_m", "probe", "object",
                    "object_layer_spacing_m", "loss_epochs", "loss_values"):
            assert key in f
        for attr in ("name", "comments", "detector_object_distance_m", "probe_energy_eV", "exposure_time_s"):
            assert attr in f.attrs
        assert f["probe"].shape == (1, 1, 64, 64) and f["object"].shape == (1,) + obj.shape
        assert f["object"].attrs["pixel_width_m"] == 3e-8


def test_real_petra_cxi_is_read_and_described(shared_data):
    d = load(shared_data / "petra3-p25-near-field" / "PETRAIII_P25_Near_Field_Ptycho.cxi")
    assert (d.count, d.n) == (200, 100)
    assert (~d.mask).sum() == 5
    assert d.wavelength == pytest.approx(1.98644586e-25 / 2.028e-15, rel=1e-3)
    assert d.distance == pytest.approx(1.12)
    p = d.read_patterns([0, 199]).intensity
    assert p.shape == (2, 100, 100) and p.sum() > 0
    assert "200 x 100 x 100" in d.describe()


@pytest.mark.parametrize("probe, step", [(64, 8.8), (128, 8.8), (128, 16.8)])
def test_a_scan_at_a_given_step_covers_a_square(probe, step):
    """``simulate --step S --positions P``: the positions cover a square of about S sqrt(P) on a side at that step
    (the rectangle ``compare`` scores), not a disc whose corners no position lights (as before: 13-15 % of the
    scored rectangle of bench_accuracy's family lay farther than a step from every position, 6-8 % farther than
    two)."""
    from scipy.spatial import cKDTree

    from ptyhpc.simulate import make_scan

    size = int(np.ceil(1.1 * step * 20)) + probe + 8  # bench_accuracy.family_members' object for 400 positions
    cfg = SimConfig(object_size=size, probe_size=probe, probe_diameter=probe / 3, positions=400, step=step)
    pos = make_scan(cfg, np.random.default_rng(0))
    assert len(pos) == 400
    side = pos.max(axis=0) - pos.min(axis=0)
    assert np.all(np.abs(side / (step * 20) - 1) < 0.03)
    nearest, _ = cKDTree(pos).query(pos, k=2)
    assert abs(np.median(nearest[:, 1]) / step - 1) < 0.1  # the spiral's spacing: the step asked
    y, x = np.mgrid[pos[:, 0].min():pos[:, 0].max():1.0, pos[:, 1].min():pos[:, 1].max():1.0]
    gap, _ = cKDTree(pos).query(np.stack([y.ravel(), x.ravel()], axis=1))
    assert np.mean(gap > step) < 0.005  # hardly any of the rectangle is farther than a step from a position
    assert gap.max() < 1.5 * step
