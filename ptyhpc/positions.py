"""Position correction: refine each scan position from the data. Pure functions (the step on arrays of ``xp``, the
constraint on host NumPy); the engine gathers and applies.

**The step** (Odstrcil, Menzel & Guizar-Sicairos, Opt. Express 26, 3108, 2018, Sec. 2.6). Moving position j by
delta changes its exit wave psi_jk = S(d_j) P_k O_j by g_jk delta, g_jk = (dS(d_j) P_k / d d_j) O_j with S the
model's own sub-pixel shift (``state.shift.grad``): Re sum_k <g_jk, chi_jk> is then the exact gradient of the
misfit, chi_jk the exit-wave update of the iteration. Its curvature is taken from the object's gradient,
||P_jk dO_j||^2 (central differences), as PtychoShelves, Tike and Pty-chi do for the whole step: the two
derivatives differ by a translation of the exit wave, which the detector does not see, and that translation makes
||g_jk||^2 large even over a featureless object (steps too short to converge). Per coordinate:

    delta_j = GAIN Re sum_k <g_jk, chi_jk> / ((1 + DAMPING) sum_k ||P_jk dO_j||^2)

With the object's gradient in the numerator too, and with the bilinear shift, positions started at the truth
(true object and probe) drifted off it by a good fraction of a pixel in 20 epochs during development; the model's
own derivative of the exact (Fourier) shift leaves them there, which is why position correction runs on the
Fourier shift (``subpixel = "auto"``).

**The constraint**, once per epoch over all positions (:func:`constrain`). The steps are split, by least-squares
projections, into the scan's systematic error and a residual. The systematic part is a linear drift in time (the
position index; kept, times ``DRIFT_GAIN``) and an affine map of the recorded positions (shift, scale, rotation,
shear: PtychoShelves' and Tike's geometry model); the shift is dropped (the mean position is degenerate with the
object's position) and so is the rest of the map unless ``position_affine``, except its rotation: a scale or a
shear of the positions trades against the probe's focus or astigmatism (from error-free positions they crept by
0.1-0.2 % when left free), a rotation against nothing (the probe is not rotated with it), so the rotation is
always corrected (on the standard set with errors, 8 neighbours: 0.40 -> 0.39 px rPIE, 0.39 -> 0.37 px LSQML
after 100 epochs; error-free runs unchanged). The residual is the random error of each position; its part that
varies smoothly over the scan (the mean over each position's nearest neighbours) is dropped: a smooth warp of the
positions together with the object fits the data almost as well as none, so the data cannot tell it and the
positions would wander along it (from error-free positions they did, by about a quarter of a pixel over 100
epochs, without this filter; with it, scripts/bench_positions.py's "true corrected" run measures what is left).
What remains is corrected position by position.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import physics
from .backend import array_module

DAMPING = 0.1
"""eps_j of the step relative to the position's own curvature: a position over a featureless region (curvature ~
0) does not move on noise."""
GAIN = 2.0
"""Multiplies the Gauss-Newton step. chi comes from a modulus projection, which returns only part of the exit-wave
change a shift makes (the phase part it leaves alone), so the plain step falls short: on the standard set with
errors, gains of 2 and 3 ended 100 epochs with about a fifth less position error than 1 (development runs)."""
DRIFT_GAIN = 2.0
"""Multiplies the steps' projection on the drift in time: estimated from all positions at once it is far less
noisy than one position's step, and a drift is a smooth warp, which the steps alone correct slowly (development
runs on the standard set: a gain of 2 left about 8 % less position error than 1 after 100 epochs; a gain of 6 on
the whole systematic part oscillated)."""
NEIGHBOURS = 32
"""Nearest positions over which the smooth part of the residual steps is averaged (and removed). The wider the
average, the smoother what it removes and the faster the random errors' own mid-scale part is corrected, and the
more freely error-free positions wander: on the standard set with errors (scripts/bench_positions.py, seed 0,
100 epochs, development runs) 8 neighbours left 0.386 / 0.373 px (rPIE / LSQML) and 32 leave 0.339 / 0.314, while
from the true positions they moved 0.175 / 0.198 px with 8 and 0.207 / 0.237 with 32 (the object error the same
or lower in all four); 64 corrected no better than 32 and wandered more (0.228 px, rPIE; again on 2026-12-01, seeds
0 / 1: 0.347 / 0.328 px rPIE and 0.322 / 0.327 px LSQML against 32's 0.339 / 0.329 and 0.314 / 0.326). At 100 epochs
the error is still falling with 32 (rPIE, seed 0: 0.355 px at epoch 90, 0.339 at 100; LSQML 0.319, 0.314), while
from the true positions it grows (0.200, 0.207 px). Faster steps do not close the gap: momentum on the applied steps
(development runs, rPIE, seed 0) ended at 0.326 px with 0.5 and 0.337 with 0.7, while error-free positions moved
0.233 and 0.253 px (0.207 without): it converges sooner and then wanders more, so what is left is about as much the
steps' noise as slow convergence."""


def gradient_step(shift, prepared, weights, probes, patches, backprojected):
    """The step of each position of a batch, object pixels, rows first.

    shift : the sub-pixel shift operator, ``prepared`` = ``shift.prepare(probe)`` and ``weights`` (BATCH, ...) its
    inputs; probes : (BATCH, MODES, N, N) complex, shifted probes P_jk; patches : (BATCH, N, N) complex, object
    windows O_j; backprojected : (BATCH, MODES, N, N) complex, conj(O_j) chi_jk with chi the exit-wave updates
    psi'_jk - psi_jk (the probe's gradient before the shift's adjoint, which the probe update then takes from here
    too) -> (BATCH, 2) real (on the device).

    Numerator Re <dP_j/dd O_j, chi_j> (through the shift's derivative); denominator sum_k ||P_jk dO_j/dd||^2 =
    sum_r w_j |dO_j/dd|^2 with w_j = sum_k |P_jk|^2 and dO_j/dd by central differences (one-sided at the window's
    edges).
    """
    xp = array_module(patches)
    nums = shift.grad_inner(prepared, weights, backprojected)
    w = physics.sum_modes(physics.abs2(probes))
    steps = []
    for axis, num in enumerate(nums):
        den = xp.einsum("bij,bij->b", w, _slope2(patches, axis + 1))
        steps.append(GAIN * num / (den * (1 + DAMPING) + 1e-30))
    return xp.stack(steps, axis=1)


def _slope2(a, axis: int):
    """|da/dr|^2 along ``axis`` (1 or 2) of ``a`` (BATCH, N, N) complex: central differences (a[i+1] - a[i-1]) / 2
    inside, one-sided differences at the two ends (numpy.gradient's values, without its temporaries)."""
    xp = array_module(a)
    d = xp.empty_like(a)
    at = (slice(None),) * axis
    xp.subtract(a[at + (slice(2, None),)], a[at + (slice(None, -2),)], out=d[at + (slice(1, -1),)])
    d[at + (slice(1, -1),)] *= 0.5
    xp.subtract(a[at + (slice(1, 2),)], a[at + (slice(0, 1),)], out=d[at + (slice(0, 1),)])
    xp.subtract(a[at + (slice(-1, None),)], a[at + (slice(-2, -1),)], out=d[at + (slice(-1, None),)])
    return physics.abs2(d)


@dataclass(frozen=True)
class Model:
    """The systematic part of position corrections c_j ~ offset + drift (t_j - 1/2) + (r_j - centre) @ matrix.T,
    r_j the recorded position and t_j = j / (POSI - 1) the time along the scan (object pixels, rows first)."""

    offset: np.ndarray
    """(2,) mean correction."""
    drift: np.ndarray
    """(2,) drift from the first to the last position."""
    matrix: np.ndarray
    """(2, 2) linear map: scale, rotation and shear minus the identity."""
    centre: np.ndarray
    """(2,) the recorded positions' mean."""

    def to_dict(self) -> dict:
        return {"offset_px": self.offset.tolist(), "drift_px": self.drift.tolist(),
                "matrix": self.matrix.tolist(), "centre_px": self.centre.tolist(),
                "maps": "correction (rows, cols) px = offset + drift (t - 1/2) + (recorded - centre) @ matrix.T, "
                        "t = index / (positions - 1)"}


class Constraint:
    """What :func:`constrain` needs of a scan, made once from its recorded positions (POSI, 2), global order."""

    def __init__(self, recorded: np.ndarray, neighbours: int = NEIGHBOURS):
        from scipy.spatial import cKDTree

        count = len(recorded)
        self.centre = recorded.mean(axis=0)
        t = np.arange(count) / max(count - 1, 1) - 0.5
        self.design = np.concatenate([np.ones((count, 1)), t[:, None], recorded - self.centre], axis=1)
        """(POSI, 4): 1, time, rows, columns."""
        q, r = np.linalg.qr(self.design[:, [0, 2, 3, 1]])  # orthonormal: 1, rows, columns, then time
        keep = np.abs(np.diag(r)) > 1e-9 * max(np.abs(np.diag(r)).max(), 1e-300)
        self.basis = q[:, keep[:3].nonzero()[0]]
        """(POSI, <= 3) orthonormal basis of the shift and the affine part."""
        self.time = q[:, [3]] if keep[3] else np.zeros((count, 0))
        """(POSI, 1 or 0): the time along the scan, orthogonal to the shift and the affine part (none where the
        time is one of them: a raster scan's time is nearly its row coordinate, a drift there is a shear)."""
        k = min(neighbours + 1, count)
        self.near = cKDTree(recorded).query(recorded, k=k)[1].reshape(count, k)
        """(POSI, k) each position and its nearest neighbours."""

    def fit(self, values: np.ndarray) -> Model:
        """The model fitted to ``values`` (POSI, 2) by least squares (fewer than 4 positions: the mean only)."""
        if len(values) < 4:
            coef = np.zeros((4, 2))
            coef[0] = values.mean(axis=0) if len(values) else 0
        else:
            coef = np.linalg.lstsq(self.design, values, rcond=None)[0]
        return Model(offset=coef[0], drift=coef[1], matrix=coef[2:].T.copy(), centre=self.centre)



def constrain(steps: np.ndarray, c: Constraint, affine: bool) -> np.ndarray:
    """The steps of all positions (POSI, 2) as they are applied: their least-squares projection on the drift in
    time and on the affine map's rotation (its scale and shear too when ``affine``; never on the shift: the mean
    position is held), plus the
    residual with its smooth part (the mean over each position's neighbours) removed; mean zero. Projections, not
    fitted coefficients: where time and position are nearly collinear (a raster) nothing is amplified. The same on
    every rank (every rank holds all steps)."""
    on_basis = c.basis @ (c.basis.T @ steps)
    on_time = c.time @ (c.time.T @ steps)
    linear = on_basis - c.basis[:, :1] @ (c.basis[:, :1].T @ steps)  # the affine part without the shift
    if not affine:  # only its rotation: the scale and shear trade against the probe's focus and astigmatism
        centred = c.design[:, 2:]
        m = np.linalg.lstsq(centred, linear, rcond=None)[0]  # linear = centred @ m
        linear = centred @ ((m - m.T) / 2)
    systematic = DRIFT_GAIN * on_time + linear
    residual = steps - on_basis - on_time
    residual = residual - residual[c.near].mean(axis=1)
    out = systematic + residual
    return out - out.mean(axis=0)


def clip_norm(v: np.ndarray, limit: float) -> np.ndarray:
    """Each row of ``v`` (POSI, 2) scaled down to a length of at most ``limit``."""
    length = np.sqrt((v ** 2).sum(axis=1, keepdims=True))
    return v * np.minimum(1.0, limit / np.maximum(length, 1e-300))


def rms(v: np.ndarray) -> float:
    """Root mean square length of the rows of ``v`` (POSI, 2), pixels."""
    return float(np.sqrt((v ** 2).sum(axis=1).mean())) if len(v) else 0.0
