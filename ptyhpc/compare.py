"""Scoring a reconstruction against ground truth, with one function for ptyhpc and for its peers."""
from __future__ import annotations

import numpy as np

from .physics import fourier_shift
from .positions import rms


def phase_ramp(z: np.ndarray) -> np.ndarray:
    """exp(i (gy y + gx x)): the linear phase ramp of ``z``, from its mean neighbour phase differences."""
    gy = np.angle(np.sum(z[1:, :] * np.conj(z[:-1, :])))
    gx = np.angle(np.sum(z[:, 1:] * np.conj(z[:, :-1])))
    y, x = np.mgrid[: z.shape[0], : z.shape[1]]
    return np.exp(1j * (gy * y + gx * x))


def nrmse(rec: np.ndarray, true: np.ndarray, ramp: bool = False) -> float:
    """||a rec - true|| / ||true|| with the best global complex factor a (after a linear phase ramp of
    rec / true is removed, when ``ramp``)."""
    rec = rec.astype(np.complex128)
    true = true.astype(np.complex128)
    if ramp:
        rec = rec * np.conj(phase_ramp(rec * np.conj(true)))
    a = np.vdot(rec, true) / max(np.vdot(rec, rec).real, 1e-300)
    return float(np.linalg.norm(a * rec - true) / np.linalg.norm(true))


SUBPIXEL_MARGIN = 8
"""Pixels of the reconstruction kept around the compared region while it is shifted by a sub-pixel amount (the
Fourier shift wraps around its edges)."""


def scanned_region(scan: np.ndarray, n: int) -> tuple:
    """(y0, y1, x0, x1): the rectangle spanned by the probe centres (window corners + N/2)."""
    c = scan + n / 2
    lo = np.ceil(c.min(axis=0)).astype(int)
    hi = np.floor(c.max(axis=0)).astype(int) + 1
    return lo[0], hi[0], lo[1], hi[1]


def object_errors(rec_obj, rec_scan, true_obj, true_scan, n) -> dict:
    """Object NRMSE inside the rectangle spanned by the scan centres, with the two frames aligned by the
    positions (their median offset: the whole-pixel part by cropping, a sub-pixel rest by an exact Fourier shift
    of the reconstruction, as when a near-field scan's positions were re-scaled onto its object grid), without
    and with removal of a linear phase ramp.

    Also ``object_nrmse_registered``: the ramp removed and the reconstruction moved by the sub-pixel translation
    that fits the truth best (:func:`registration`; ``registered_shift_px``, rows first; NaN where the
    reconstruction has no margin around the region to shift in). A translation of object and
    probe together is invisible to a far-field detector, like the phase ramp, so the recorded positions fix
    the frame only as far as the iterations keep it: the aligned error counts a frame that crept, the
    registered one does not."""
    offset = np.median(np.asarray(rec_scan) - np.asarray(true_scan), axis=0)
    shift = np.round(offset).astype(int)
    rest = offset - shift
    y0, y1, x0, x1 = scanned_region(np.asarray(true_scan), n)
    t = true_obj[y0:y1, x0:x1]
    m = SUBPIXEL_MARGIN
    ry0, rx0 = y0 + shift[0] - m, x0 + shift[1] - m
    ry1, rx1 = y1 + shift[0] + m, x1 + shift[1] + m
    subpixel = np.abs(rest).max() > 1e-3
    if (ry0 < 0 or rx0 < 0 or ry1 > rec_obj.shape[-2] or rx1 > rec_obj.shape[-1]) and not subpixel:
        m, ry0, rx0, ry1, rx1 = 0, ry0 + m, rx0 + m, ry1 - m, rx1 - m  # no margin, none needed: no registration
    if ry0 < 0 or rx0 < 0:
        raise ValueError(f"the reconstruction ({rec_obj.shape}) does not cover the scanned region of the truth")
    wide = rec_obj[ry0:ry1, rx0:rx1].astype(np.complex128)
    if subpixel:  # out(r) = rec(r + rest): the reconstruction's frame moved onto the truth's
        wide = fourier_shift(wide, -rest)
    r = wide[m:wide.shape[0] - m, m:wide.shape[1] - m]
    if r.shape != t.shape:
        raise ValueError(f"the reconstruction ({rec_obj.shape}) does not cover the scanned region of the truth")
    drift, registered = registration(wide, t, m) if m else (np.full(2, np.nan), np.nan)
    return {"object_nrmse": nrmse(r, t), "object_nrmse_ramp": nrmse(r, t, ramp=True),
            "object_nrmse_registered": registered, "registered_shift_px": drift.tolist(),
            "region": [int(y0), int(y1), int(x0), int(x1)],
            "frame_offset": offset.tolist()}


def registration(wide: np.ndarray, t: np.ndarray, m: int, search: int = 512) -> tuple[np.ndarray, float]:
    """The sub-pixel translation (rows, cols; px, |each| < ``m``) of ``wide`` (the region of ``t`` plus a margin of
    ``m`` pixels) that minimises the NRMSE with ramp removal against ``t``, and that NRMSE over the whole region.
    Starts from the cross-correlation's peak (:func:`register`), then Nelder-Mead on the NRMSE itself: the peak of
    cropped images is pulled towards no shift by their common edges, the NRMSE of the margined region is not. The
    search runs on the central ``search`` x ``search`` pixels at most (each step is an FFT pair of what it
    shifts)."""
    from scipy.optimize import minimize

    def centre(a, size):  # the central part of a (H, W) array, at most ``size`` along each axis
        return tuple(slice(max((n - size) // 2, 0), max((n - size) // 2, 0) + min(n, size)) for n in a.shape)

    part = centre(t, search)
    w = wide[tuple(slice(sl.start, sl.stop + 2 * m) for sl in part)]
    tw = t[part]

    def error(s, w=w, tw=tw):
        if np.abs(s).max() >= m:
            return np.inf
        return nrmse(fourier_shift(w, s)[m:w.shape[0] - m, m:w.shape[1] - m], tw, ramp=True)

    start = np.clip(register(tw, w[m:w.shape[0] - m, m:w.shape[1] - m])[1], 1 - m, m - 1)
    best = minimize(error, start, method="Nelder-Mead",
                    options={"xatol": 1e-3, "fatol": 1e-7, "initial_simplex": start + [[0, 0], [0.2, 0], [0, 0.2]]})
    return best.x, error(best.x, wide, t)


def position_error(rec_scan, true_scan) -> float:
    """RMS distance (pixels) between two sets of positions (POSI, 2) of the same scan after removing their mean
    offset (the global position is degenerate with the object's)."""
    d = np.asarray(rec_scan, dtype=np.float64) - np.asarray(true_scan, dtype=np.float64)
    return rms(d - d.mean(axis=0))


def position_error_parts(rec_scan, true_scan) -> dict:
    """:func:`position_error` split (pixels, RMS over positions): the part a linear map of the true positions
    explains, itself split into its symmetric part (scale and shear: ``scale_shear_px``; what position correction
    holds, see ptyhpc.positions) and its antisymmetric part (``rotation_px``), and the ``rest`` (the linear part
    removed), for positions (POSI, 2); ``matrix`` the fitted map (2, 2), error ~ (true - mean) @ matrix.T. The
    parts are least-squares projections: total^2 = linear^2 + rest^2 and linear^2 = scale_shear^2 + rotation^2 (for
    a scan that is as wide as it is tall; approximately otherwise)."""
    e = np.asarray(rec_scan, dtype=np.float64) - np.asarray(true_scan, dtype=np.float64)
    e -= e.mean(axis=0)
    c = np.asarray(true_scan, dtype=np.float64)
    c = c - c.mean(axis=0)
    m = np.linalg.lstsq(c, e, rcond=None)[0].T if len(c) >= 3 else np.zeros((2, 2))
    return {"total_px": rms(e), "linear_px": rms(c @ m.T), "scale_shear_px": rms(c @ ((m + m.T) / 2).T),
            "rotation_px": rms(c @ ((m - m.T) / 2).T), "rest_px": rms(e - c @ m.T), "matrix": m.tolist()}


def probe_error(rec_probe, true_probe) -> float:
    """NRMSE of the first (strongest) probe mode with a global complex factor: mixed states are compared through
    their dominant orthogonal mode."""
    return nrmse(np.asarray(rec_probe).reshape((-1,) + rec_probe.shape[-2:])[0],
                 np.asarray(true_probe).reshape((-1,) + true_probe.shape[-2:])[0])


def compare_files(result, truth) -> dict:
    from .io.product import read_product

    r, t = read_product(result), read_product(truth)
    n = t["probe"].shape[-1]
    out = object_errors(r["object"], r["scan"], t["object"], t["scan"], n)
    if len(t["layers"]) > 1 and len(r["layers"]) == len(t["layers"]):  # a thick sample: each slice too
        out["slices"] = [object_errors(a, r["scan"], b, t["scan"], n) for a, b in zip(r["layers"], t["layers"])]
    out["probe_nrmse"] = probe_error(r["probe"], t["probe"])
    if len(r["scan"]) == len(t["scan"]):
        out["position_error_px"] = position_error(r["scan"], t["scan"])
        out["position_error_parts"] = position_error_parts(r["scan"], t["scan"])
    if r["losses"]:
        out["final_cost"] = r["losses"][-1][1]
    return out


HALF_BIT = (0.2071, 1.9102, 1.2071, 0.9102)
"""The half-bit threshold T(n) = (a + b / sqrt(n)) / (c + d / sqrt(n)) of a ring of n pixels (van Heel & Schatz,
J. Struct. Biol. 151, 250, 2005): the correlation two halves of a data set reach where each carries half a bit of
information."""


def register(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``b`` (H, W) complex moved onto ``a``: the shift that maximises their cross-correlation (whole pixels, then a
    parabola through the peak's neighbours for the sub-pixel part, applied as a Fourier shift), then the linear
    phase ramp and the global complex factor of b / a removed. Returns (b moved, the shift (rows, cols) px)."""
    from .physics import fourier_shift

    fa, fb = np.fft.fft2(a - a.mean()), np.fft.fft2(b - b.mean())
    xc = np.abs(np.fft.ifft2(fa * np.conj(fb)))
    peak = np.array(np.unravel_index(np.argmax(xc), xc.shape))
    shift = peak.astype(np.float64)
    for axis, size in enumerate(xc.shape):
        lo, hi = list(peak), list(peak)
        lo[axis], hi[axis] = (peak[axis] - 1) % size, (peak[axis] + 1) % size
        m, l, h = xc[tuple(peak)], xc[tuple(lo)], xc[tuple(hi)]
        curvature = l - 2 * m + h
        shift[axis] += 0.5 * (l - h) / curvature if curvature < 0 else 0.0
    shape = np.array(xc.shape)
    shift = (shift + shape / 2) % shape - shape / 2  # the shortest way round
    moved = fourier_shift(b.astype(np.complex128), shift)
    moved = moved * np.conj(phase_ramp(moved * np.conj(a)))
    moved = moved * (np.vdot(moved, a) / max(np.vdot(moved, moved).real, 1e-300))
    return moved, shift


def frc(a: np.ndarray, b: np.ndarray) -> dict:
    """Fourier ring correlation of two registered images (H, W) complex, over their largest centred square, edges
    tapered (Hann over the outer eighth). Returns ``frequency`` (cycles per pixel, ring centres), ``frc``,
    ``threshold`` (half-bit), and ``resolution_px``: the full period 1 / f at the first crossing of the threshold
    (linear between rings), or 2 (the Nyquist period) when the curve never falls below it."""
    side = min(a.shape)
    crop = lambda z: z[(z.shape[0] - side) // 2:(z.shape[0] - side) // 2 + side,
                       (z.shape[1] - side) // 2:(z.shape[1] - side) // 2 + side]
    taper = np.ones(side)
    edge = max(side // 8, 1)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(edge) + 0.5) / edge)
    taper[:edge], taper[-edge:] = ramp, ramp[::-1]
    window = taper[:, None] * taper[None, :]
    fa, fb = (np.fft.fftshift(np.fft.fft2((crop(z) - crop(z).mean()) * window)) for z in (a, b))
    k = np.arange(side) - side // 2
    ring = np.rint(np.hypot(k[:, None], k[None, :])).astype(int).ravel()
    rings = side // 2
    keep = ring < rings
    ring = ring[keep]
    sums = lambda v: np.bincount(ring, v.ravel()[keep], minlength=rings)
    cross = np.abs(sums((fa * np.conj(fb)).real) + 1j * sums((fa * np.conj(fb)).imag))
    curve = cross / np.sqrt(sums(np.abs(fa) ** 2) * sums(np.abs(fb) ** 2) + 1e-300)
    n = np.maximum(np.bincount(ring, minlength=rings), 1)
    a0, b0, c0, d0 = HALF_BIT
    threshold = (a0 + b0 / np.sqrt(n)) / (c0 + d0 / np.sqrt(n))
    freq = np.arange(rings) / side
    below = np.flatnonzero((curve < threshold) & (np.arange(rings) >= 1))
    if len(below):
        i = below[0]
        g0, g1 = curve[i - 1] - threshold[i - 1], curve[i] - threshold[i]
        f = freq[i - 1] + (freq[i] - freq[i - 1]) * g0 / (g0 - g1) if g0 > g1 else freq[i]
        resolution = 1.0 / max(f, 1e-12)
    else:
        resolution = 2.0
    return {"frequency": freq, "frc": curve, "threshold": threshold, "resolution_px": float(resolution)}


def frc_files(a_path, b_path) -> dict:
    """FRC of the objects of two product files of the same scan (e.g. from its odd and even positions): each
    cropped to the rectangle both scans cover (their probe centres' span), B registered onto A (:func:`register`),
    then :func:`frc`. Adds ``shift_px`` and ``pixel_size_m`` / ``resolution_m`` when the files have a pixel size."""
    from .io.product import read_product

    ra, rb = read_product(a_path), read_product(b_path)
    n = ra["probe"].shape[-1]
    boxes = [scanned_region(np.asarray(r["scan"]), n) for r in (ra, rb)]
    y0, x0 = max(boxes[0][0], boxes[1][0]), max(boxes[0][2], boxes[1][2])
    y1, x1 = min(boxes[0][1], boxes[1][1]), min(boxes[0][3], boxes[1][3])
    if y1 - y0 < 16 or x1 - x0 < 16:
        raise ValueError(f"{a_path} and {b_path} share no scanned region of 16 x 16 pixels: two scans?")
    a, b = (np.asarray(r["object"])[y0:y1, x0:x1] for r in (ra, rb))
    moved, shift = register(a, b)
    out = frc(a, moved)
    out["shift_px"] = shift.tolist()
    out["region"] = [int(y0), int(y1), int(x0), int(x1)]
    px = ra.get("pixel_size")
    if px and px != 1.0:
        out["pixel_size_m"] = float(px)
        out["resolution_m"] = out["resolution_px"] * float(px)
    return out


def spokes(obj, centre, radius):
    """Siemens star test pattern: (dominant angular frequency, its share of the spectrum) of the phase of ``obj``
    (H, W) along a circle of ``radius`` pixels about ``centre`` (row, col): a star of S spokes centred there gives
    S with a large share; a noisy or blurred reconstruction has no dominant period."""
    theta = np.linspace(0, 2 * np.pi, 1024, endpoint=False)
    y = np.round(centre[0] + radius * np.sin(theta)).astype(int)
    x = np.round(centre[1] + radius * np.cos(theta)).astype(int)
    profile = np.angle(obj[y, x] * np.conj(np.mean(obj[y, x])))
    spectrum = np.abs(np.fft.rfft(profile - profile.mean()))[1:200] ** 2
    k = int(np.argmax(spectrum[4:])) + 5
    return k, float(spectrum[k - 1] / spectrum.sum())


def star_centre(obj, guess, radius=80, search=40, step=4):
    """The centre (row, col) near ``guess`` around which the phase is most periodic in angle."""
    best = max(((spokes(obj, (guess[0] + dy, guess[1] + dx), radius)[1], (guess[0] + dy, guess[1] + dx))
                for dy in range(-search, search + 1, step) for dx in range(-search, search + 1, step)))
    return best[1]
