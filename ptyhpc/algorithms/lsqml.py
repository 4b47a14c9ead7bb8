"""Least-squares maximum-likelihood ptychography (Odstrcil, Menzel & Guizar-Sicairos, Opt. Express 26, 3108, 2018).

For a batch of positions j (the same batches on every rank; each rank takes its members):

1. far-field step: chi_j = psi'_j - psi_j, with psi' the maximum-likelihood update of the exit wave
   (Gaussian: modulus replacement, Eq. 14; Poisson: Psi (1 - a_j (1 - d / I)), a_j by Newton steps, Eq. 17);
2. update directions (Eq. 24, 25), sums over positions then divided:
       dO = sum_j P_j^* chi_j / (sum_j |P_j|^2 + delta_O),  dP = sum_j S_j^T(O_j^* chi_j) / (sum_j S_j^T|O_j|^2 + delta_P)
3. per-position optimal steps (a_Oj, a_Pj) minimising ||chi_j - a_Oj dO_j P_j - a_Pj O_j dP_j||^2 (Eq. 22, 23),
   a 2x2 least-squares system per position, regularised by half its batch mean;
4. O += beta * mean_j a_Oj * dO,  P += beta * mean_j a_Pj * dP  (Eq. 27 with the batch-mean step).

Three collectives per batch: the object sums are completed with the neighbouring tiles; the probe sums and the
global maximum of the object denominator travel in one all-reduce; the terms of every position's 2x2 system are
gathered whole (with OPR, a fourth: the variable modes' sums; see ptyhpc.opr, which takes the probe's step a_P for
them). Position steps (ptyhpc.positions) come from the same chi, before the object moves. Sums are accumulated in the working precision (single by default): R ranks give the one-rank
answer up to its rounding, which LSQML does not amplify (tests/test_spmd_mpi.py holds R in {2, 3, 4} to 1e-5 after
ten epochs). Double-precision sums would make the two bitwise equal at twice the halo and all-reduce bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from .. import opr, physics
from ..backend import array_module, asnumpy
from .common import (batch_model, clip_amplitude, complete_object_sums, object_sums, probe_sums,
                     record_position_steps, residual, through_slices)

BATCHES = "global"
CHECKPOINT = ()
NEWTON_STEPS = 3
POISSON_FLOOR = 0.5
"""Photons: in the Poisson step, predicted intensities below half a photon are raised to it, so that dark pixels
far outside the beam, where one stray count makes 1 - d / I enormous, do not stall the step (data in counts)."""


@dataclass
class LSQMLState:
    steps: list
    """Mean object and probe step of every batch of the last epoch, [(a_O, a_P), ...] (for logs)."""


def init(state, comm, cfg, saved=None) -> LSQMLState:
    return LSQMLState(steps=[])


def farfield_factor(predicted, measured, mask, noise):
    """The batch's misfit (``physics.cost``) and the factor f (BATCH, N, N) real with Psi' - Psi = f Psi: the
    modulus projection's (Gaussian), or the Poisson step's (``common.residual`` applies it)."""
    if noise == "gaussian":
        return physics.modulus_factor(predicted, measured, mask)
    xp = array_module(predicted)
    misfit = physics.cost(predicted, measured, mask, noise)
    # Poisson: Psi' = Psi (1 - a w), w = 1 - d / I; a minimises sum I (1-aw)^2 - d log(I (1-aw)^2)
    i = xp.maximum(predicted, POISSON_FLOOR)
    w = physics.valid(1 - measured / i, mask, 0)
    a = xp.zeros((len(i), 1, 1), dtype=i.dtype)
    for _ in range(NEWTON_STEPS):
        s = 1 - a * w
        s = xp.where(abs(s) < 1e-3, 1e-3, s)
        grad = (-2 * i * w * s + 2 * measured * w / s).sum(axis=(1, 2), keepdims=True)
        hess = (2 * i * w ** 2 + 2 * measured * w ** 2 / s ** 2).sum(axis=(1, 2), keepdims=True)
        a = xp.clip(a - grad / (hess + 1e-30), 0, 1)
    return misfit, -a * w


def directions(state, comm, m, probes, patches, chi, delta: float, probe: bool = True, backprojected=None):
    """Eq. 24-25: object direction on the tile (H, W) and probe direction (MODES, N, N) (None without ``probe``),
    for the batch model ``m`` (its corners and shift weights); delta_O and delta_P = ``delta`` times the global
    maximum of each denominator; ``backprojected`` as for :func:`common.probe_sums`. Multislice: ``probes`` is the
    wave incident on one slice, ``chi`` the residual leaving it."""
    o_num, o_den = complete_object_sums(comm, *object_sums(state.obj.shape[-2:], m.corner, probes, chi, state.xp))
    if not probe:
        return _divide(o_num, o_den, comm.allreduce(o_den.max(), op="max"), state.obj.dtype, delta), None
    # the probe sums and the global maximum of the object denominator travel in one collective
    sums = probe_sums(state.shift, m.weights, patches, chi, backprojected=backprojected)
    p_num, p_den, o_max = comm.allreduce_many([*sums, o_den.max()], op=("sum", "sum", "max"))
    d_obj = _divide(o_num, o_den, o_max, state.obj.dtype, delta)
    return d_obj, _divide(p_num, p_den, p_den.max(), state.probe.dtype, delta)


def _divide(num, den, peak, dtype, delta):
    """num / (den + delta peak) in ``dtype``, as one reciprocal and one multiply (a complex division by a real
    array costs twice as much here), written over ``num`` and ``den`` (a caller's sums, not needed after: no
    tile-sized temporaries) when ``num`` has that type. ``peak``: a 0-d array of ``den``'s type, left on the
    device."""
    xp = array_module(num)
    den += peak * delta + 1e-30
    xp.reciprocal(den, out=den)
    out = num if num.dtype == dtype else xp.empty(num.shape, dtype=dtype)
    xp.multiply(num, den, out=out, casting="same_kind")
    return out


def step_sizes(comm, chi, d_op, d_po):
    """Eq. 22-23: per-position optimal steps; returns their means over the global batch (a_O, a_P).

    The five terms of each position's 2x2 system are gathered from all ranks (one collective), so every rank
    solves the same systems for the whole batch. ``d_po`` None (probe fixed) reduces each to the object step.
    """
    xp = array_module(chi)
    terms = [physics.inner(d_op, d_op, 3), physics.inner(d_op, chi, 3)]
    if d_po is not None:
        terms += [physics.inner(d_po, d_po, 3), physics.inner(d_op, d_po, 3), physics.inner(d_po, chi, 3)]
    a11, b1, *probe_terms = np.concatenate(comm.allgather(asnumpy(xp.stack(terms))), axis=1)
    if a11.size == 0:
        return 0.0, 0.0
    a11 = a11 + 0.5 * a11.mean()
    if d_po is None:
        return float((b1 / a11).mean()), 0.0
    a22, a12, b2 = probe_terms
    a22 = a22 + 0.5 * a22.mean()
    det = a11 * a22 - a12 ** 2
    a_o = (a22 * b1 - a12 * b2) / det
    a_p = (a11 * b2 - a12 * b1) / det
    return float(a_o.mean()), float(a_p.mean())


def joint_steps(comm, chi, changes):
    """Multislice: the per-position optimal steps of K directions at once (Eq. 22-23 with K unknowns): ``changes``
    K arrays (BATCH, MODES, N, N), the change of the exit wave each direction makes; minimises ||chi - sum_k a_k
    d_k||^2 per position, each diagonal regularised by half its batch mean as in :func:`step_sizes`. The K (K +
    3) / 2 terms of every position travel in one all-gather; returns the K batch-mean steps."""
    xp = array_module(chi)
    k = len(changes)
    pairs = [(i, j) for i in range(k) for j in range(i, k)]
    terms = [physics.inner(changes[i], changes[j], 3) for i, j in pairs] + [physics.inner(d, chi, 3) for d in changes]
    gathered = np.concatenate(comm.allgather(asnumpy(xp.stack(terms))), axis=1)
    if gathered.shape[1] == 0:
        return [0.0] * k
    a = np.zeros((gathered.shape[1], k, k))
    for (i, j), t in zip(pairs, gathered):
        a[:, i, j] = a[:, j, i] = t
    a[:, range(k), range(k)] += 0.5 * a[:, range(k), range(k)].mean(axis=0)
    steps = np.linalg.solve(a, gathered[len(pairs):].T[:, :, None])[:, :, 0]
    return steps.mean(axis=0).tolist()


def multislice_batch(state, comm, cfg, m, chi, update_probe):
    """One batch of multislice LSQML: a direction for every slice (from the residual carried back to it,
    common.through_slices) and for the probe, each direction's change of the exit wave carried forward through
    the slices after it, all steps solved jointly per position (:func:`joint_steps`: the slices would otherwise
    each take the whole residual and overshoot). Returns the mean (a_O of the last slice, a_P)."""
    xp, n, last = state.xp, state.n, len(m.incident) - 1
    corner = xp.asarray(m.corner)
    found, changes = [], []
    for s, incident, patches, chi_s in through_slices(state, m, chi):
        first = s == 0
        d_obj, d_probe = directions(state, comm, m, incident, patches, chi_s, cfg.delta, probe=first)
        change = incident * physics.extract(d_obj, corner, n)[:, None]
        moves = [(s, d_obj, change)]
        if first and update_probe:
            moves.append((None, d_probe, patches[:, None] * state.shift.fwd(state.shift.prepare(d_probe), m.weights)))
        for which, direction, change in moves:
            for k in range(s + 1, last + 1):  # on to the exit wave through the later slices
                change = state.slice_prop.fwd(change) * m.patches[:, k, None]
            found.append((which, direction))
            changes.append(change)
    steps = joint_steps(comm, chi, changes)
    a_p = 0.0
    for (which, direction), a in zip(found, steps):
        if which is None:
            a_p = a
            state.probe = state.probe + cfg.lsqml_beta * a * direction
        else:
            direction *= cfg.lsqml_beta * a
            direction += state.obj[which]
            state.obj[which] = clip_amplitude(direction, cfg.object_clip)
    return steps[0], a_p


def iterate(state, astate, comm, cfg, batches, update_probe=True, update_opr=False):
    """One epoch over the global ``batches`` (this rank's members of each, in local indices), the probe too with
    ``update_probe`` and the variable modes and their weights with ``update_opr``."""
    xp = state.xp
    total = 0.0
    astate.steps = []
    for b in batches:
        stack = state.prepared()
        m = batch_model(state, stack, b, farfield=False)
        corner, weights, probes, patches = m.corner, m.weights, m.probes, m.patches
        misfit, chi = residual(state, m, b, partial(farfield_factor, noise=cfg.noise))
        total = total + misfit
        if m.incident is not None:
            astate.steps.append(multislice_batch(state, comm, cfg, m, chi, update_probe))
            continue
        backprojected = record_position_steps(state, stack, m, b, chi)  # None without correction
        d_obj, d_probe = directions(state, comm, m, probes, patches, chi, cfg.delta, backprojected=backprojected)
        d_op = probes * physics.extract(d_obj, xp.asarray(corner), state.n)[:, None]
        d_po = patches[:, None] * state.shift.fwd(state.shift.prepare(d_probe), weights) if update_probe else None
        a_o, a_p = step_sizes(comm, chi, d_op, d_po)
        astate.steps.append((a_o, a_p))
        if update_opr:
            num, den = comm.allreduce_many(list(opr.mode_sums(state.shift, weights, patches, chi[:, 0],
                                                              state.opr_weights[b.device])))
            state.opr_weights[b.device] += cfg.lsqml_beta * opr.weight_step(m.variable, patches, chi[:, 0])
            state.opr = state.opr + (cfg.lsqml_beta * a_p) * _divide(num, den, den.max(), state.opr.dtype,
                                                                          cfg.delta)
        d_obj *= cfg.lsqml_beta * a_o  # in place: O + beta a_O dO without two tile-sized temporaries
        d_obj += state.obj
        state.obj = clip_amplitude(d_obj, cfg.object_clip)
        if update_probe:
            state.probe = state.probe + cfg.lsqml_beta * a_p * d_probe
    return total
