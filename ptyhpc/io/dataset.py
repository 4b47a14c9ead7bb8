"""The format-independent view of an input: positions and metadata in memory, patterns read on demand."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Callable, NamedTuple

import numpy as np

from ..units import ev_from_wavelength

MARGIN = 2
"""Object pixels left between the outermost probe window and the object's edge."""
BLOCK = 256
"""Patterns read, converted and shifted at a time (``Dataset.read_patterns``)."""
MAX_OBJECT_SIDE = 65536
"""Positions spanning more object pixels than this are taken as a unit or sign error, not as a real scan."""


class InputError(ValueError):
    """A problem with an input file: ``FILE: DATASET: problem``."""

    def __init__(self, path, dataset: str, problem: str):
        self.path, self.dataset, self.problem = str(path), dataset, problem
        super().__init__(f"{path}: {dataset}: {problem}")


class Patterns(NamedTuple):
    """Measured patterns as read (``Dataset.read_patterns``).

    intensity : (POSI, N, N) float32, photon counts, zero frequency at [0, 0]; 0 where ``invalid``
    invalid : (POSI, N, N) bool or None, pixels holding the detector's marker for "no valid count" (overflow,
        gap, bad pixel) in that pattern; None when no pixel does
    marker : the marker values looked for (empty for float data, which has none)
    dead : (POSI,) bool, the frames that hold no count at all (left out whole: every pixel ``invalid``)
    """

    intensity: np.ndarray
    invalid: np.ndarray | None
    marker: str
    dead: np.ndarray | None = None
    """(POSI,) bool: frames without a single count (dead frames), wholly marked in ``invalid``."""


@dataclass
class Dataset:
    """A ptychography scan, format-independent.

    scan : (POSI, 2) float64, top-left corner of each probe window in object pixels, rows first, placed so the
        smallest corner sits ``MARGIN`` pixels from the object's edge
    object_shape : (H, W) of the full object that holds every window plus the margin
    mask : (N, N) bool, True = valid detector pixel, zero frequency at [0, 0]
    probe : (MODES, N, N) complex or None, an initial probe from the file
    pixel_size : object pixel size in metres (lambda z / (N p)), or None when the file has no geometry
    """

    path: str
    patterns_dataset: str
    count: int
    n: int
    scan: np.ndarray
    object_shape: tuple
    mask: np.ndarray
    probe: np.ndarray | None
    pixel_size: float | None
    wavelength: float | None
    distance: float | None
    detector_pixel: float | None
    reader: Callable = field(repr=False)
    """reader(sorted indices, comm, block=size) -> the rows as consecutive blocks of ``size`` rows (raw, in the
    stored dtype, before shifting): ``h5.row_blocks`` (one open of the file), or :func:`in_blocks` around a
    function that returns rows."""
    centred: bool = True
    """True when the file stores patterns with the zero frequency in the middle (they are ifftshift-ed)."""
    patterns_read: int = 0
    """How many patterns this process has read (each rank should read only its own)."""
    bytes_read: int = 0
    """How many bytes of patterns, as stored (before conversion), this process has read."""
    sources: tuple = ()
    """Every file the patterns and positions come from (the file itself, a folder's files, the source files of
    virtual or externally linked datasets): a run never writes over any of them."""
    convention: str = ""
    """How the file's positions were read (whose positions, which sign), for ``ptyhpc info`` and the log."""
    settings: dict = field(default_factory=dict)
    """Reconstruction settings the input states (a Ptychodus folder's settings.ini, its probe's mode count):
    ReconConfig fields, applied below the user's TOML file and command line."""
    settings_ignored: tuple = ()
    """Settings the input states that ptyhpc does not use (reported, never silently dropped)."""
    orientation: tuple = (False, False, False)
    """(transpose, reflect rows, reflect columns): how the stored patterns are turned so that rows run along the
    lab's +y and columns along +x (a CXI file's ``detector_1/basis_vectors``; :func:`orient`)."""
    near_field: bool = False
    """True when the patterns are near-field images (Fresnel regime: :func:`in_near_field`): then ``pixel_size``
    and ``scan`` are in the sample plane of the equivalent parallel-beam geometry and the patterns are read as they
    are stored (no shift)."""
    focus_distance: float | None = None
    """The focus-to-sample distance z1 (m) of a cone beam, as the file states it (CXI ``source_1/distance``) or
    the user gave it; used in the near field (:func:`in_near_field`). None: not known (a parallel beam)."""

    def __post_init__(self):
        self.sources = tuple(self.sources) or (self.path,)

    def geometry(self) -> str:
        """One line: far field, or the near-field geometry (magnification, propagation distance)."""
        if not self.near_field:
            return "far field"
        from ..physics import fresnel_scaling

        _, z, m = fresnel_scaling(self.detector_pixel, self.distance, self.focus_distance or 0.0)
        beam = (f"cone beam, focus {self.focus_distance:.4g} m upstream of the sample, magnification {m:.1f}"
                if self.focus_distance else "parallel beam")
        return f"near field ({beam}), propagation distance {z:.4g} m"

    def read_patterns(self, indices, comm=None) -> "Patterns":
        """Patterns ``indices`` (any order) as float32 with the zero frequency at [0, 0], checked for NaN, Inf
        and negative values. ``comm``: the ranks (``comm.Ranks`` or an mpi4py communicator) when all read at
        once (parallel HDF5).

        Integer data (uint16, uint32, int32, ...) carry the detector's markers for pixels without a valid count:
        the type's largest value (Eiger: 65535, 0xFFFFFFFF for overflow and gaps) and, in signed types, negative
        values (Pilatus: -1 gaps, -2 bad pixels). Such a pixel is left out of *that pattern's* fit: its intensity
        is 0 here and ``Patterns.invalid`` marks it. A frame with no count at all (a dead frame) is left out
        whole. The rows are read, converted and shifted ``BLOCK`` patterns at a time, into the one float32 array
        returned: no full-size copy in the stored type (one block when collective reads are on).
        """
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        ranked = indices[order]
        out = np.empty((len(indices), self.n, self.n), dtype=np.float32)
        invalid, marker = None, ""
        start = 0
        for raw in self.reader(ranked, comm, block=BLOCK):
            step = len(raw)
            rows = order[start:start + step]
            self.patterns_read += len(rows)
            self.bytes_read += raw.nbytes
            flagged, marker = _markers(raw)
            if flagged is not None and invalid is None:
                invalid = np.zeros(out.shape, dtype=bool)
            block = raw.astype(np.float32)
            if flagged is not None:
                block[flagged] = 0
            self._check(block, ranked[start:start + step])
            if self.centred:
                block = np.fft.ifftshift(block, axes=(-2, -1))
                flagged = None if flagged is None else np.fft.ifftshift(flagged, axes=(-2, -1))
            if any(self.orientation):
                block = orient(block, self.orientation)
                flagged = None if flagged is None else orient(flagged, self.orientation)
            out[rows] = block
            if flagged is not None:
                invalid[rows] = flagged
            start += step
            del raw, block, flagged  # before the reader makes the next block: one block in memory, not two or three
        dead = ~out.any(axis=(1, 2))
        if dead.any():  # a frame without a single count: a missed trigger, not a measurement
            invalid = np.zeros(out.shape, dtype=bool) if invalid is None else invalid
            invalid[dead] = True
        return Patterns(out, invalid, marker, dead)

    def subset(self, spec: str) -> "Dataset":
        """The positions whose index is K modulo M (``spec`` 'K/M', 'even' = '0/2', 'odd' = '1/2'), on this scan's
        object grid (same shape and frame: reconstructions of two subsets overlay pixel for pixel)."""
        k, m = {"even": (0, 2), "odd": (1, 2)}.get(spec, (None, None))
        if k is None:
            try:
                k, m = (int(v) for v in spec.split("/"))
            except ValueError:
                raise ValueError(f"--subset {spec}: expected K/M, 'even' or 'odd'") from None
        if not (m >= 1 and 0 <= k < m):
            raise ValueError(f"--subset {spec}: needs M >= 1 and 0 <= K < M")
        keep = np.arange(k, self.count, m)
        if len(keep) == 0:
            raise InputError(self.path, self.patterns_dataset, f"--subset {spec} leaves no position of {self.count}")
        read = self.reader
        return replace(self, count=len(keep), scan=self.scan[keep],
                       reader=lambda indices, comm=None, block=BLOCK: read(keep[indices], comm, block=block),
                       patterns_read=0, bytes_read=0)

    def _check(self, block, indices) -> None:
        """Refuse NaN, Inf and negative intensities in ``block`` (rows ``indices``), naming the first pattern."""
        for bad, problem in ((~np.isfinite(block), "contains NaN or Inf"), (block < 0, "has negative intensities")):
            if bad.any():
                j = int(indices[np.flatnonzero(bad.any(axis=(1, 2)))[0]])
                raise InputError(self.path, self.patterns_dataset, f"pattern {j} {problem}")

    def describe(self) -> str:
        lines = [
            f"file            {self.path}",
            f"patterns        {self.count} x {self.n} x {self.n}  ({self.patterns_dataset})",
            f"object          {self.object_shape[0]} x {self.object_shape[1]} pixels",
            f"valid pixels    {int(self.mask.sum())} of {self.mask.size}",
            f"initial probe   {'none (made from the mean pattern)' if self.probe is None else self.probe.shape}",
        ]
        if self.wavelength and self.distance and self.detector_pixel:
            lines += [
                f"wavelength      {self.wavelength:.4e} m ({ev_from_wavelength(self.wavelength):.1f} eV)",
                f"distance        {self.distance:.4g} m, detector pixel {self.detector_pixel:.3e} m",
                f"object pixel    {self.pixel_size:.4e} m",
            ]
            if self.near_field:
                lines.append(f"geometry        {self.geometry()}")
        else:
            missing = [name for name, v in (("photon energy", self.wavelength), ("detector distance", self.distance),
                                            ("detector pixel size", self.detector_pixel)) if not v]
            lines.append(f"geometry        no {', '.join(missing)} in the file"
                         + (f"; object pixel {self.pixel_size:.4e} m" if self.pixel_size else ": pixel units"))
        step = _median_step(self.scan)
        extent = f"spans {np.ptp(self.scan[:, 0]):.1f} x {np.ptp(self.scan[:, 1]):.1f} px (rows x columns)"
        if self.pixel_size:
            extent += (f" = {np.ptp(self.scan[:, 0]) * self.pixel_size * 1e6:.3g} x "
                       f"{np.ptp(self.scan[:, 1]) * self.pixel_size * 1e6:.3g} um")
        lines.append(f"scan            median step {step:.2f} px, {extent}")
        if self.convention:
            lines.append(f"positions       {self.convention}")
        if any(self.orientation):
            transpose, rows, cols = self.orientation
            lines.append("detector axes   turned to the lab's: " + ", ".join(
                w for w, on in (("transposed", transpose), ("rows reversed", rows), ("columns reversed", cols)) if on)
                + " (basis_vectors)")
        if self.settings:
            lines.append(f"settings        {', '.join(f'{k} = {v}' for k, v in sorted(self.settings.items()))}")
        if self.settings_ignored:
            lines.append(f"not used        {', '.join(self.settings_ignored)}")
        return "\n".join(lines)


def orient(x, orientation, inverse: bool = False):
    """Turn (..., N, N) arrays as ``Dataset.orientation`` says: transpose, then reflect rows and columns about
    pixel 0 (index k -> -k mod N, which keeps a zero frequency at [0, 0] in place; on an image, a mirror and a
    one-pixel shift). ``inverse``: undo it. Returns a new array."""
    transpose, *reflect = orientation
    if transpose and not inverse:
        x = np.swapaxes(x, -1, -2)
    for axis, flip in zip((-2, -1), reflect):
        if flip:
            x = np.roll(np.flip(x, axis), 1, axis)
    if transpose and inverse:
        x = np.swapaxes(x, -1, -2)
    return np.ascontiguousarray(x)


def orientation_of(path, dataset: str, basis) -> tuple:
    """``Dataset.orientation`` from a detector's basis vectors (CXI ``basis_vectors``: (3, 2), column j the lab
    vector (x, y, z) of one pixel step along array axis j, rows then columns; (2, 3) is read as its transpose).
    Axes at an angle to the lab's x and y are refused."""
    b = np.asarray(basis, dtype=np.float64)
    b = b.T if b.shape == (2, 3) else b
    if b.shape != (3, 2) or not np.isfinite(b).all():
        raise InputError(path, dataset, f"basis vectors must be (3, 2) numbers, got shape {b.shape}")
    axes = []
    for j in range(2):
        v = b[:, j]
        k = int(np.argmax(abs(v)))
        if k == 2 or abs(v[k]) < 0.999 * np.linalg.norm(v):
            raise InputError(path, dataset, f"detector axis {j} {v.tolist()} is not along the lab's x or y: rotated "
                                            "detectors are not supported")
        axes.append((k, v[k] < 0))
    (k0, neg0), (k1, neg1) = axes
    if k0 == k1:
        raise InputError(path, dataset, "both detector axes lie along the same lab axis")
    if k0 == 1:  # rows along y: no transpose
        return (False, neg0, neg1)
    return (True, neg1, neg0)  # rows along x: transposed, the new rows follow axis 1


def in_near_field(dataset: Dataset, focus_distance: float = 0.0) -> Dataset:
    """The same scan in the near-field (Fresnel) geometry: the patterns are images of the wave on the detector,
    the sample sits ``focus_distance`` (z1, m; 0: the file's, else a parallel beam) downstream of the focus and
    ``distance`` (z2)
    upstream of the detector. By the Fresnel scaling theorem (``physics.fresnel_scaling``) the object pixel is the
    detector pixel / M and the propagation distance z2 / M, M = (z1 + z2) / z1; the positions (which a loader
    turned into pixels with the far-field pixel) are re-scaled and re-placed on that grid, and the patterns and
    the mask are read unshifted. A dataset already in the near field is returned as it is."""
    from ..physics import fresnel_scaling

    if dataset.near_field:
        return dataset
    missing = [name for name, v in (("photon energy or wavelength", dataset.wavelength),
                                    ("detector distance", dataset.distance),
                                    ("detector pixel size", dataset.detector_pixel)) if not v]
    if missing:
        raise InputError(dataset.path, "-", f"near field needs the {', '.join(missing)}, which the file lacks")
    focus_distance = focus_distance or dataset.focus_distance or 0.0
    if focus_distance < 0 or focus_distance >= dataset.distance:
        raise InputError(dataset.path, "-", f"focus distance {focus_distance:g} m must lie in [0, the detector "
                                            f"distance {dataset.distance:g} m)")
    pixel, _, _ = fresnel_scaling(dataset.detector_pixel, dataset.distance, focus_distance)
    n = dataset.n
    if dataset.pixel_size:  # back to metres (any origin), then to the near-field pixel
        centres = (dataset.scan + n / 2) * (dataset.pixel_size / pixel)
    else:
        centres = dataset.scan + n / 2
    scan, shape = place_scan(dataset.path, "positions", centres - n / 2, n)
    mask = dataset.mask
    if dataset.centred:  # the mask as the patterns will be read: unshifted, then turned
        mask = orient(np.fft.fftshift(orient(mask, dataset.orientation, inverse=True)), dataset.orientation)
    return replace(dataset, scan=scan, object_shape=shape, pixel_size=pixel, mask=mask, centred=False,
                   near_field=True, focus_distance=focus_distance or None)


def _median_step(scan: np.ndarray) -> float:
    if len(scan) < 2:
        return 0.0
    sample = scan[:: max(1, len(scan) // 2000)]
    d = np.sqrt(((sample[:, None, :] - scan[None, :, :]) ** 2).sum(-1))
    d[d == 0] = np.inf
    return float(np.median(d.min(axis=1)))


def place_scan(path, dataset: str, corners: np.ndarray, n: int, check_duplicates: bool = True):
    """Shift window corners (POSI, 2) by whole pixels so the smallest sits at MARGIN; return (scan, shape).

    Raises InputError for non-finite positions, spans no sane object could have, or duplicated positions.
    """
    corners = np.asarray(corners, dtype=np.float64)
    if corners.ndim != 2 or corners.shape[1] != 2:
        raise InputError(path, dataset, f"positions must be (POSI, 2), got shape {corners.shape}")
    if len(corners) == 0:
        raise InputError(path, dataset, "the scan is empty (no positions)")
    if not np.isfinite(corners).all():
        raise InputError(path, dataset, "positions contain NaN or Inf")
    span = np.ptp(corners, axis=0)
    if (span + n + 2 * MARGIN > MAX_OBJECT_SIDE).any():
        raise InputError(path, dataset, f"positions span {span[0]:.3g} x {span[1]:.3g} object pixels, more than "
                                        f"any sane object ({MAX_OBJECT_SIDE}); wrong units or pixel size?")
    if check_duplicates and len(corners) > 1:
        uniq = np.unique(np.round(corners, 3), axis=0)
        if len(uniq) < len(corners):
            raise InputError(path, dataset, f"{len(corners) - len(uniq)} duplicated scan position(s)")
    # whole pixels decided on positions rounded to 1e-6 px, so that metres -> pixels rounding (1e-12 px) cannot
    # move the object's frame or size by a pixel between two files of the same scan
    scan = corners + (MARGIN - np.floor(np.round(corners.min(axis=0), 6)))
    shape = tuple(int(v) for v in np.ceil(np.round(scan.max(axis=0), 6)).astype(int) + n + MARGIN)
    return scan, shape


def check_patterns_shape(path, dataset: str, shape, count_positions: int | None = None):
    """Validate a (POSI, N, N) pattern stack's shape; return (count, N)."""
    if len(shape) != 3:
        raise InputError(path, dataset, f"patterns must be 3-D (POSI, N, N), got {len(shape)}-D shape {shape}")
    count, ny, nx = shape
    if count == 0 or ny == 0 or nx == 0:
        raise InputError(path, dataset, f"zero-size dimension in shape {shape}")
    if ny != nx:
        raise InputError(path, dataset, f"patterns must be square, got {ny} x {nx}")
    if count_positions is not None and count_positions != count:
        raise InputError(path, dataset, f"{count} patterns but {count_positions} scan positions")
    return count, ny


def check_mask(path, dataset: str, bad, n: int) -> np.ndarray:
    """The valid-pixel mask (N, N) bool from a bad-pixel array ``bad`` (non-zero = bad, as CXI and Ptychodus
    store it). A mask that leaves no valid pixel is refused: it is nearly always the inverted convention."""
    bad = np.asarray(bad)
    if bad.shape != (n, n):
        raise InputError(path, dataset, f"mask shape {bad.shape} does not match the patterns' ({n}, {n})")
    valid = bad == 0
    if not valid.any():
        raise InputError(path, dataset, "the mask marks every pixel bad (here non-zero = bad): nothing to fit; "
                                        "a mask stored with the inverted convention (non-zero = good)?")
    return valid


def check_probe(path, dataset: str, probe, n: int) -> np.ndarray:
    """An initial probe (..., N, N) as (MODES, N, N) complex64; refuses a wrong shape, NaN or Inf, and zero."""
    probe = np.asarray(probe)
    if probe.dtype.kind not in "iufc":
        raise InputError(path, dataset, f"probe must be numbers, not {probe.dtype}")
    if probe.ndim < 2:
        raise InputError(path, dataset, f"probe must be (MODES, N, N) or (N, N), got {probe.ndim}-D shape "
                                        f"{probe.shape}")
    if probe.shape[-2:] != (n, n):
        raise InputError(path, dataset, f"probe is {probe.shape[-2]} x {probe.shape[-1]} but the patterns are "
                                        f"{n} x {n}")
    probe = probe.reshape((-1, n, n)).astype(np.complex64)
    if not np.isfinite(probe).all():
        raise InputError(path, dataset, "probe contains NaN or Inf")
    if not np.any(probe):
        raise InputError(path, dataset, "probe is zero everywhere")
    return probe


def check_object(path, dataset: str, obj, shape) -> np.ndarray:
    """An initial object (H, W) (or (1, H, W)) of the scan's object ``shape`` as complex64; refuses another shape
    and NaN or Inf."""
    obj = np.asarray(obj)
    if obj.dtype.kind not in "iufc":
        raise InputError(path, dataset, f"object must be numbers, not {obj.dtype}")
    obj = obj.reshape(obj.shape[-2:]) if obj.ndim == 3 and obj.shape[0] == 1 else obj
    if obj.shape != tuple(shape):
        raise InputError(path, dataset, f"object is {'x'.join(map(str, obj.shape))} but this scan's object is "
                                        f"{shape[0]}x{shape[1]}")
    if not np.isfinite(obj).all():
        raise InputError(path, dataset, "object contains NaN or Inf")
    return obj.astype(np.complex64)


def load(path, flip_translation: bool = False, reader: str | None = None, **reader_options) -> Dataset:
    """Open any supported input: a CXI file, a tike npz (``.npz`` or ``.npz.bz2``) or a Ptychodus folder; with
    ``reader``, any file one of Ptychodus' readers of that name reads (``io.readers.load``, which takes
    ``reader_options``: positions, positions_reader, crop).

    ``flip_translation``: mirror the file's positions through the origin, for a file that stores the other
    party's positions than its format says (CXI: the sample's translation, so probe position = -translation, as
    NeXus defines a translation and cdtools reads it; Ptychodus and tike: the probe's positions).
    """
    from . import cxi, npz, ptychodus, readers

    path = os.fspath(path)
    if reader:
        if not os.path.exists(path):
            raise InputError(path, "-", "no such file or directory")
        return readers.load(path, reader, flip_translation=flip_translation, **reader_options)
    if os.path.isdir(path):
        return ptychodus.load(path, flip_translation=flip_translation)
    if not os.path.exists(path):
        raise InputError(path, "-", "no such file or directory")
    if os.path.getsize(path) == 0:
        raise InputError(path, "-", "the file is empty")
    if path.endswith((".npz", ".npz.bz2")):
        return npz.load(path, flip_translation=flip_translation)
    return cxi.load(path, flip_translation=flip_translation)


def from_arrays(patterns, scan, mask=None, probe=None, pixel_size=None, name: str = "<arrays>") -> Dataset:
    """A Dataset over in-memory arrays: ``patterns`` (POSI, N, N) with the zero frequency at [0, 0] (an array, or
    anything with ``shape`` and rows by index: read a block at a time), ``scan`` (POSI, 2) window corners in
    pixels (any origin; placed like a file's)."""
    patterns = patterns if hasattr(patterns, "shape") and hasattr(patterns, "__getitem__") else np.asarray(patterns)
    count, n = check_patterns_shape(name, "patterns", patterns.shape, len(scan))
    placed, shape = place_scan(name, "scan", scan, n)

    return Dataset(path=name, patterns_dataset="patterns", count=count, n=n, scan=placed, object_shape=shape,
                   mask=np.ones((n, n), bool) if mask is None else np.asarray(mask, bool), probe=probe,
                   pixel_size=pixel_size, wavelength=None, distance=None, detector_pixel=None,
                   reader=in_blocks(lambda rows: patterns[rows]), centred=False)


def in_blocks(read: Callable) -> Callable:
    """A ``Dataset.reader`` from ``read(sorted rows) -> raw patterns``, called once per block (for sources that
    open nothing collectively: arrays in memory, Ptychodus' readers)."""
    def reader(indices, comm=None, block: int = BLOCK):
        return (read(indices[s:s + block]) for s in range(0, max(len(indices), 1), block))
    return reader


def _markers(raw):
    """(pixels of ``raw`` that hold the detector's no-valid-count marker, or None; the markers looked for)."""
    if raw.dtype.kind not in "iu":
        return None, ""
    top = np.iinfo(raw.dtype).max
    flagged = raw == top
    marker = f"{top} ({raw.dtype} maximum)"
    if raw.dtype.kind == "i":
        flagged |= raw < 0
        marker += " or negative"
    return (flagged if flagged.any() else None), marker
