"""Pieces shared by the algorithms: the far-field model of one batch and the object/probe sums."""
from __future__ import annotations

from .. import physics
from ..backend import array_module


def batch_model(state, stack, b):
    """Forward model of the positions ``b`` (local indices, host int array).

    Returns (corner, weights, probes, patches, farfield, predicted):
    corner (BATCH, 2) host int; weights (BATCH, 4); probes P_j (BATCH, MODES, N, N); patches O_j (BATCH, N, N);
    farfield Psi (BATCH, MODES, N, N); predicted intensity (BATCH, N, N).
    """
    corner = state.corner[b]
    weights = state.weights[state.xp.asarray(b)]
    probes = physics.shifted_probes(stack, weights)
    patches = physics.extract(state.obj, state.xp.asarray(corner), state.n)
    farfield = physics.fft2(probes * patches[:, None])
    return corner, weights, probes, patches, farfield, physics.intensity(farfield)


def object_sums(shape, corner, probes, chi, xp):
    """Object numerator and denominator of this batch on the tile: (2, H, W) real view pair.

    numerator  sum_j sum_k conj(P_jk) chi_jk   (complex, placed at each window)
    denominator sum_j sum_k |P_jk|^2           (real)
    """
    num = xp.zeros(shape, dtype=chi.dtype)
    den = xp.zeros(shape, dtype=chi.real.dtype)
    physics.scatter_add(num, corner, (probes.conj() * chi).sum(axis=1))
    physics.scatter_add(den, corner, (probes.real ** 2 + probes.imag ** 2).sum(axis=1))
    return num, den


def probe_sums(weights, patches, chi):
    """Probe numerator sum_j S_j^T(conj(O_j) chi_j) (MODES, N, N) and denominator sum_j S_j^T |O_j|^2 (1, N, N)."""
    num = physics.shifted_probes_adjoint(patches.conj()[:, None] * chi, weights)
    den = physics.shifted_probes_adjoint((patches.real ** 2 + patches.imag ** 2)[:, None], weights)
    return num, den


def clip_amplitude(obj, limit: float):
    """Scale pixels whose amplitude exceeds ``limit`` back to it (no-op when limit <= 0)."""
    if limit <= 0:
        return obj
    xp = array_module(obj)
    return obj * (limit / xp.maximum(abs(obj), limit))
