"""Regularised ptychographic iterative engine, in mini-batches (Maiden, Johnson & Li, Optica 4, 736, 2017).

For a batch of positions j with exit waves psi_j = P_j O_j and corrected exit waves psi'_j (far-field modulus
replaced by the measured one):

    O <- O + sum_j P_j^* (psi'_j - psi_j) / ((1 - alpha) sum_j |P_j|^2 + alpha max sum_j |P_j|^2)      (Eq. 6)
    P <- P + sum_j O_j^* (psi'_j - psi_j) / ((1 - beta) sum_j |O_j|^2 + beta max sum_j |O_j|^2)

rPIE is sequential: each rank updates its own tile and its copy of the probe with its own batches. The probes are
averaged (weighted by positions) after every batch, a small all-reduce; the overlaps of the tiles are averaged
(weighted by illumination) with the neighbours every ``sync_every`` batches (after every batch while alpha rises,
``ReconConfig.at_epoch``) and at the end of every epoch. The probe is what must not drift apart between ranks
(every rank's next batch uses it everywhere on its tile), while an overlap is only a strip along the tile's border;
scripts/bench_scaling.py measures the error and the time for several ``sync_every``. The result is not bit-equal
to one rank; its error is.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from .. import opr, physics
from ..backend import array_module
from ..partition import intersect
from .common import (batch_model, clip_amplitude, object_sums, probe_sums, record_position_steps, residual,
                     through_slices)

BATCHES = "aligned"
CHECKPOINT = ()


@dataclass
class RPIEState:
    sums: object
    """(3, h, w) real (multislice: (3, S, h, w)) on ``comm.shared_box`` (None on a rank without neighbours): w Re O, w Im O and w, where
    w = sum_j |P_j|^2 over this rank's positions since the last reconciliation. Plane 2 (w) accumulates batch by
    batch; planes 0 and 1 are filled when the tiles are reconciled. The buffer is what goes to the neighbours."""
    count: int = 0
    """Positions that updated this rank's probe since the probes were last averaged."""


def init(state, comm, cfg, saved=None) -> RPIEState:
    box = comm.shared_box
    if box is None:
        return RPIEState(sums=None)
    shape = (3,) + state.obj.shape[:-2] + tuple(sl.stop - sl.start for sl in box)
    return RPIEState(sums=state.xp.zeros(shape, dtype=state.patterns.dtype))


def object_update(obj, num, den, alpha):
    """Eq. 6: O + num / ((1 - alpha) den + alpha max(den)), in place on ``obj`` (a view of the object);
    ``num`` and ``den`` are overwritten (no object-sized temporaries: on a CPU this update is as costly as an FFT
    of the batch otherwise)."""
    xp = array_module(den)
    peak = den.max()
    den *= 1 - alpha
    den += alpha * peak + 1e-30
    xp.reciprocal(den, out=den)
    num *= den
    obj += num
    return obj


def probe_update(probe, num, den, beta):
    """The probe's counterpart of Eq. 6, with beta in place of alpha."""
    return probe + num / ((1 - beta) * den + beta * den.max() + 1e-30)


def reconcile_object(state, astate, comm):
    """Illumination-weighted average of the pixels this tile shares with others. Only ``comm.shared_box`` can
    differ between ranks, so only it is exchanged and averaged; a shared pixel that no rank illuminated since the
    last reconciliation is left as it is (it agrees already)."""
    if astate.sums is None:
        return
    xp = state.xp
    o = state.obj[(...,) + comm.shared_box]
    w = astate.sums[2]
    xp.multiply(w, o.real, out=astate.sums[0])
    xp.multiply(w, o.imag, out=astate.sums[1])
    summed = comm.accumulate(astate.sums, comm.shared_box)
    covered = summed[2] > 0
    weight = xp.where(covered, summed[2], 1)
    xp.copyto(o.real, summed[0] / weight, where=covered)
    xp.copyto(o.imag, summed[1] / weight, where=covered)
    w.fill(0)


def reconcile_probe(state, astate, comm):
    """Position-weighted average of the ranks' probes (and OPR modes): the weighted sum and the position count in
    one all-reduce."""
    if comm.size == 1:  # one rank: its probe is the average
        astate.count = 0
        return
    xp = state.xp
    probe = state.probe if state.opr is None else xp.concatenate([state.probe, state.opr])
    packed = comm.allreduce(xp.concatenate([(probe * astate.count).ravel(),
                                            xp.asarray([astate.count], dtype=probe.dtype)]))
    total = packed[-1].real  # read on the device: no host round trip per batch
    average = (packed[:-1] / xp.maximum(total, 1)).reshape(probe.shape)
    probe = xp.where(total > 0, average, probe)  # no rank had a position: unchanged
    k = state.probe.shape[0]
    state.probe, state.opr = (probe, None) if state.opr is None else (probe[:k], probe[k:])
    astate.count = 0


def iterate(state, astate, comm, cfg, batches, update_probe=True, update_opr=False):
    """One epoch over this rank's ``batches`` (``state.Batch``), the probe too with ``update_probe`` and the variable
    modes and their weights with ``update_opr``. Returns the local misfit sum (on the device)."""
    total = 0.0
    for i, b in enumerate(batches, start=1):
        if len(b):
            stack = state.prepared()
            m = batch_model(state, stack, b, farfield=False)
            corner, weights = m.corner, m.weights
            misfit, chi = residual(state, m, b, partial(physics.modulus_factor, noise=cfg.noise))
            total = total + misfit
            backprojected = record_position_steps(state, stack, m, b, chi)  # None without correction
            # the object changes only inside the batch's bounding box: work there
            (y0, x0), (y1, x1) = corner.min(axis=0), corner.max(axis=0) + state.n
            box = (slice(y0, y1), slice(x0, x1))
            for s, incident, patches, chi in through_slices(state, m, chi):  # one pass with one slice
                o_num, o_den = object_sums((y1 - y0, x1 - x0), corner - (y0, x0), incident, chi, state.xp)
                if update_probe and s == 0:
                    p_num, p_den = probe_sums(state.shift, weights, patches, chi, backprojected=backprojected)
                    state.probe = probe_update(state.probe, p_num, p_den, cfg.beta)
                    if update_opr:
                        v_num, v_den = opr.mode_sums(state.shift, weights, patches, chi[:, 0],
                                                     state.opr_weights[b.device])
                        state.opr_weights[b.device] += opr.weight_step(m.variable, patches, chi[:, 0])
                        state.opr = probe_update(state.opr, v_num, v_den, cfg.beta)
                    astate.count += len(b)
                if astate.sums is not None:  # before object_update overwrites o_den
                    w = astate.sums[2] if state.obj.ndim == 2 else astate.sums[2][s]
                    _add_shared(w, comm.shared_box, o_den, (y0, y1, x0, x1))
                obj = state.obj if state.obj.ndim == 2 else state.obj[s]  # a view: updated in place
                o = object_update(obj[box], o_num, o_den, cfg.alpha)
                if cfg.object_clip > 0:
                    o[...] = clip_amplitude(o, cfg.object_clip)
        if update_probe:
            reconcile_probe(state, astate, comm)
        if cfg.sync_every and i % cfg.sync_every == 0 and i < len(batches):
            reconcile_object(state, astate, comm)
    reconcile_object(state, astate, comm)
    return total


def _add_shared(w, shared, den, box):
    """Add the part of ``den`` (on ``box`` = (y0, y1, x0, x1) of the tile) that lies in the shared box (slices
    of the tile) to ``w`` (on the shared box)."""
    (sy, sy1), (sx, sx1) = ((sl.start, sl.stop) for sl in shared)
    part = intersect(box, (sy, sy1, sx, sx1))
    if part is None:
        return
    y0, y1, x0, x1 = part
    w[y0 - sy:y1 - sy, x0 - sx:x1 - sx] += den[y0 - box[0]:y1 - box[0], x0 - box[2]:x1 - box[2]]
