"""What one rank holds during a reconstruction: its object tile, the probe, its own patterns and positions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import physics
from .backend import array_module
from .partition import Tile


class Batch(NamedTuple):
    """The positions of one batch, as local indices: ``host`` (BATCH,) int NumPy (for the corners, which slice
    the object on the host) and ``device``, the same on the rank's device (see :func:`batches_on`)."""

    host: np.ndarray
    device: object

    def __len__(self) -> int:
        return len(self.host)


def batches_on(xp, batches) -> list:
    """``batches`` (lists of local indices) as :class:`Batch` es, their device copies made in one transfer."""
    host = [np.asarray(b, dtype=np.int64) for b in batches]
    if xp is np:
        return [Batch(b, b) for b in host]
    flat = xp.asarray(np.concatenate(host) if host else np.zeros(0, np.int64))
    cuts = np.cumsum([len(b) for b in host])[:-1].tolist()
    return [Batch(b, d) for b, d in zip(host, xp.split(flat, cuts))]


@dataclass
class LocalState:
    """One rank's share of the problem. Arrays live on the rank's device (``xp``) unless noted.

    obj : (H, W) complex, the object on this rank's tile (core + halo); (S, H, W) with S slices (multislice)
    probe : (MODES, N, N) complex, the full probe (every rank holds all of it)
    patterns : (POSI, N, N) real, measured intensities of this rank's positions, zero frequency at [0, 0]
    mask : (N, N) bool, True where a detector pixel is valid
    invalid : (POSI, N, N) bool or None, pixels without a valid count in one pattern only (detector markers for
        overflow or gaps, see ``Dataset.read_patterns``); None when there are none
    corner : (POSI, 2) int, host NumPy: integer top-left corner of each window in *tile* coordinates
    corner_xp : the same on the device (made once)
    frac : (POSI, 2) real: each position's fractional offset d_j (what the near field's ``detector.at`` needs)
    weights : (POSI, 4 or 2) real, what ``shift`` needs of each position's fractional offset (bilinear weights,
        or the offsets themselves)
    shift : the sub-pixel shift operator of the probe (``physics.Bilinear`` or ``physics.Fourier``)
    slice_prop : multislice: the propagation from one slice to the next (``physics.AngularSpectrum`` over the
        slice spacing), None with one slice
    detector : the propagation from the sample to the detector (``physics.FarField`` or an
        ``physics.AngularSpectrum``), with ``fwd`` and ``adj``
    indices : (POSI,) int, host NumPy: global index of each position (sorted)
    tile : this rank's Tile
    scan : (POSI, 2) float64, host NumPy: the positions (window corners, global object pixels) in use; changed
        only by :meth:`move`
    steps : (POSI, 2) real or None: position steps proposed in the current epoch (position correction), or None
        when the positions are not being corrected
    opr : (C-1, N, N) complex or None: the variable probe modes V_c (OPR, see ptyhpc.opr), every rank all of them
    opr_weights : (POSI, C-1) real or None: their weights at this rank's positions
    """

    obj: object
    probe: object
    patterns: object
    mask: object
    invalid: object
    corner: np.ndarray
    corner_xp: object
    frac: object
    weights: object
    indices: np.ndarray
    tile: Tile
    scan: np.ndarray
    shift: type = physics.Bilinear
    detector: object = physics.FarField
    slice_prop: object = None
    steps: object = None
    opr: object = None
    opr_weights: object = None
    all_valid: bool = False
    """``mask`` is True everywhere (set by :meth:`create`)."""

    @property
    def xp(self):
        return array_module(self.probe)

    @property
    def n(self) -> int:
        return self.probe.shape[-1]

    def prepared(self):
        """``shift.prepare`` of the probe's modes, followed by the OPR modes when there are any (what
        ``algorithms.common.batch_model`` shifts)."""
        if self.opr is None:
            return self.shift.prepare(self.probe)
        return self.shift.prepare(self.xp.concatenate([self.probe, self.opr]))

    def mask_of(self, b):
        """The valid pixels of the positions ``b`` (local indices on the device): ``mask`` (N, N), or (BATCH, N,
        N) where some patterns have pixels of their own to leave out, or None when every pixel is valid (the
        physics then skips the masking passes)."""
        if self.invalid is None:
            return None if self.all_valid else self.mask
        return self.mask & ~self.invalid[b]

    @classmethod
    def create(cls, xp, dtype, tile: Tile, scan: np.ndarray, indices: np.ndarray, patterns, mask, probe, obj,
               invalid=None, shift=physics.Bilinear, detector=physics.FarField):
        """Build the state from host arrays. ``scan`` : (POSI, 2) global positions of *this rank's* patterns;
        ``obj`` : (H, W) this rank's tile of the initial object (host or device); ``invalid`` as the field."""
        real = np.finfo(np.dtype(dtype)).dtype
        scan = np.array(scan, dtype=np.float64)
        corner, frac = _split(scan, tile, probe.shape[-1])
        return cls(
            obj=xp.array(obj, dtype=dtype),  # copies: the algorithms update these in place
            probe=xp.array(probe, dtype=dtype),
            patterns=xp.asarray(patterns, dtype=real),
            mask=xp.asarray(mask, dtype=bool),
            invalid=None if invalid is None else xp.asarray(invalid, dtype=bool),
            corner=corner,
            corner_xp=xp.asarray(corner),
            frac=xp.asarray(frac, dtype=real),
            weights=xp.asarray(shift.weights(frac), dtype=real),
            indices=np.asarray(indices),
            tile=tile,
            scan=scan,
            shift=shift,
            detector=detector,
            all_valid=bool(np.all(np.asarray(mask))),
        )

    def move(self, scan: np.ndarray) -> None:
        """Use the positions ``scan`` (POSI, 2) global window corners (host) from now on."""
        self.scan = np.array(scan, dtype=np.float64)
        corner, frac = _split(self.scan, self.tile, self.n)
        self.corner, self.corner_xp = corner, self.xp.asarray(corner)
        self.frac = self.xp.asarray(frac, dtype=self.weights.dtype)
        self.weights = self.xp.asarray(self.shift.weights(frac), dtype=self.weights.dtype)


def _split(scan: np.ndarray, tile: Tile, n: int):
    """Corners (POSI, 2) int in tile coordinates and fractional offsets (POSI, 2) of the global positions ``scan``;
    every window must lie in the tile."""
    corner, frac = physics.split_scan(scan - np.asarray(tile.origin, dtype=np.float64))
    if len(corner) and (corner.min() < 0 or (corner + n > np.asarray(tile.shape)).any()):
        raise ValueError("a probe window falls outside this rank's tile (partition bug)")
    return corner, frac
