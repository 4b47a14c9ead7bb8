"""Beamline layouts through Ptychodus' own readers (``--reader NAME``): Ptychodus ships readers for some 30
beamline layouts (APS_Velociprobe, APS_2IDD, APS_PtychoSAXS, CXI, NPZ, NSLS_II_1, SLS_cSAXS, TIFF, ...), found
by name in its plugin registry (``PluginRegistry.load_plugins()``); ptyhpc does not rewrite them.

Patterns come from the reader's diffraction dataset, a sequence of arrays (often one per data file). An array
that Ptychodus reads from HDF5 (``H5DiffractionPatternArray``: CXI, the Eiger master files of APS_Velociprobe,
APS_PtychoSAXS, ...) is read by each rank for its own rows only; any other array (NPZ, NPY, TIFF, MATLAB) is
materialised whole by the ranks that need a row of it. Positions come from the reader's probe-position reader of
the same name (or ``--positions FILE --positions-reader NAME``), matched to the patterns by index.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..units import wavelength_from_ev
from .dataset import Dataset, InputError, check_mask, check_patterns_shape, in_blocks, place_scan
from .h5 import read_rows
from .ptychodus import corners_from_positions


def _registry(path):
    try:
        from ptychodus.api.plugins import PluginRegistry
    except ImportError:
        raise InputError(path, "--reader", "needs Ptychodus: pip install 'ptyhpc[ptychodus]'") from None
    return PluginRegistry.load_plugins()


def _strategy(chooser, name, path, what):
    try:
        return chooser.get_strategy_by_name(name)
    except LookupError:
        raise InputError(path, f"--{what} {name}", f"Ptychodus has no such reader; it has "
                                                   f"{chooser.stringify_plugin_names()}") from None


def _read(path, dataset, call):
    """``call()``, with any exception of a Ptychodus reader as one InputError naming the file and the reader."""
    try:
        return call()
    except (OSError, ValueError, KeyError, IndexError, TypeError, AssertionError, RuntimeError) as e:
        raise InputError(path, dataset, f"{type(e).__name__}: {e}".rstrip(": ")) from None


def load(path, reader: str, positions=None, positions_reader=None, crop: int = 0,
         flip_translation: bool = False) -> Dataset:
    """Open ``path`` with Ptychodus' diffraction reader ``reader`` and positions from ``positions`` (default:
    ``path``) with its position reader ``positions_reader`` (default: ``reader``). ``crop``: a square of this
    many pixels around the beam centre the reader reports (else the detector's centre); 0 takes the whole frame,
    which must then be square. ``flip_translation`` mirrors the positions (see ``io.load``)."""
    path = str(path)
    registry = _registry(path)
    tag = f"--reader {reader}"
    data = _read(path, tag, lambda: _strategy(registry.diffraction_file_readers, reader, path, "reader")
                 .read(Path(path)))
    ppath = str(positions or path)
    preader_name = positions_reader or reader
    ptag = f"--positions-reader {preader_name}"
    # a product (CXI, NPZ, HDF5) is read once: its positions, and its object grid and geometry below
    product = _product(registry, preader_name, ppath)
    scan = product.probe_positions if product is not None else _read(ppath, ptag, lambda: _strategy(
        registry.probe_position_file_readers, preader_name, ppath, "positions-reader").read(Path(ppath)))
    meta = data.get_metadata()
    arrays = list(data)
    if not arrays:
        raise InputError(path, tag, "the reader found no diffraction patterns")
    first = np.concatenate([[0], np.cumsum([len(a.get_indexes()) for a in arrays])])
    indexes = np.concatenate([np.asarray(a.get_indexes(), dtype=np.int64) for a in arrays])
    height, width = meta.detector_extent.height_px, meta.detector_extent.width_px
    n = crop or height
    if not crop and height != width:
        raise InputError(path, tag, f"patterns are {height} x {width}: give --crop N for a square of N pixels "
                                    "around the beam centre")
    centre = meta.beam_center
    cy, cx = (centre.y_px, centre.x_px) if centre is not None else (height // 2, width // 2)
    window = (slice(cy - n // 2, cy - n // 2 + n), slice(cx - n // 2, cx - n // 2 + n))
    if window[0].start < 0 or window[1].start < 0 or window[0].stop > height or window[1].stop > width:
        raise InputError(path, tag, f"a {n} x {n} crop around ({cy}, {cx}) leaves the {height} x {width} detector")
    count, n = check_patterns_shape(path, tag, (len(indexes), n, n))
    mask = check_mask(path, f"{tag}: bad pixels", np.asarray(data.get_bad_pixels())[window], n)

    lookup = {int(i): k for k, i in enumerate(scan.get_indexes())}
    missing = [int(i) for i in indexes if int(i) not in lookup]
    if missing:
        raise InputError(ppath, ptag, f"no position for pattern index {missing[0]} ({len(missing)} patterns "
                                      "without a position)")
    sel = np.array([lookup[int(i)] for i in indexes])
    energy, distance = meta.photon_energy_eV, meta.detector_distance_m
    pixel = meta.detector_pixel_geometry.width_m if meta.detector_pixel_geometry is not None else None
    pixel_size = wavelength_from_ev(energy) * distance / (n * pixel) if (energy and distance and pixel) else None
    # positions read from a product are placed on its object's grid, as Ptychodus places them (see io.ptychodus);
    # a bare pattern file (NPZ, NPY, TIFF) then takes its geometry from the product too
    object_shape, object_center = (1, 1), (0.0, 0.0)
    if product is not None:
        geometry = product.object_.get_geometry()
        object_shape, object_center = (geometry.height_px, geometry.width_px), (geometry.center_x_m,
                                                                               geometry.center_y_m)
        energy = energy or product.metadata.photon_energy_eV
        distance = distance or product.metadata.detector_distance_m
        pixel_size = pixel_size or geometry.pixel_width_m
    if not pixel_size:
        missing = [k for k, v in (("photon energy", energy), ("detector distance", distance),
                                  ("detector pixel size", pixel)) if not v]
        raise InputError(path, tag, f"the reader gives no {', '.join(missing)}, and {ppath} is no product that "
                                    "gives the object's pixel size: needed to place positions in metres")
    wavelength = wavelength_from_ev(energy) if energy else None
    sign = -1.0 if flip_translation else 1.0
    corners = corners_from_positions(sign * scan.get_coordinates_x_m()[sel], sign * scan.get_coordinates_y_m()[sel],
                                     pixel_size, object_shape, n, (sign * object_center[0], sign * object_center[1]))
    placed, shape = place_scan(ppath, ptag, corners, n)

    def read(rows):
        """Rows ``rows`` (sorted) of the concatenated arrays, cropped; only the arrays that hold them are read."""
        out = np.empty((len(rows), n, n), dtype=np.dtype(meta.pattern_dtype))
        owner = np.searchsorted(first, rows, side="right") - 1
        for a in np.unique(owner):
            mine = np.flatnonzero(owner == a)
            local = rows[mine] - first[a]
            out[mine] = _rows(arrays[a], local, window, path, tag)
        return out

    return Dataset(
        path=path, patterns_dataset=tag, count=count, n=n, scan=placed, object_shape=shape,
        mask=np.fft.ifftshift(mask), probe=None, pixel_size=pixel_size, wavelength=wavelength,
        distance=distance or None, detector_pixel=pixel, reader=in_blocks(read), centred=True,
        sources=tuple(dict.fromkeys([path, ppath] + [str(s[0]) for s in map(_h5_source, arrays) if s and s[0]])),
        convention=f"probe positions from Ptychodus' {preader_name} reader"
                   + (", flipped: --flip-translation" if flip_translation else ""),
    )


def _product(registry, name, path):
    """The product Ptychodus' product reader ``name`` reads from ``path``, or None (no such reader, or not a
    product)."""
    try:
        return registry.product_file_readers.get_strategy_by_name(name).read(Path(path))
    except Exception:  # noqa: BLE001 - any failure only means: no geometry from there
        return None


def _h5_source(array):
    """(file, dataset) of an array Ptychodus reads from HDF5, else None."""
    try:
        from ptychodus.plugins.h5_diffraction_file import H5DiffractionPatternArray
    except ImportError:
        return None
    if isinstance(array, H5DiffractionPatternArray):
        return getattr(array, "_file_path", None), getattr(array, "_data_path", None)
    return None


def _rows(array, local, window, path, tag):
    """Rows ``local`` of one Ptychodus array, cropped to ``window``."""
    source = _h5_source(array)
    if source is not None and source[0] is not None and source[1] is not None:
        block = read_rows(source[0], source[1], local, dtype=None)  # only these rows, independently
    else:
        block = _read(path, tag, lambda: np.asarray(array.get_patterns()))[local]
    return block[(slice(None),) + window]
