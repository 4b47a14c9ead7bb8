"""Ptychodus folders as Ptychodus 1.7 writes them (``ptychodus.api.io.StandardFileLayout``): ``diffraction.h5``
(``patterns`` (POSI, N, N) centred, with ``detector_pixel_width_m``; ``indexes``; ``bad_pixels``, True = bad),
``product.h5`` (or the older ``product-in.h5``: ``probe_position_x_m``/``_y_m``/``_indexes``, ``probe``,
``object`` with its pixel size and centre, ``detector_object_distance_m`` and ``photon_energy_eV`` (or the older
``probe_energy_eV``) as file attributes) and optionally ``settings.ini``, the Ptychodus settings of the run.

Positions follow Ptychodus exactly: a probe position (x, y) in metres sits at object pixel
``(x - center_x_m) / pixel_width_m + (W - 1) / 2`` (``ObjectGeometry.map_probe_positions_to_object_x_px``), so a
window's corner is that minus ``(N - 1) / 2``: ptyhpc's object grid is Ptychodus' grid shifted by whole pixels.
"""
from __future__ import annotations

import configparser
import os
from functools import partial

import numpy as np

from ..config import ReconConfig
from ..units import wavelength_from_ev
from .dataset import Dataset, InputError, check_mask, check_patterns_shape, check_probe, place_scan
from .h5 import open_file, row_blocks

PRODUCT_NAMES = ("product.h5", "product-in.h5")
"""The input product's names: Ptychodus 1.7's, then the name earlier versions wrote."""
ENERGY_KEYS = ("photon_energy_eV", "probe_energy_eV")
"""The photon energy's attribute: Ptychodus 1.7's name, then the older one."""
ALGORITHMS = {"pty-chi_rpie": "rpie", "pty-chi_lsqml": "lsqml", "pty-chi_dm": "dm"}
"""Ptychodus' ``[Processing] Algorithm`` values that name an algorithm ptyhpc has."""
SETTINGS = {  # (section, key) of settings.ini -> (ReconConfig field, conversion)
    ("PtyChi", "NumEpochs"): ("epochs", int),
    ("PtyChi", "BatchSize"): ("batch_size", int),
    ("PtyChi", "BatchingMode"): ("batching", str),
    ("PtyChi", "UseDoublePrecision"): ("precision", lambda v: "complex128" if v.lower() == "true" else "complex64"),
}


def corners_from_positions(x_m, y_m, pixel_m: float, shape, n: int, center=(0.0, 0.0)) -> np.ndarray:
    """Window corners (POSI, 2) in object pixels, rows first, of probe positions ``x_m``, ``y_m`` (metres) on an
    object of ``shape`` (H, W) centred at ``center`` = (x_m, y_m), as Ptychodus places them."""
    h, w = shape
    col = (np.asarray(x_m, dtype=np.float64) - center[0]) / pixel_m + (w - 1) / 2
    row = (np.asarray(y_m, dtype=np.float64) - center[1]) / pixel_m + (h - 1) / 2
    return np.stack([row, col], axis=1) - (n - 1) / 2


def product_probe(path, probe, opr_weights=None) -> np.ndarray:
    """A product's probe as incoherent modes (MODES, N, N): (C, K, N, N) with C OPR modes becomes the probe of
    the scan's mean OPR weights, sum_c <w_c> P_c (the first OPR mode when there are no weights)."""
    probe = np.asarray(probe)
    if probe.ndim == 4 and probe.shape[0] > 1:
        if opr_weights is None:
            return probe[0]
        w = np.asarray(opr_weights)
        if w.ndim != 2 or w.shape[1] != probe.shape[0]:
            raise InputError(path, "opr_weights", f"shape {w.shape} does not match the probe's {probe.shape[0]} "
                                                  "OPR modes")
        return np.tensordot(w.mean(axis=0), probe, axes=1)
    return probe.reshape((-1,) + probe.shape[-2:]) if probe.ndim >= 2 else probe


def read_settings(path) -> tuple[dict, list]:
    """The ptyhpc settings a Ptychodus ``settings.ini`` states, and the (section, key) pairs it holds that ptyhpc
    does not use."""
    config = configparser.ConfigParser(interpolation=None)
    try:
        config.read(path)
    except configparser.Error as e:
        raise InputError(path, "-", f"not a readable settings file ({e})") from None
    taken, ignored = {}, []
    for section in config.sections():
        for key, value in config[section].items():
            match = next(((s, k) for (s, k) in SETTINGS if s == section and k.lower() == key), None)
            if match is not None:
                field, convert = SETTINGS[match]
            elif section == "Processing" and key == "algorithm":
                field, convert = "algorithm", lambda v: ALGORITHMS.get(v.lower(), v)
            else:
                ignored.append(f"{section}/{key}")
                continue
            try:
                taken[field] = convert(value)
                ReconConfig(**{field: taken[field]})  # a value ptyhpc cannot use is reported, not fatal
            except (ValueError, TypeError) as e:
                taken.pop(field, None)
                ignored.append(f"{section}/{key} = {value} ({e})")
    return taken, ignored


def load(folder, flip_translation: bool = False) -> Dataset:
    """Open a Ptychodus folder. ``flip_translation``: the file's positions are the sample's, not the probe's."""
    dpath = os.path.join(folder, "diffraction.h5")
    ppath = next((p for p in (os.path.join(folder, n) for n in PRODUCT_NAMES) if os.path.exists(p)), None)
    if not os.path.exists(dpath):
        raise InputError(dpath, "-", "missing: a Ptychodus folder holds diffraction.h5 and product.h5")
    if ppath is None:
        raise InputError(os.path.join(folder, PRODUCT_NAMES[0]), "-", "missing: a Ptychodus folder holds "
                         "diffraction.h5 and product.h5 (or the older product-in.h5)")
    with open_file(dpath, "r") as f:
        if "patterns" not in f:
            raise InputError(dpath, "patterns", "missing")
        shape = f["patterns"].shape
        count, n = check_patterns_shape(dpath, "patterns", shape)
        indexes = np.asarray(f["indexes"][()]) if "indexes" in f else np.arange(count)
        bad = f["bad_pixels"][()] if "bad_pixels" in f else None
        detector_pixel = float(f["patterns"].attrs.get("detector_pixel_width_m", 0)) or None
    if indexes.shape != (count,):
        raise InputError(dpath, "indexes", f"{indexes.size} indexes for {count} patterns")
    with open_file(ppath, "r") as f:
        for key in ("probe_position_x_m", "probe_position_y_m", "probe", "object"):
            if key not in f:
                raise InputError(ppath, key, "missing")
        xs, ys = np.asarray(f["probe_position_x_m"][()]), np.asarray(f["probe_position_y_m"][()])
        pidx = np.asarray(f["probe_position_indexes"][()]) if "probe_position_indexes" in f else np.arange(len(xs))
        if not len(xs) == len(ys) == len(pidx):
            raise InputError(ppath, "probe_position_x_m/_y_m/_indexes", f"lengths differ: {len(xs)}, {len(ys)}, "
                                                                        f"{len(pidx)}")
        probe = product_probe(ppath, f["probe"][()], f["opr_weights"][()] if "opr_weights" in f else None)
        o = f["object"]
        pixel = float(o.attrs.get("pixel_width_m", 0))
        center = (float(o.attrs.get("center_x_m", 0.0)), float(o.attrs.get("center_y_m", 0.0)))
        object_shape = o.shape[-2:]
        distance = float(f.attrs.get("detector_object_distance_m", 0)) or None
        energy = next((float(f.attrs[k]) for k in ENERGY_KEYS if k in f.attrs), 0.0) or None
    if not pixel > 0:
        raise InputError(ppath, "object/pixel_width_m", "missing or not positive")
    lookup = {int(i): k for k, i in enumerate(pidx)}
    missing = [int(i) for i in indexes if int(i) not in lookup]
    if missing:
        raise InputError(ppath, "probe_position_indexes", f"no position for pattern index {missing[0]} "
                                                          f"({len(missing)} patterns without a position)")
    orphans = sorted(set(lookup) - set(int(i) for i in indexes))
    if orphans:
        raise InputError(ppath, "probe_position_indexes", f"{len(orphans)} position(s) match no pattern of "
                                                          f"{dpath} (first: index {orphans[0]})")
    sel = np.array([lookup[int(i)] for i in indexes])
    sign = -1.0 if flip_translation else 1.0
    corners = corners_from_positions(sign * xs[sel], sign * ys[sel], pixel, object_shape, n,
                                     center=(sign * center[0], sign * center[1]))
    scan, oshape = place_scan(ppath, "probe_position_x_m/_y_m", corners, n)
    mask = np.ones((n, n), dtype=bool) if bad is None else check_mask(dpath, "bad_pixels", bad, n)
    wavelength = wavelength_from_ev(energy) if energy else None
    settings, ignored = ({}, [])
    spath = os.path.join(folder, "settings.ini")
    if os.path.isfile(spath):
        settings, ignored = read_settings(spath)
    probe = check_probe(ppath, "probe", probe, n)
    settings.setdefault("probe_modes", probe.shape[0])
    return Dataset(
        path=str(folder), patterns_dataset="diffraction.h5:patterns", count=count, n=n, scan=scan,
        object_shape=oshape, mask=np.fft.ifftshift(mask), probe=probe,
        pixel_size=pixel, wavelength=wavelength, distance=distance,
        detector_pixel=detector_pixel or ((wavelength * distance / (n * pixel)) if (wavelength and distance) else None),
        reader=partial(row_blocks, dpath, "patterns", dtype=None), centred=True,
        sources=(dpath, ppath) + ((spath,) if os.path.isfile(spath) else ()),
        convention="probe positions (Ptychodus product)" + (", flipped: --flip-translation" if flip_translation
                                                             else ""),
        settings=settings, settings_ignored=tuple(ignored),
    )
