"""tike-style npz (``.npz`` or bz2-compressed ``.npz.bz2``): ``data`` (..., POSI, N, N) with the zero frequency
at [0, 0], ``scan`` (..., POSI, 2) window corners in object pixels, rows first, optional ``probe`` (..., N, N).
No physical metadata: everything is in pixel units. The whole file is read (npz has no partial reads)."""
from __future__ import annotations

import bz2
import io
import zipfile

import numpy as np

from .dataset import Dataset, InputError, check_patterns_shape, check_probe, in_blocks, place_scan


def _open(path):
    try:
        if path.endswith(".bz2"):
            with bz2.open(path, "rb") as f:
                return np.load(io.BytesIO(f.read()))
        return np.load(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(path, "-", f"not a readable npz file ({e})") from None


def load(path, flip_translation: bool = False) -> Dataset:
    """Open a tike npz; ``flip_translation`` mirrors the positions (see ``io.load``)."""
    z = _open(path)
    for key in ("data", "scan"):
        if key not in z.files:
            raise InputError(path, key, f"missing (the file has {sorted(z.files)})")
    data = np.asarray(z["data"])
    scan = np.asarray(z["scan"], dtype=np.float64)
    while data.ndim > 3 and data.shape[0] == 1:
        data = data[0]
    while scan.ndim > 2 and scan.shape[0] == 1:
        scan = scan[0]
    if scan.ndim != 2 or scan.shape[-1] != 2:
        raise InputError(path, "scan", f"positions must be (POSI, 2), got shape {scan.shape}")
    count, n = check_patterns_shape(path, "data", data.shape, len(scan))
    if data.dtype.kind not in "iuf":
        raise InputError(path, "data", f"patterns must be numbers, not {data.dtype}")
    probe = check_probe(path, "probe", z["probe"], n) if "probe" in z.files else None
    placed, shape = place_scan(path, "scan", -scan if flip_translation else scan, n)

    return Dataset(
        path=str(path), patterns_dataset="data", count=count, n=n, scan=placed, object_shape=shape,
        mask=np.ones((n, n), dtype=bool), probe=probe, pixel_size=None, wavelength=None, distance=None,
        detector_pixel=None, reader=in_blocks(lambda rows: data[rows]), centred=False,
        convention="window corners in pixels (tike)" + (", mirrored: --flip-translation" if flip_translation else ""),
    )
