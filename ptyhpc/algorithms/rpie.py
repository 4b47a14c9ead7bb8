"""Regularised ptychographic iterative engine, in mini-batches (Maiden, Johnson & Li, Optica 4, 736, 2017).

For a batch of positions j with exit waves psi_j = P_j O_j and corrected exit waves psi'_j (far-field modulus
replaced by the measured one):

    O <- O + sum_j P_j^* (psi'_j - psi_j) / ((1 - alpha) sum_j |P_j|^2 + alpha max sum_j |P_j|^2)      (Eq. 6)
    P <- P + sum_j O_j^* (psi'_j - psi_j) / ((1 - beta) sum_j |O_j|^2 + beta max sum_j |O_j|^2)

rPIE is sequential: each rank updates its own tile with its own batches and no communication; the tiles are
reconciled (illumination-weighted average of the overlaps, position-weighted average of the probes) every
``sync_every`` batches and at the end of every epoch. The result is not bit-equal to one rank; its error is.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import physics
from .common import batch_model, clip_amplitude, object_sums, probe_sums

BATCHES = "aligned"
CHECKPOINT = ()


@dataclass
class RPIEState:
    illumination: object
    """(H, W) real: sum_j |P_j|^2 over the positions processed since the last reconciliation."""
    count: int = 0
    """Positions processed since the last reconciliation."""


def init(state, cfg, saved=None) -> RPIEState:
    return RPIEState(illumination=state.xp.zeros(state.obj.shape, dtype=state.patterns.dtype))


def exit_wave_update(farfield, ratio):
    """psi' - psi = F^-1[(sqrt(d / I) - 1) Psi] on valid pixels: (BATCH, MODES, N, N). Overwrites ``farfield``."""
    farfield *= (ratio - 1)[:, None]
    return physics.ifft2(farfield)


def object_update(obj, num, den, alpha):
    """Eq. 6: O + num / ((1 - alpha) den + alpha max(den))."""
    return obj + num / ((1 - alpha) * den + alpha * den.max() + 1e-30)


def probe_update(probe, num, den, beta):
    """The probe's counterpart of Eq. 6, with beta in place of alpha."""
    return probe + num / ((1 - beta) * den + beta * den.max() + 1e-30)


def reconcile(state, astate, comm):
    """Illumination-weighted average of the pixels this tile shares with others, and position-weighted average
    of the probes. Only ``comm.shared_box`` can differ between ranks, so only it is exchanged and averaged."""
    xp = state.xp
    box = comm.shared_box
    if box is not None:
        w, o = astate.illumination[box], state.obj[box]
        summed = comm.accumulate(xp.stack([w * o.real, w * o.imag, w]), box)
        covered = summed[2] > 0
        average = (summed[0] + 1j * summed[1]) / xp.where(covered, summed[2], 1)
        state.obj[box] = xp.where(covered, average, o)
    # the position-weighted probe sum and the position count in one all-reduce
    packed = comm.allreduce(xp.concatenate([(state.probe * astate.count).ravel(),
                                            xp.asarray([astate.count], dtype=state.probe.dtype)]))
    total = float(packed[-1].real)
    if total > 0:
        state.probe = (packed[:-1] / total).reshape(state.probe.shape)
    astate.illumination.fill(0)
    astate.count = 0


def iterate(state, astate, comm, cfg, batches, update_probe=True):
    """One epoch over this rank's ``batches`` (lists of local indices). Returns the local misfit sum."""
    total = 0.0
    for i, b in enumerate(batches, start=1):
        if len(b):
            stack = physics.probe_stack(state.probe)
            corner, weights, probes, patches, farfield, predicted = batch_model(state, stack, b)
            measured = state.patterns[state.xp.asarray(b)]
            if cfg.noise == "gaussian":
                misfit, ratio = physics.fit_amplitude(predicted, measured, state.mask)
            else:
                misfit = physics.cost(predicted, measured, state.mask, cfg.noise)
                ratio = physics.modulus_ratio(predicted, measured, state.mask)
            total += float(misfit)
            chi = exit_wave_update(farfield, ratio)
            # the object changes only inside the batch's bounding box: work there
            (y0, x0), (y1, x1) = corner.min(axis=0), corner.max(axis=0) + state.n
            box = (slice(y0, y1), slice(x0, x1))
            o_num, o_den = object_sums((y1 - y0, x1 - x0), corner - (y0, x0), probes, chi, state.xp)
            if update_probe:
                p_num, p_den = probe_sums(weights, patches, chi)
                state.probe = probe_update(state.probe, p_num, p_den, cfg.beta)
            state.obj[box] = clip_amplitude(object_update(state.obj[box], o_num, o_den, cfg.alpha), cfg.object_clip)
            astate.illumination[box] += o_den
            astate.count += len(b)
        if cfg.sync_every and i % cfg.sync_every == 0 and i < len(batches):
            reconcile(state, astate, comm)
    reconcile(state, astate, comm)
    return total
