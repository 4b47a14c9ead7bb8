"""CXI files (cxidb): far-field patterns, sample translations in metres, energy, distance, pixel sizes, mask."""
from __future__ import annotations

from functools import partial

import numpy as np

from ..units import wavelength_from_joules
from .dataset import (Dataset, InputError, check_mask, check_patterns_shape, check_probe, orient,
                      orientation_of, place_scan)
from .h5 import locate, open_file, row_blocks

DATA = ("entry_1/data_1/data", "entry_1/instrument_1/detector_1/data")
TRANSLATION = "entry_1/sample_1/geometry_1/translation"
SOURCE = "entry_1/instrument_1/source_1"
DETECTOR = "entry_1/instrument_1/detector_1"
PROBES = (f"{SOURCE}/probe", f"{SOURCE}/illumination", "entry_1/probe", "entry_1/image_1/data")
"""Where a CXI file may hold an initial probe (the first found is taken)."""
PROGRAM = "entry_1/process_1/program"


def _scalar(f, path, key, lo, hi, what):
    if key not in f:
        return None
    try:
        v = float(np.asarray(f[key][()]).ravel()[0])
    except (TypeError, ValueError, IndexError):
        raise InputError(path, key, f"{what} is not a number") from None
    if not (lo <= v <= hi):
        raise InputError(path, key, f"{what} {v:.4g} is outside the plausible range [{lo:g}, {hi:g}]")
    return v


def load(path, flip_translation: bool = False) -> Dataset:
    with open_file(path, "r") as f:
        try:
            return _load(f, path, flip_translation)
        except (RuntimeError, KeyError, OSError) as e:  # h5py's words for unreadable metadata
            raise InputError(path, "-", f"unreadable: corrupt or truncated file? ({e})") from None


def _load(f, path, flip_translation):
    key = next((k for k in DATA if k in f), None)
    if key is None:
        raise InputError(path, DATA[0], f"missing: no diffraction data at {' or '.join(DATA)}")
    d, sources, virtual = locate(f, key)
    if d.dtype.kind not in "iuf":
        raise InputError(path, key, f"patterns must be numbers, not {d.dtype}")
    if TRANSLATION not in f:
        raise InputError(path, TRANSLATION, "missing: no scan positions")
    t, _, _ = locate(f, TRANSLATION)
    if t.ndim != 2 or t.shape[1] < 2:
        raise InputError(path, TRANSLATION, f"translations must be (POSI, 2 or 3) metres, got shape {t.shape}")
    count, n = check_patterns_shape(path, key, d.shape, t.shape[0])
    translation = np.asarray(t[:, :2], dtype=np.float64)

    energy = _scalar(f, path, f"{SOURCE}/energy", 1e-17, 1e-12, "photon energy (J)")
    wavelength = _scalar(f, path, f"{SOURCE}/wavelength", 1e-13, 1e-6, "wavelength (m)")
    if wavelength is None and energy is not None:
        wavelength = wavelength_from_joules(energy)
    distance = _scalar(f, path, f"{DETECTOR}/distance", 1e-4, 1e3, "detector distance (m)")
    pixel = _scalar(f, path, f"{DETECTOR}/x_pixel_size", 1e-7, 1e-2, "detector pixel size (m)")
    if None in (wavelength, distance, pixel):
        missing = [k for k, v in (("source_1/energy or wavelength", wavelength),
                                  ("detector_1/distance", distance), ("detector_1/x_pixel_size", pixel))
                   if v is None]
        raise InputError(path, ", ".join(missing), "missing: needed to convert translations (m) to pixels")
    pixel_size = wavelength * distance / (n * pixel)
    # NeXus NXsource/distance: the effective source's distance from the sample, negative upstream; in a cone beam
    # the effective source is the focus, which near-field ptychography needs (``in_near_field``)
    focus = _scalar(f, path, f"{SOURCE}/distance", -1e3, 1e3, "source (focus) distance (m)")
    focus = abs(focus) if focus else None

    mask = np.ones((n, n), dtype=bool)
    if f"{DETECTOR}/mask" in f:
        mask = check_mask(path, f"{DETECTOR}/mask", f[f"{DETECTOR}/mask"][()], n)
    orientation = (False, False, False)
    if f"{DETECTOR}/basis_vectors" in f:  # which way the detector's rows and columns run in the lab
        orientation = orientation_of(path, f"{DETECTOR}/basis_vectors", f[f"{DETECTOR}/basis_vectors"][()])
    probe = None
    for pkey in PROBES:
        if pkey in f:
            probe = check_probe(path, pkey, f[pkey][()], n)
            break

    # NeXus and cxidb: the translation is the sample's, so the probe moves opposite to it (cdtools reads it so);
    # Ptychodus writes the probe's position there and says so in entry_1/process_1/program
    program = f[PROGRAM][()] if PROGRAM in f else b""
    by_ptychodus = (program.decode(errors="replace") if isinstance(program, bytes) else str(program)) == "Ptychodus"
    probe_positions = by_ptychodus != flip_translation
    positions = translation if probe_positions else -translation
    convention = ("translation = probe position" if probe_positions else
                  "translation = sample position, probe position = -translation (NeXus, cdtools)")
    convention += (" (written by Ptychodus: entry_1/process_1/program)" if by_ptychodus else "")
    convention += (", flipped by --flip-translation" if flip_translation else "")
    centres = positions[:, ::-1] / pixel_size  # (x, y) metres -> (row, col) pixels
    scan, shape = place_scan(path, TRANSLATION, centres - n / 2, n)
    # parallel HDF5 cannot read virtual datasets (Eiger master files): each rank then opens the file on its own
    reader = partial(row_blocks, path, key, dtype=None, independent=virtual)
    return Dataset(
        path=str(path), patterns_dataset=key, count=count, n=n, scan=scan, object_shape=shape,
        mask=orient(np.fft.ifftshift(mask), orientation), orientation=orientation, probe=probe, pixel_size=pixel_size, wavelength=wavelength,
        distance=distance, detector_pixel=pixel, reader=reader, centred=True, sources=sources,
        convention=convention, focus_distance=focus,
    )


def write(path, frames, x_m, y_m, energy_ev: float, distance: float, detector_pixel: float, *, bad=None,
          focus_distance=None, triggers=None, centre: bool = False, block: int = 1024) -> None:
    """A CXI file of ``frames`` (POSI, N, N) with probe positions ``x_m``/``y_m`` (metres; stored as the sample's
    translation, their negative, as cdtools and :func:`load` read it) and the geometry; written to
    ``path.partial`` and renamed. ``frames``: as the detector gave them (any number type), or with the zero
    frequency at [0, 0] and ``centre`` True (they are fftshift-ed); an array or anything with ``shape``, ``dtype``
    and slicing along the first axis, written ``block`` frames at a time (files larger than memory). Optional:
    ``bad`` (N, N) the bad-pixel mask as stored (non-zero = bad), ``focus_distance`` (m, stored as NeXus'
    ``source_1/distance``, negative: upstream), ``triggers`` each frame's detector trigger count
    (``detector_1/trigger_count``, areaDetector's uniqueId)."""
    import h5py

    from ..units import ELECTRON_VOLT
    from .output import atomic

    n = frames.shape[-1]
    translation = np.zeros((len(frames), 3))
    translation[:, 0], translation[:, 1] = -np.asarray(x_m), -np.asarray(y_m)
    with atomic(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["cxi_version"] = 160
        det = f.create_group("entry_1/instrument_1/detector_1")
        data = det.create_dataset("data", shape=frames.shape, dtype=frames.dtype, chunks=(1, n, n))
        for i in range(0, len(frames), block):
            part = np.asarray(frames[i:i + block])
            data[i:i + block] = np.fft.fftshift(part, axes=(-2, -1)) if centre else part
        det["distance"], det["x_pixel_size"], det["y_pixel_size"] = distance, detector_pixel, detector_pixel
        if bad is not None:
            det.create_dataset("mask", data=np.asarray(bad).astype(np.uint8))
        if triggers is not None:
            det["trigger_count"] = np.asarray(triggers, dtype=np.int64)
        src = f.create_group("entry_1/instrument_1/source_1")
        src["energy"] = energy_ev * ELECTRON_VOLT
        if focus_distance:
            src["distance"] = -focus_distance
        f["entry_1/sample_1/geometry_1/translation"] = translation
        f["entry_1/data_1/data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
