"""Difference map (Thibault, Dierolf, Bunk, Menzel & Pfeiffer, Ultramicroscopy 109, 338, 2009).

Each rank keeps the exit waves psi_j of its own positions only. One iteration:

1. overlap projection (``dm_inner`` alternations), Eq. 9-10 of the paper:
       O = sum_j sum_k P_jk^* psi_jk / sum_j sum_k |P_jk|^2
       P = sum_j S_j^T(O_j^* psi_j) / sum_j S_j^T |O_j|^2
   the object sums are completed over neighbouring tiles (``accumulate``), the probe sums over all ranks;
2. psi_j <- psi_j + P_F(2 P_j O_j - psi_j) - P_j O_j, with P_F the far-field modulus projection.

Because every quantity is a sum over positions (accumulated in double precision) followed by a division, R ranks
give the one-rank answer up to float rounding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import physics
from ..state import batches_on
from .common import batch_model, clip_amplitude, complete_object_sums, object_sums, probe_sums

BATCHES = "local"
CHECKPOINT = ("psi",)
EPS = 1e-6
"""Regularisation of the divisions, relative to the global maximum of each denominator."""


@dataclass
class DMState:
    psi: object
    """(POSI, MODES, N, N) complex: this rank's exit waves."""


def init(state, comm, cfg, saved=None) -> DMState:
    """Exit waves P O of this rank's positions, or those of a checkpoint (``saved['psi']``, host array)."""
    xp = state.xp
    if saved is not None:
        return DMState(psi=xp.asarray(saved["psi"], dtype=state.probe.dtype))
    psi = xp.empty((len(state.indices),) + state.probe.shape, dtype=state.probe.dtype)
    stack = state.shift.prepare(state.probe)
    for b in batches_on(xp, [np.arange(i, min(i + cfg.batch, len(psi))) for i in range(0, len(psi), cfg.batch)]):
        m = batch_model(state, stack, b)
        psi[b.device] = m.probes * m.patches[:, None]
    return DMState(psi=psi)


def overlap_object(state, astate, comm, stack, chunks):
    """O = sum P^* psi / sum |P|^2 on the tile; pixels no position illuminates keep their value."""
    xp = state.xp
    num = xp.zeros(state.obj.shape, dtype=xp.complex128)
    den = xp.zeros(state.obj.shape, dtype=xp.float64)
    for b in chunks:
        probes = state.shift.fwd(stack, state.weights[b.device])
        n, d = object_sums(state.obj.shape, state.corner[b.host], probes, astate.psi[b.device], xp, wide=True)
        num += n
        den += d
    num, den = complete_object_sums(comm, num, den)
    reg = EPS * comm.allreduce(float(den.max()), op="max")
    obj = num / (den + reg)
    return xp.where(den > 0, obj, state.obj).astype(state.obj.dtype)


def overlap_probe(state, astate, comm, chunks):
    """P = sum S^T(O^* psi) / sum S^T |O|^2 over all positions of all ranks."""
    xp = state.xp
    num = xp.zeros(state.probe.shape, dtype=xp.complex128)
    den = xp.zeros((1,) + state.probe.shape[1:], dtype=xp.float64)
    for b in chunks:
        bx = b.device
        patches = physics.extract(state.obj, state.corner_xp[bx], state.n)
        n, d = probe_sums(state.shift, state.weights[bx], patches, astate.psi[bx], wide=True)
        num += n
        den += d
    num, den = comm.allreduce_many([num, den])
    return (num / (den + EPS * den.max())).astype(state.probe.dtype)


def exit_wave_update(state, astate, stack, b, cfg):
    """psi <- psi + P_F(2 P O - psi) - P O for the positions ``b``; returns their misfit (of P O)."""
    bx = b.device
    m = batch_model(state, stack, b)
    farfield, predicted = m.farfield, m.predicted
    measured, mask = state.patterns[bx], state.mask_of(bx)
    misfit = physics.cost(predicted, measured, mask, cfg.noise)
    psi = astate.psi[bx]
    reflected = 2 * farfield - m.det.fwd(psi)
    ratio = power_bound_ratio(physics.intensity(reflected), measured, mask, cfg.dm_power_bound)
    astate.psi[bx] = psi + m.det.adj(reflected * ratio[:, None] - farfield)
    return misfit


def power_bound_ratio(predicted, measured, mask, bound):
    """Relaxed modulus projection: the power bound of Thibault & Guizar-Sicairos (New J. Phys. 14, 063004, 2012).

    A pattern whose mean squared amplitude deviation err = <(sqrt(I) - sqrt(d))^2> over valid pixels is within
    ``bound`` times what Poisson noise alone gives, pbound = bound <d / (1 + 4 d)> (the variance of the square
    root of Poisson counts: d for faint pixels, 1/4 for bright ones), is left alone; otherwise its amplitudes move
    to sqrt(d) + (sqrt(I) - sqrt(d)) sqrt(pbound / err), onto the bound. ``bound`` = 0 is the plain modulus
    projection. Data in photon counts. Returns the factor for the far field, (BATCH, N, N).
    """
    if bound <= 0:
        return physics.modulus_ratio(predicted, measured, mask)
    xp = physics.array_module(predicted)
    if mask is None:  # every pixel valid
        valid = xp.asarray(predicted[0].size, dtype=predicted.dtype)
    else:  # per pattern, or one count for all
        valid = xp.maximum(mask.sum(axis=(-2, -1)), 1).astype(predicted.dtype)
    misfit, ratio = physics.fit_amplitude(predicted, measured, mask, per_pattern=True)
    err = misfit / valid
    pbound = bound * physics.valid(measured / (1 + 4 * measured), mask, 0).sum(axis=(1, 2)) / valid
    renorm = xp.sqrt(pbound / xp.maximum(err, 1e-30))[:, None, None]
    # (s + (a - s) r) / a; ratio is 1 on masked pixels, so they stay 1
    return xp.where(err[:, None, None] > pbound[:, None, None], renorm + (1 - renorm) * ratio, 1).astype(ratio.dtype)


def iterate(state, astate, comm, cfg, batches, update_probe=True, update_opr=False):
    """One DM iteration over all of this rank's positions (``batches`` only bound the temporary memory); DM has no
    variable modes (``update_opr`` is never set, the configuration refuses them)."""
    for _ in range(cfg.dm_inner):
        stack = state.shift.prepare(state.probe)
        state.obj = clip_amplitude(overlap_object(state, astate, comm, stack, batches), cfg.object_clip)
        if update_probe:
            state.probe = overlap_probe(state, astate, comm, batches)
    stack = state.shift.prepare(state.probe)
    return sum(exit_wave_update(state, astate, stack, b, cfg) for b in batches if len(b))
