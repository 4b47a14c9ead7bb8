"""Far-field ptychography forward model and its adjoints: pure functions on arrays of ``xp`` (NumPy or CuPy).

See the package docstring for the glossary (POSI, MODES, N, H, W) and the conventions (FFT norm, zero
frequency at [0, 0], ``scan`` = top-left corner, rows first).
"""
from __future__ import annotations

import numpy as np

from . import backend
from .backend import array_module


THREADED_FFT_SIZE = {"fftw": 1 << 14, "fftw (planned)": 1 << 14, "scipy": 1 << 20}
"""Per CPU FFT library, the smallest batch (elements) whose FFT is split over threads (complex64, this project's
2-core VM, scripts/bench_threads.py at c903314): FFTW's threads pay from about 16 x 32^2 and in the rPIE loop too
(0.160 -> 0.148 s per epoch at 16 x 128^2); scipy.fft's speed a lone 16 x 128^2 transform up (0.70 -> 0.45 ms)
but not the loop (0.179 -> 0.187 s per epoch), so it threads only from 16 x 256^2 (alone 2.91 -> 1.58 ms)."""


def _workers(x) -> int:
    return backend.FFT_WORKERS if x.size >= THREADED_FFT_SIZE[backend.FFT_LIBRARY] else 1


def fft2(x):
    """Unitary 2-D FFT over the last two axes (``norm="ortho"``); zero frequency at [0, 0]. On the CPU with
    ``backend.CPU_FFT`` (FFTW when installed, else scipy.fft; both keep the input's precision and reuse their
    plans), a large batch's transforms on ``backend.FFT_WORKERS`` threads; CuPy caches its cuFFT plans itself."""
    xp = array_module(x)
    if xp is np:
        return backend.CPU_FFT.fft2(x, norm="ortho", workers=_workers(x))
    return xp.fft.fft2(x, norm="ortho")


def ifft2(x):
    """Inverse of :func:`fft2`."""
    xp = array_module(x)
    if xp is np:
        return backend.CPU_FFT.ifft2(x, norm="ortho", workers=_workers(x))
    return xp.fft.ifft2(x, norm="ortho")


# --- positions and sub-pixel shifts ----------------------------------------------------------------------------

def split_scan(scan):
    """Split positions into integer corners and fractional offsets.

    scan : (BATCH, 2) float, object pixels, rows first -> corner (BATCH, 2) int (the floor), frac (BATCH, 2) in
    [0, 1) (what a sub-pixel shift operator turns into its ``weights``).
    """
    xp = array_module(scan)
    corner = xp.floor(scan).astype(xp.int64)
    return corner, scan - corner


def probe_stack(probe):
    """The four integer shifts of the probe that bilinear interpolation mixes.

    probe : (MODES, N, N) complex -> (4, MODES, N, N): P, P rolled +1 along rows, +1 along columns, both.
    """
    xp = array_module(probe)
    down = xp.roll(probe, 1, axis=-2)
    return xp.stack([probe, down, xp.roll(probe, 1, axis=-1), xp.roll(down, 1, axis=-1)])


def shifted_probes(stack, weights):
    """Probe of each position, shifted by its fractional offset: ``P_j(r) = P(r - d_j)`` (bilinear, periodic).

    stack : (4, MODES, N, N) from :func:`probe_stack`; weights : (BATCH, 4) -> (BATCH, MODES, N, N).
    One matrix product (BLAS), so it costs about as much as a copy.
    """
    w = weights.astype(stack.dtype)
    return (w @ stack.reshape(4, -1)).reshape((len(weights),) + stack.shape[1:])


def shifted_probes_adjoint(g, weights):
    """Adjoint of :func:`shifted_probes` summed over positions: ``sum_j S_j^T g_j``.

    g : (BATCH, MODES, N, N) real or complex; weights : (BATCH, 4) -> (MODES, N, N).
    """
    w = weights.astype(g.dtype)
    s = (w.T @ g.reshape(len(g), -1)).reshape((4,) + g.shape[1:])
    # s0 + roll(s1 + roll(s3, -1, cols), -1, rows) + roll(s2, -1, cols), added in place into the product's
    # own planes (no rolled copies)
    _add_rolled(s[1], s[3], axis=-1)
    _add_rolled(s[0], s[1], axis=-2)
    _add_rolled(s[0], s[2], axis=-1)
    return s[0]


def _add_rolled(out, a, axis):
    """out += roll(a, -1, axis) (axis -1 or -2), in place."""
    if axis == -1:
        out[..., :-1] += a[..., 1:]
        out[..., -1] += a[..., 0]
    else:
        out[..., :-1, :] += a[..., 1:, :]
        out[..., -1, :] += a[..., 0, :]


def _ramps(offsets, n: int, dtype):
    """exp(-2 pi i (ky dy_j + kx dx_j)) (BATCH, N, N) of ``dtype`` for offsets (BATCH, 2) (separable: two (BATCH,
    N) factors and one outer product). The last batch's ramps are kept: the model, the position step and the
    probe's adjoint of one batch all shift by the same ``offsets`` array (the batch model's ``weights``, which
    nothing changes in place: recognised by identity), and the outer product costs as much as a quarter of an FFT
    of the batch."""
    key = (n, np.dtype(dtype))
    if _RAMPS.get("offsets") is offsets and _RAMPS["key"] == key:
        return _RAMPS["ramps"]
    xp = array_module(offsets)
    k = xp.fft.fftfreq(n).astype(offsets.dtype)
    ry = xp.exp((-2j * np.pi) * (offsets[:, 0, None] * k)).astype(dtype)
    rx = xp.exp((-2j * np.pi) * (offsets[:, 1, None] * k)).astype(dtype)
    ramps = ry[:, :, None] * rx[:, None, :]
    _RAMPS.update(key=key, offsets=offsets, ramps=ramps)
    return ramps


_RAMPS: dict = {}
_SPECTRUM: dict = {}
"""F[h] of the last :meth:`Fourier.grad_inner`, taken (once) by :meth:`Fourier.adj` when it is given the same ``h``
object: recognised by identity, as the ramps are; the array is made once per batch and not changed in place."""


class Bilinear:
    """Sub-pixel shift of the probe by bilinear interpolation of its four whole-pixel shifts: one GEMM per batch,
    the cost of a copy; it blurs the probe by up to half a pixel, which position correction would read as a
    position error. ``weights``: (POSI, 4), from the offsets of :func:`split_scan`."""

    name = "bilinear"

    @staticmethod
    def weights(frac):
        """(POSI, 4) bilinear weights of the fractional offsets ``frac`` (POSI, 2)."""
        xp = array_module(frac)
        dy, dx = frac.T
        return xp.stack([(1 - dy) * (1 - dx), dy * (1 - dx), (1 - dy) * dx, dy * dx], axis=1)

    prepare = staticmethod(lambda probe: probe_stack(probe))
    fwd = staticmethod(lambda prepared, weights: shifted_probes(prepared, weights))
    adj = staticmethod(lambda g, weights: shifted_probes_adjoint(g, weights))
    adj_weight = adj
    """The adjoint for a real, non-negative weight map (a denominator): the same."""

    @staticmethod
    def grad(prepared, weights):
        """d P_j / d d_j: (2, BATCH, MODES, N, N), rows then columns (the bilinear weights' derivatives; valid for
        weights made from an offset, see :meth:`weights`)."""
        xp = array_module(weights)
        w00, w10, w01, w11 = weights.T  # (1-dy)(1-dx), dy(1-dx), (1-dy)dx, dy dx
        one_dx, one_dy = w00 + w10, w00 + w01  # 1 - dx, 1 - dy
        dx, dy = w01 + w11, w10 + w11
        d_rows = xp.stack([-one_dx, one_dx, -dx, dx], axis=1)
        d_cols = xp.stack([-one_dy, -dy, one_dy, dy], axis=1)
        return xp.stack([shifted_probes(prepared, d_rows), shifted_probes(prepared, d_cols)])

    @staticmethod
    def grad_inner(prepared, weights, h):
        """Re sum_k <dP_jk / d d_j, h_jk> for each position: (2, BATCH) real, rows then columns; ``h`` (BATCH,
        MODES, N, N)."""
        return inner(Bilinear.grad(prepared, weights), h, 3).astype(h.real.dtype)


class Fourier:
    """Exact (band-limited, periodic) sub-pixel shift of the probe: P_j = F^-1[F[P] R_j], R_j the phase ramp of the
    fractional offset d_j; adjoint sum_j F^-1[conj(R_j) F[g_j]]. One FFT more per batch in each direction than
    :class:`Bilinear`, and no blur, so a position can be fitted to a small fraction of a pixel.
    ``weights``: the fractional offsets themselves (POSI, 2)."""

    name = "fourier"

    @staticmethod
    def weights(frac):
        return frac

    @staticmethod
    def prepare(probe):
        """F[P] (MODES, N, N)."""
        return fft2(probe)

    @staticmethod
    def fwd(prepared, offsets):
        """(BATCH, MODES, N, N) shifted probes P(r - d_j)."""
        ramps = _ramps(offsets, prepared.shape[-1], prepared.dtype)
        return ifft2(prepared[None] * ramps[:, None])

    @staticmethod
    def grad(prepared, offsets):
        """d P_j / d d_j: (2, BATCH, MODES, N, N), rows then columns: F^-1[F[P] R_j (-2 pi i k)]."""
        xp = array_module(prepared)
        n = prepared.shape[-1]
        k = (-2j * np.pi * xp.fft.fftfreq(n)).astype(prepared.dtype)
        shifted = prepared[None] * _ramps(offsets, n, prepared.dtype)[:, None]
        return xp.stack([ifft2(shifted * k[:, None]), ifft2(shifted * k[None, :])])

    @staticmethod
    def grad_inner(prepared, offsets, h):
        """Re sum_k <dP_jk / d d_j, h_jk>: (2, BATCH) real, rows then columns, computed in Fourier space (the FFT
        is unitary): dF[P_j]/dd = F[P] R_j (-2 pi i k), so the inner product is -2 pi sum k Im(conj(F[P_j]) F[h_j]):
        one FFT of ``h`` instead of two inverse FFTs of the derivatives. F[h] is kept for :meth:`adj` of the same
        ``h`` (the position step and the probe update of a batch transform the same conj(O_j) chi_j)."""
        xp = array_module(prepared)
        n = prepared.shape[-1]
        spectrum = fft2(h)
        _SPECTRUM.update(of=h, spectrum=spectrum)
        cross = (prepared[None] * _ramps(offsets, n, prepared.dtype)[:, None]).conj() * spectrum
        im = cross.imag.sum(axis=1)  # (BATCH, N, N)
        k = (-2 * np.pi * xp.fft.fftfreq(n)).astype(im.dtype)
        return xp.stack([im.sum(axis=2) @ k, im.sum(axis=1) @ k])

    @staticmethod
    def adj_weight(g, offsets):
        """sum_j S_j^T g_j for a real, non-negative weight map ``g`` (BATCH, ..., N, N) (the probe's denominator,
        sum_j |O_j|^2 moved onto the probe's frame, or the OPR modes' weighted ones), by bilinear interpolation: a
        preconditioner needs no exact shift, this one stays non-negative (an exact shift of a sharp image rings
        below zero) and costs a GEMM where the exact one costs an FFT of the batch."""
        return shifted_probes_adjoint(g, Bilinear.weights(offsets))

    @staticmethod
    def adj(g, offsets):
        """sum_j S_j^H g_j (MODES, N, N); real when ``g`` is real (a sum of shifted real images)."""
        xp = array_module(g)
        cdtype = xp.result_type(g.dtype, xp.complex64)
        ramps = _ramps(offsets, g.shape[-1], cdtype)
        of, kept = _SPECTRUM.pop("of", None), _SPECTRUM.pop("spectrum", None)
        spectrum = kept if of is g else fft2(g.astype(cdtype, copy=False))
        out = ifft2((spectrum * ramps.conj()[:, None]).sum(axis=0))
        return out.real if not xp.iscomplexobj(g) else out


SHIFTS = {"bilinear": Bilinear, "fourier": Fourier}


def fourier_shift(a, shift):
    """Exact (band-limited, periodic) shift of the last two axes: ``out(r) = a(r - shift)``.

    a : (..., N, N) complex; shift : (2,) float pixels, rows first.
    """
    xp = array_module(a)
    ny, nx = a.shape[-2:]
    ky = xp.fft.fftfreq(ny)[:, None]
    kx = xp.fft.fftfreq(nx)[None, :]
    ramp = xp.exp(-2j * xp.pi * (ky * shift[0] + kx * shift[1])).astype(a.dtype)
    return xp.fft.ifft2(xp.fft.fft2(a) * ramp)


# --- object patches --------------------------------------------------------------------------------------------

def extract(obj, corner, n):
    """Object patches under each probe window.

    obj : (H, W) complex, or (S, H, W) slices; corner : (BATCH, 2) int (top-left, inside ``obj``) ->
    (BATCH, N, N), or (BATCH, S, N, N); a copy.
    """
    xp = array_module(obj)
    if obj.ndim == 3:
        return xp.stack([extract(o, corner, n) for o in obj], axis=1)
    h, w = obj.shape
    windows = xp.lib.stride_tricks.as_strided(obj, (h - n + 1, w - n + 1, n, n), obj.strides * 2)
    return windows[corner[:, 0], corner[:, 1]]


def scatter_add(obj, corner, patches):
    """Adjoint of :func:`extract`: add each patch into ``obj`` at its window, in place; overlaps add up.

    obj : (H, W); corner : (BATCH, 2) int, host (NumPy) array; patches : (BATCH, N, N).

    NumPy: one slice-add per position, which measured 16x faster than ``np.add.at`` and 8x faster than two
    ``bincount`` calls over the batch (16 windows of 128^2 into 512^2, complex64: 0.15 / 2.45 / 1.23 ms,
    scripts/bench_threads.py). CuPy:
    one scatter-add kernel for the whole batch (``cupyx.scatter_add`` of the real and imaginary parts), instead of
    two kernel launches per position.
    """
    xp = array_module(obj)
    n = patches.shape[-1]
    if obj.ndim == 3:  # slices (S, H, W), patches (BATCH, S, N, N)
        for o, p in zip(obj, xp.moveaxis(patches, 1, 0)):
            scatter_add(o, corner, p)
        return
    if xp is np:
        for (y, x), p in zip(np.asarray(corner).tolist(), patches):
            obj[y:y + n, x:x + n] += p
        return
    import cupyx

    c = xp.asarray(corner)
    rows = c[:, 0, None, None] + xp.arange(n)[:, None]
    cols = c[:, 1, None, None] + xp.arange(n)[None, :]
    if xp.iscomplexobj(obj):
        flat = obj.view(obj.real.dtype).reshape(obj.shape + (2,))  # (H, W, 2): real, imaginary
        cupyx.scatter_add(flat, (rows, cols, 0), patches.real)
        cupyx.scatter_add(flat, (rows, cols, 1), patches.imag)
    else:
        cupyx.scatter_add(obj, (rows, cols), patches)


# --- propagation to the detector ------------------------------------------------------------------------------

class FarField:
    """Det of the far field: Psi = FFT2(psi) (unitary, zero frequency at [0, 0]); adjoint = inverse."""

    @staticmethod
    def at(offsets):
        """Det of positions with these fractional offsets: the same (a far field does not see where in the window
        the exit wave sits: a translation is a phase ramp there)."""
        return FarField

    @staticmethod
    def fwd(psi):
        return fft2(psi)

    @staticmethod
    def adj(psi):
        return ifft2(psi)

    @staticmethod
    def initial_probe(mean_pattern):
        """(1, N, N) complex64: the probe whose far-field amplitude is ``mean_pattern`` ** 0.5, centred."""
        return np.fft.fftshift(np.fft.ifft2(np.sqrt(mean_pattern), norm="ortho"))[None].astype(np.complex64)


def unresolved_width(wavelength: float, spacing: float, pixel: float) -> float:
    """The width sigma (pixels) of :func:`share_unresolved`'s blur: 1 / pi of the Fresnel length sqrt(pi lambda
    dz), so that its cut-off (the Gaussian's sigma in frequency, 1 / (2 pi sigma)) is half the frequency whose
    Fresnel phase over one spacing dz is 1 radian."""
    return float(np.sqrt(np.pi * wavelength * spacing) / pixel / np.pi)


def share_unresolved(obj, width: float, strength: float = 1.0):
    """Multislice regularisation: the lateral frequencies that propagation over one slice spacing hardly
    changes, shared equally by the slices.

    obj : (S, H, W) slices; ``width`` (pixels, :func:`unresolved_width`). A frequency q whose Fresnel phase
    pi lambda dz |q|^2 over one spacing dz is small reaches the exit wave the same whichever slice holds it, so
    the data cannot tell the slices' shares of it apart and, left free, they drift apart (one slice gains what
    the other loses; the product stays). Each slice's deviation from the slices' mean loses its low-pass part (a
    Gaussian blur of ``width``), times ``strength`` (1: those frequencies become the mean's, as the missing-cone
    regularisation of Tsai et al. (2016) and PtychoShelves' layer regularisation make them; less: a pull towards
    it, once per epoch, that the data can resist where they do tell the slices apart). The blur is separable, truncated at
    ``ceil(4 width)`` pixels and zero outside ``obj``: a point at least that far inside a tile gets the value the
    whole object gives it, bit for bit. ``obj`` is changed in place (and returned).
    """
    reach = int(np.ceil(4 * width))
    x = np.arange(-reach, reach + 1)
    kernel = np.exp(-0.5 * (x / max(width, 1e-12)) ** 2)
    kernel = (kernel / kernel.sum()).tolist()
    mean = obj.mean(axis=0)
    for layer in obj:  # one slice at a time, in place: a few slice-sized temporaries, not the whole stack's
        low = _blur_rows(_blur_rows(layer - mean, kernel).T, kernel).T
        low *= strength
        layer -= low
    return obj


def _blur_rows(a, kernel: list, strip: int = 256):
    """``a`` (H, W) convolved along its first axis with ``kernel`` (odd length, centred), zero outside ``a``: each
    output row the taps' weighted rows added in tap order (the same sum for a point wherever ``a`` is cut). Works
    in strips of ``strip`` columns, so a tap's weighted rows are a strip-sized temporary, not a copy of ``a``."""
    xp = array_module(a)
    reach, h = len(kernel) // 2, a.shape[0]
    out = xp.zeros_like(a)
    for c in range(0, a.shape[1], strip):
        cols = slice(c, c + strip)
        for i, w in enumerate(kernel):
            shift = i - reach  # out[y] += w a[y + shift]
            lo, hi = max(0, -shift), min(h, h - shift)
            if lo < hi:
                out[lo:hi, cols] += w * a[lo + shift:hi + shift, cols]
    return out


class AngularSpectrum:
    """Det of the near field: free-space propagation over ``distance`` metres by the angular spectrum,
    Psi = F^-1[H F[psi]], H(f) = exp(2 pi i z (sqrt(1/lambda^2 - |f|^2) - 1/lambda)), f the spatial frequencies of
    the ``pixel`` (metres) grid (the plane wave's own phase 2 pi z / lambda is left out: a constant). No paraxial
    approximation; frequencies beyond 1/lambda (evanescent) would be dropped, which never happens for X-rays
    sampled coarser than lambda / 2. Unitary (|H| = 1), so the adjoint is the inverse: F^-1[conj(H) F[.]]. In a
    cone beam the caller passes the Fresnel-scaled distance and pixel (:func:`fresnel_scaling`).

    n : window side N; pixel : sample-plane pixel (m); wavelength (m); distance z (m, negative: backwards).
    """

    def __init__(self, n: int, pixel: float, wavelength: float, distance: float):
        self.n, self.pixel, self.wavelength, self.distance = n, pixel, wavelength, distance
        f = np.fft.fftfreq(n, d=pixel)
        f2 = f[:, None] ** 2 + f[None, :] ** 2
        k = 1.0 / wavelength
        root = np.sqrt(np.maximum(k * k - f2, 0.0))
        # 2 pi z (sqrt(k^2 - f^2) - k) = -2 pi z f^2 / (sqrt(k^2 - f^2) + k): no cancellation of two huge numbers
        kernel = np.exp(-2j * np.pi * distance * f2 / (root + k))
        kernel[f2 >= k * k] = 0
        self._host = kernel
        self._on = {}

    def kernel(self, xp, dtype):
        """H on ``xp`` in ``dtype`` (made once per array module and type)."""
        key = (xp.__name__, np.dtype(dtype).str)
        if key not in self._on:
            self._on[key] = xp.asarray(self._host.astype(dtype))
        return self._on[key]

    def fwd(self, psi):
        return ifft2(fft2(psi) * self.kernel(array_module(psi), psi.dtype))

    def adj(self, psi):
        return ifft2(fft2(psi) * self.kernel(array_module(psi), psi.dtype).conj())

    def at(self, offsets):
        """Det_j of the positions whose fractional offsets (the probe's sub-pixel shifts d_j) are ``offsets``
        (BATCH, 2): propagation of the exit wave translated back by -d_j, Psi_j = F^-1[H conj(R_j) F[psi_j]].

        The algorithms form psi_j = P(r - d_j) O(r + n_j), which is the true exit wave P(r) O(r + n_j + d_j) (the
        beam is fixed on the detector, the sample moves) translated by d_j. In the far field that translation is
        a phase ramp the intensity does not see; in the near field it would move the image by d_j pixels, so it
        is undone here, in the same Fourier-space product as the propagation."""
        return _Positioned(self, offsets)

    def initial_probe(self, mean_pattern):
        """(1, N, N) complex64: the mean measured amplitude (a flat-phase wave on the detector) propagated back to
        the sample: what the probe would be if the sample were transparent."""
        return self.adj(np.sqrt(mean_pattern).astype(np.complex128))[None].astype(np.complex64)


class _Positioned:
    """:meth:`AngularSpectrum.at`: fwd and adj of one batch, (BATCH, MODES, N, N) -> (BATCH, MODES, N, N)."""

    def __init__(self, prop: AngularSpectrum, offsets):
        xp = array_module(offsets)
        cdtype = xp.result_type(offsets.dtype, xp.complex64)
        self.kernel = (prop.kernel(xp, cdtype)[None] * _ramps(offsets, prop.n, cdtype).conj())[:, None]

    def fwd(self, psi):
        return ifft2(fft2(psi) * self.kernel)

    def adj(self, psi):
        return ifft2(fft2(psi) * self.kernel.conj())


def fresnel_scaling(detector_pixel: float, distance: float, focus_distance: float = 0.0):
    """The equivalent parallel-beam geometry of a cone beam (the Fresnel scaling theorem): with the sample
    ``focus_distance`` z1 downstream of the focus and the detector ``distance`` z2 downstream of the sample, the
    magnification is M = (z1 + z2) / z1, the sample-plane pixel detector_pixel / M and the propagation distance
    z1 z2 / (z1 + z2). ``focus_distance`` 0: a parallel beam (M = 1). Returns (pixel, distance, M)."""
    if not focus_distance:
        return detector_pixel, distance, 1.0
    m = (focus_distance + distance) / focus_distance
    return detector_pixel / m, distance / m, m


# --- detector intensities ------------------------------------------------------------------------------------

def sum_modes(x):
    """Sum over the MODES axis (axis 1); a view, not a copy, when there is one mode."""
    return x[:, 0] if x.shape[1] == 1 else x.sum(axis=1)


def abs2(x):
    """|x|^2 of a complex array, real: the modulus squared in place (two passes and one temporary, where re^2 + im^2
    takes three and two; the batch loop's elementwise passes are what it costs on a CPU besides the FFTs)."""
    r = abs(x)
    r *= r
    return r


def inner(a, b, dims: int):
    """Re sum conj(a) b over the last ``dims`` axes: ``a`` and ``b`` complex of one type whose leading axes
    broadcast (e.g. (2, BATCH, ...) against (BATCH, ...)) -> their broadcast leading shape, float64. One dot product
    of the two real views per leading index (a batched matrix product: BLAS or cuBLAS, summing in the working
    precision in blocks), where conj, product and a float64 sum made three passes and a copy (4x the time on the
    CPU; the terms agree to 2e-7 of the largest)."""
    xp = array_module(a)
    lead = np.broadcast_shapes(a.shape[:a.ndim - dims], b.shape[:b.ndim - dims])
    if not a.size or not b.size:
        return xp.zeros(lead, dtype=xp.float64)
    real = a.real.dtype
    rows = xp.ascontiguousarray(a).view(real).reshape(a.shape[:a.ndim - dims] + (1, -1))
    cols = xp.ascontiguousarray(b).view(real).reshape(b.shape[:b.ndim - dims] + (-1, 1))
    return (rows @ cols)[..., 0, 0].astype(xp.float64)


def intensity(farfield):
    """Detector intensity summed over incoherent modes: (BATCH, MODES, N, N) complex -> (BATCH, N, N) real."""
    return sum_modes(abs2(farfield))


RATIO_FLOOR = float(__import__("os").environ.get("PTYHPC_RATIO_FLOOR", "1e-3"))
"""Predicted intensities below this fraction of the pattern's mean measured intensity are raised to it in the
modulus projection. Where the model's far field is essentially zero (outside the optics' aperture) the phase of
Psi is float-rounding noise; without a floor a stray photon there multiplies that noise by up to 1e5, which
makes the result depend on rounding (batch composition, rank count). The floor depends on the pattern only."""


def valid(x, mask, fill):
    """``x`` where ``mask`` (valid pixels) is True, ``fill`` elsewhere; ``x`` itself when ``mask`` is None (every
    pixel valid: no pass over the batch)."""
    return x if mask is None else array_module(x).where(mask, x, fill)


def modulus_ratio(predicted, measured, mask):
    """Factor that replaces the far-field amplitude by the measured one on valid pixels (1 on masked ones).

    predicted, measured : (BATCH, N, N) intensities; mask : (N, N) or (BATCH, N, N) bool, True = valid, or None
    (all valid) -> (BATCH, N, N) real.
    """
    xp = array_module(predicted)
    floor = RATIO_FLOOR * measured.mean(axis=(1, 2), keepdims=True) + 1e-30
    ratio = xp.sqrt(measured / xp.maximum(predicted, floor))
    return valid(ratio, mask, 1).astype(predicted.dtype, copy=False)


def fit_amplitude(predicted, measured, mask, per_pattern: bool = False):
    """Gaussian misfit and modulus ratio at once (they share the square roots): returns
    (sum of mask |sqrt(I) - sqrt(d)|^2 — over everything, or per pattern (BATCH,) — and the ratio of
    :func:`modulus_ratio`). Works in two batch-sized buffers (six passes over the batch when every pixel is
    valid), the cost of the loop's elementwise work being what it is on a CPU."""
    xp = array_module(predicted)
    a = xp.sqrt(predicted)
    s = xp.sqrt(measured)
    d = a - s
    if mask is not None:
        d *= mask
    if per_pattern:
        misfit = (d * d).sum(axis=(-2, -1))
    else:
        flat = d.reshape(-1)
        misfit = xp.dot(flat, flat)  # one pass, no squared copy
    floor = xp.sqrt(RATIO_FLOOR * measured.mean(axis=(1, 2), keepdims=True) + 1e-30)
    xp.maximum(a, floor.astype(a.dtype), out=a)
    xp.divide(s, a, out=s)
    return misfit, valid(s, mask, 1).astype(predicted.dtype, copy=False)


def modulus_factor(predicted, measured, mask, noise: str = "gaussian"):
    """The misfit (:func:`cost`) and the factor ``ratio - 1`` (BATCH, N, N) real that turns the far field Psi into
    the change Psi' - Psi of the modulus projection (:func:`modulus_ratio`)."""
    if noise == "gaussian":  # the misfit and the ratio share their square roots
        misfit, ratio = fit_amplitude(predicted, measured, mask)
    else:
        misfit, ratio = cost(predicted, measured, mask, noise), modulus_ratio(predicted, measured, mask)
    ratio -= 1
    return misfit, ratio


def cost(predicted, measured, mask, noise: str = "gaussian"):
    """Data misfit summed over the batch (a 0-d array of ``xp``).

    'gaussian': amplitude least squares  sum |sqrt(I) - sqrt(d)|^2;
    'poisson':  deviance  sum I - d + d log(d / I)  (zero for a perfect fit, >= 0).
    Only valid pixels (mask True; None: all) count.
    """
    xp = array_module(predicted)
    if noise == "gaussian":
        r = (xp.sqrt(predicted) - xp.sqrt(measured)) ** 2
    elif noise == "poisson":
        p = xp.maximum(predicted, 1e-9)
        d = measured
        r = p - d + xp.where(d > 0, d * xp.log(xp.maximum(d, 1e-30) / p), 0)
    else:
        raise ValueError(f"noise model must be 'gaussian' or 'poisson', not {noise!r}")
    return (r if mask is None else r * mask).sum()


# --- probe constraints -----------------------------------------------------------------------------------------

def orthogonalize_modes(probe):
    """Orthogonalise incoherent probe modes and sort them by power, strongest first.

    Diagonalises the MODES x MODES Gram matrix: the returned modes span the same space and describe the same
    mutual intensity sum_k P_k P_k^*, so the modelled intensities do not change.
    probe : (MODES, N, N) -> (MODES, N, N).
    """
    xp = array_module(probe)
    k = probe.shape[0]
    if k == 1:
        return probe
    flat = probe.reshape(k, -1)
    gram = flat.conj() @ flat.T
    _, vectors = xp.linalg.eigh(gram)  # ascending eigenvalues
    vectors = vectors[:, ::-1]
    return (vectors.T @ flat).reshape(probe.shape).astype(probe.dtype)


def probe_power(probe):
    """Total power sum_k ||P_k||^2 (a float)."""
    return float((probe.real ** 2 + probe.imag ** 2).sum())
