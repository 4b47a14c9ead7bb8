"""Shared fixtures. Small simulated sets are built in memory, identically on every MPI rank."""
from __future__ import annotations

import dataclasses
import functools
import os
import pathlib

import numpy as np
import pytest

from ptyhpc.backend import DeviceError, get_xp

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """Put the MPI rank in each test id under mpiexec, so every rank's report is tellable apart."""
    size = int(os.environ.get("PMI_SIZE", "1"))
    if size > 1:
        rank = os.environ.get("PMI_RANK", "?")
        for item in items:
            item._nodeid = f"{item.nodeid}[rank{rank}]"


@functools.lru_cache(maxsize=None)
def small_set(positions: int = 150, object_size: int = 192, photons: float = 1e6, seed: int = 0,
              scan: str = "spiral", position_error: float = 0.0, position_drift: float = 0.0):
    """(SimConfig, patterns, scan, object, probe, mask) of a small set that reconstructs in seconds:
    192^2 object, 64^2 probe (22 px spot), 150 positions; ``scan`` is the truth (see :func:`small_dataset` for
    the recorded positions)."""
    from ptyhpc.simulate import SimConfig, simulate

    cfg = SimConfig(object_size=object_size, probe_size=64, positions=positions, probe_diameter=22,
                    aperture_radius=8, photons=photons, seed=seed, scan=scan, position_error=position_error,
                    position_drift=position_drift)
    return (cfg,) + simulate(cfg)


def small_dataset(**kw):
    """A Dataset over small_set(**kw) (with the recorded positions) plus the truth dict and the starting probe
    guess."""
    from ptyhpc.io.dataset import from_arrays
    from ptyhpc.simulate import initial_probe_guess, recorded_positions

    cfg, patterns, scan, obj, probe, mask = small_set(**kw)
    d = from_arrays(patterns, recorded_positions(cfg, scan), mask=mask)
    truth = {"object": obj, "probe": probe, "scan": scan}
    return d, truth, initial_probe_guess(cfg)


@functools.lru_cache(maxsize=None)
def near_field_set(photons: float = 1e8, seed: int = 0):
    """(SimConfig, patterns, scan, object, probe, mask) of a small cone-beam near-field set: 128^2 object, 64^2
    detector, 100 positions (``simulate.SimConfig.near_field``)."""
    from ptyhpc.simulate import SimConfig, simulate

    cfg = SimConfig(object_size=128, probe_size=64, positions=100, photons=photons, seed=seed, near_field=True)
    return (cfg,) + simulate(cfg)


def near_field_dataset(**kw):
    """A near-field Dataset over near_field_set(**kw) (images as they are, the Fresnel-scaled pixel and
    geometry), and the truth dict."""
    from ptyhpc.io.dataset import from_arrays

    cfg, patterns, scan, obj, probe, mask = near_field_set(**kw)
    pixel, wavelength, _ = cfg.geometry()
    d = dataclasses.replace(from_arrays(patterns, scan, mask=mask, pixel_size=pixel), wavelength=wavelength,
                            distance=cfg.distance_m, detector_pixel=cfg.detector_pixel_m, near_field=True,
                            focus_distance=cfg.focus_distance_m)
    return d, {"object": obj, "probe": probe, "scan": scan}


@functools.lru_cache(maxsize=None)
def thick_set(slices: int = 2, depths_of_field: float = 2.0, photons: float = 1e6, seed: int = 0):
    """(SimConfig, patterns, scan, object (S, H, W), probe, mask) of the small set's geometry (192^2 object, 64^2
    probe, 150 positions) through a thick sample: ``slices`` slices ``depths_of_field`` depths of field (2 dx^2 /
    lambda, dx the object pixel) apart."""
    from ptyhpc.simulate import SimConfig, simulate

    base = SimConfig(object_size=192, probe_size=64, positions=150, probe_diameter=22, aperture_radius=8,
                     photons=photons, seed=seed)
    pixel, wavelength, _ = base.geometry()
    cfg = dataclasses.replace(base, slices=slices, slice_spacing_m=depths_of_field * 2 * pixel ** 2 / wavelength)
    return (cfg,) + simulate(cfg)


def thick_dataset(**kw):
    """A Dataset over thick_set(**kw) (object pixel and wavelength set, as a file would give them), the truth dict
    and the starting probe guess."""
    from ptyhpc.io.dataset import from_arrays
    from ptyhpc.simulate import initial_probe_guess

    cfg, patterns, scan, obj, probe, mask = thick_set(**kw)
    pixel, wavelength, _ = cfg.geometry()
    d = dataclasses.replace(from_arrays(patterns, scan, mask=mask, pixel_size=pixel), wavelength=wavelength,
                            distance=cfg.distance_m, detector_pixel=cfg.detector_pixel_m)
    return d, {"object": obj, "probe": probe, "scan": scan, "spacing": cfg.slice_spacing_m}, initial_probe_guess(cfg)


@pytest.fixture
def shared_data():
    if not SHARED.is_dir():
        pytest.skip("../shared/data is absent (a user's machine): real-data tests skipped")
    return SHARED


def _gpu_usable() -> bool:
    try:
        return get_xp("gpu") is not np
    except DeviceError:
        return False


GPU = _gpu_usable()
DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.skipif(not GPU, reason="no usable GPU (CuPy and a CUDA "
                                                                                "device)"))]
"""The devices every physics, algorithm, SPMD and I/O test runs on: the CPU, and the GPU where one is usable."""


@pytest.fixture(params=DEVICES)
def device(request):
    """'cpu', then 'gpu' (skipped cleanly without one)."""
    return request.param


@pytest.fixture
def xp(device):
    """The array module of ``device``: NumPy or CuPy. Tests convert to the host only in their assertions."""
    return get_xp(device)
