"""Ptychodus input folder: ``diffraction.h5`` (``patterns`` (POSI, N, N) centred, ``indexes``, ``bad_pixels``)
and ``product-in.h5`` (``probe_position_x_m``/``_y_m``/``_indexes``, ``probe``, ``object`` with pixel sizes,
``detector_object_distance_m`` and ``probe_energy_eV`` as file attributes)."""
from __future__ import annotations

import os
from functools import partial

import numpy as np

from .dataset import H_PLANCK_C, Dataset, InputError, check_mask, check_patterns_shape, check_probe, place_scan
from .h5 import open_file, read_rows

EV = 1.602176634e-19


def load(folder) -> Dataset:
    dpath = os.path.join(folder, "diffraction.h5")
    ppath = os.path.join(folder, "product-in.h5")
    for p in (dpath, ppath):
        if not os.path.exists(p):
            raise InputError(p, "-", "missing: a Ptychodus input folder holds diffraction.h5 and product-in.h5")
    with open_file(dpath, "r") as f:
        if "patterns" not in f:
            raise InputError(dpath, "patterns", "missing")
        shape = f["patterns"].shape
        indexes = np.asarray(f["indexes"][()]) if "indexes" in f else np.arange(shape[0])
        bad = f["bad_pixels"][()] if "bad_pixels" in f else None
    with open_file(ppath, "r") as f:
        for key in ("probe_position_x_m", "probe_position_y_m", "probe"):
            if key not in f:
                raise InputError(ppath, key, "missing")
        xs, ys = np.asarray(f["probe_position_x_m"][()]), np.asarray(f["probe_position_y_m"][()])
        pidx = np.asarray(f["probe_position_indexes"][()]) if "probe_position_indexes" in f else np.arange(len(xs))
        probe_ds = f["probe"]
        probe_raw = probe_ds[()]
        pixel = float(f["object"].attrs.get("pixel_width_m", probe_ds.attrs.get("pixel_width_m", 0))) \
            if "object" in f else float(probe_ds.attrs.get("pixel_width_m", 0))
        distance = float(f.attrs.get("detector_object_distance_m", 0)) or None
        energy = float(f.attrs.get("probe_energy_eV", 0)) or None
    if pixel <= 0:
        raise InputError(ppath, "object/pixel_width_m", "missing or not positive")
    count, n = check_patterns_shape(dpath, "patterns", shape)
    if len(indexes) != count:
        raise InputError(dpath, "indexes", f"{len(indexes)} indexes for {count} patterns")
    # match positions to patterns by index
    lookup = {int(i): k for k, i in enumerate(pidx)}
    missing = [int(i) for i in indexes if int(i) not in lookup]
    if missing:
        raise InputError(ppath, "probe_position_indexes", f"no position for pattern index {missing[0]} "
                                                          f"({len(missing)} patterns without a position)")
    sel = np.array([lookup[int(i)] for i in indexes])
    centres = np.stack([ys[sel], xs[sel]], axis=1) / pixel
    scan, oshape = place_scan(ppath, "probe_position_x_m/_y_m", centres - n / 2, n)
    mask = np.ones((n, n), dtype=bool) if bad is None else check_mask(dpath, "bad_pixels", bad, n)
    wavelength = H_PLANCK_C / (energy * EV) if energy else None
    return Dataset(
        path=str(folder), patterns_dataset="diffraction.h5:patterns", count=count, n=n, scan=scan,
        object_shape=oshape, mask=np.fft.ifftshift(mask), probe=check_probe(ppath, "probe", probe_raw, n),
        pixel_size=pixel, wavelength=wavelength, distance=distance,
        detector_pixel=(wavelength * distance / (n * pixel)) if (wavelength and distance) else None,
        reader=partial(read_rows, dpath, "patterns", dtype=None), centred=True, sources=(dpath, ppath),
    )
