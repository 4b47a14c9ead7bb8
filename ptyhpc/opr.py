"""Orthogonal probe relaxation (OPR): a probe that varies along the scan. Pure functions on arrays of ``xp``.

Odstrcil, Baksh, Boden, Card, Chad, Frey & Brocklesby, Opt. Express 24, 8360 (2016); in the LSQML form of
Odstrcil, Menzel & Guizar-Sicairos (2018). The dominant incoherent mode of position j is

    P_j0 = P_0 + sum_c w_jc V_c,   c = 1 .. C-1

with V_c (C-1, N, N) variable modes shared by all positions (sums over positions: all-reduced like the probe) and
w_jc (POSI, C-1) real weights, per position (each rank keeps its own). Per batch, from the exit-wave update chi:

    V_c += sum_j w_jc S_j^H(O_j^* chi_j0) / (sum_j w_jc^2 S_j^H |O_j|^2 + delta)     (the probe's step, weighted)
    w_jc += GAIN Re <S_j V_c O_j, chi_j0> / ((1 + DAMPING) ||S_j V_c O_j||^2)   (Gauss-Newton, per position)

and at the end of each epoch (:func:`recentre`) the mean weight of each mode is moved into P_0 (so that P_0 is
the scan's mean probe and the modes its variations) and each V_c is scaled to unit norm, its weights inversely:
the probe of every position is unchanged by both.
"""
from __future__ import annotations

import numpy as np

from . import physics
from .backend import array_module

DAMPING = 0.1
"""Of the weights' Gauss-Newton step, relative to its curvature (as in ptyhpc.positions)."""
WEIGHT_GAIN = 0.1
"""Multiplies the weights' step: the same chi also moves the object, the probe and the modes, so a full step
counts the residual several times over. On three independent small sets (scripts/bench_opr.py --seeds 0 7 11
--gains 0.05 0.1 0.2, benchmarks/opr_gains.json) 0.1 was the one gain with which OPR cost at most 1.05x on a
constant probe with both algorithms on every set (0.98-1.03x; 0.2 up to 1.12x, 0.05 up to 1.08x) while following a
varying one (0.39-0.44x the error without OPR; 0.2 0.42-0.48x); in development runs 0.5 and 1 overshot on a
constant probe (the object error more than doubled with LSQML). On the standard set (700 positions, 128 px probe;
scripts/bench_opr.py --standard) it cost LSQML 1.31x on a constant probe until the modes waited for
``ReconConfig.opr_start`` (1.02x from epoch 20 on that set, 1.20x on another seed: README, "A probe that varies
along the scan")."""


def initial_weights(indices: np.ndarray, count: int, modes: int) -> np.ndarray:
    """(POSI, modes) the starting weights of the global positions ``indices`` of a scan of ``count``: slow cosines
    of the scan time, 1e-2 in size (the same on any partition; a weight of zero would leave its mode's update zero)."""
    t = (np.asarray(indices, dtype=np.float64)[:, None] + 0.5) / max(count, 1)
    return 1e-2 * np.cos(np.pi * np.arange(1, modes + 1)[None, :] * t)


def initial_modes(probe, modes: int):
    """(modes, N, N): the first probe mode times low-order phase ramps, orthogonal to it and to each other, at a
    tenth of its norm."""
    xp = array_module(probe)
    n = probe.shape[-1]
    y, x = (xp.asarray(v) for v in np.mgrid[:n, :n] / n)
    out = []
    for c in range(1, modes + 1):
        v = probe[0] * xp.exp(2j * np.pi * ((c + 1) // 2 * x + c // 2 * y))
        for u in [probe[0], *out]:
            v = v - xp.vdot(u, v) / xp.vdot(u, u) * u
        out.append(v * (0.1 * xp.linalg.norm(probe[0]) / xp.linalg.norm(v)))
    return xp.stack(out).astype(probe.dtype)


def mode_sums(shift, weights, patches, chi0, w):
    """Numerator sum_j w_jc S_j^H(O_j^* chi_j0) and denominator sum_j w_jc^2 S_j^H |O_j|^2, each (C-1, N, N), of a
    batch: patches (BATCH, N, N), chi0 (BATCH, N, N) the exit-wave update of mode 0, w (BATCH, C-1)."""
    w = w.astype(patches.real.dtype)[:, :, None, None]
    g = (patches.conj() * chi0)[:, None] * w
    o2 = (patches.real ** 2 + patches.imag ** 2)[:, None] * w ** 2
    return shift.adj(g, weights), shift.adj_weight(o2, weights)


def weight_step(variable, patches, chi0):
    """(BATCH, C-1) the Gauss-Newton step of each position's weights: variable (BATCH, C-1, N, N) the shifted modes
    S_j V_c, patches (BATCH, N, N), chi0 (BATCH, N, N)."""
    a = variable * patches[:, None]
    num, den = physics.inner(a, chi0[:, None], 2), physics.inner(a, a, 2)
    return (WEIGHT_GAIN * num / (den * (1 + DAMPING) + 1e-30)).astype(variable.real.dtype)


def recentre(probe, modes, w, mean):
    """Move the mean weights ``mean`` (C-1,) (over all positions, from the caller's all-reduce) into the main probe
    and scale each mode to unit norm. Returns (probe (K, N, N), modes (C-1, N, N), w (POSI, C-1)): every
    position's P_0 + sum_c w_jc V_c is unchanged."""
    xp = array_module(modes)
    mean = xp.asarray(mean, dtype=modes.real.dtype)
    probe = probe.copy()
    probe[0] += (mean[:, None, None] * modes).sum(axis=0)
    norms = xp.sqrt((modes.real ** 2 + modes.imag ** 2).sum(axis=(1, 2)))
    norms = xp.where(norms > 0, norms, 1)
    return probe, modes / norms[:, None, None], (w - mean[None, :]) * norms[None, :].astype(w.dtype)
