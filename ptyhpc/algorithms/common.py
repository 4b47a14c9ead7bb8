"""Pieces shared by the algorithms: the forward model of one batch and the object/probe sums."""
from __future__ import annotations

from typing import NamedTuple

from .. import physics, positions
from ..backend import array_module


class BatchModel(NamedTuple):
    """The forward model of one batch of positions j.

    corner (BATCH, 2) host int; weights (BATCH, ...) the shift's weights; probes P_j (BATCH, MODES, N, N), shifted,
    mode 0 with the position's variable part (OPR); patches O_j (BATCH, N, N); farfield Psi = Det(P_j O_j)
    (BATCH, MODES, N, N), the wave on the detector (far or near field: ``state.detector``); predicted intensity
    (BATCH, N, N); variable (BATCH, C-1, N, N) the shifted OPR modes S_j V_c, or None; det the propagation of these
    positions (``detector.at``: fwd and adj, (BATCH, MODES, N, N)).

    Multislice (``state.obj`` (S, H, W)): patches (BATCH, S, N, N), one per slice; incident (S entries of (BATCH,
    MODES, N, N)) the wave arriving at each slice: psi_1 = P_j, psi_(s+1) = Prop_dz(psi_s O_s); farfield is
    Det(psi_S O_S). With one slice incident is None and patches (BATCH, N, N).

    exit_wave (BATCH, MODES, N, N): the wave leaving the sample, psi = P_j O_j (multislice: psi_S O_S). A model
    made with ``farfield=False`` stops there (farfield, predicted and det None): :func:`residual` takes it on.
    """

    corner: object
    weights: object
    probes: object
    patches: object
    farfield: object
    predicted: object
    variable: object = None
    det: object = None
    incident: tuple = None
    exit_wave: object = None


def batch_model(state, stack, b, farfield: bool = True) -> BatchModel:
    """Forward model of the positions of batch ``b`` (a ``state.Batch``); ``stack`` is ``state.prepared()``.
    ``farfield=False``: up to the exit wave only (see :class:`BatchModel`)."""
    weights = state.weights[b.device]
    probes = state.shift.fwd(stack, weights)
    variable = None
    if state.opr is not None:  # P_j0 = S_j (P_0 + sum_c w_jc V_c)
        k = state.probe.shape[0]
        probes, variable = probes[:, :k], probes[:, k:]
        probes[:, 0] += (state.opr_weights[b.device][:, :, None, None] * variable).sum(axis=1)
    patches = physics.extract(state.obj, state.corner_xp[b.device], state.n)
    det = state.detector.at(state.frac[b.device])
    incident = None
    if patches.ndim == 4:  # multislice: the wave through the slices
        incident = [probes]
        for s in range(1, patches.shape[1]):
            incident.append(state.slice_prop.fwd(incident[-1] * patches[:, s - 1, None]))
        exit_wave = incident[-1] * patches[:, -1, None]
    else:
        exit_wave = probes * patches[:, None]
    incident = None if incident is None else tuple(incident)
    if not farfield:
        return BatchModel(state.corner[b.host], weights, probes, patches, None, None, variable, None, incident,
                          exit_wave)
    farfield = det.fwd(exit_wave)
    return BatchModel(state.corner[b.host], weights, probes, patches, farfield, physics.intensity(farfield), variable,
                      det, incident, exit_wave)


def residual(state, m: BatchModel, b, factor):
    """The batch's misfit and exit-wave residual chi_j = Det_j^H[f_j Det_j psi_j] (BATCH, MODES, N, N), from the
    exit waves of ``m`` (a model made with ``farfield=False``).

    ``factor(predicted, measured, mask)`` -> (misfit, f): the misfit of the predicted intensities (BATCH, N, N)
    and the real far-field multiplier f (BATCH, N, N) of the update (``physics.modulus_factor``: ratio - 1; LSQML's
    Poisson step).
    """
    det = state.detector.at(state.frac[b.device])
    far = det.fwd(m.exit_wave)
    misfit, f = factor(physics.intensity(far), state.patterns[b.device], state.mask_of(b.device))
    far *= f[:, None]
    return misfit, det.adj(far)


def through_slices(state, m: BatchModel, chi):
    """The exit-wave residual ``chi`` (BATCH, MODES, N, N) of the last slice, carried back slice by slice: yields
    (s, incident wave, patches O_s (BATCH, N, N), chi_s) from the last slice to the first, chi_s the residual of
    the wave leaving slice s. Going back through slice s, chi_(s-1) = Prop^H[conj(O_s) chi_s / max |O_s|^2] (per
    position: the wave incident on slice s corrected as rPIE corrects a probe, beta = 1; the 3PIE scheme of Maiden,
    Humphry & Rodenburg 2012). One slice: yields (0, probes, patches, chi) once."""
    if m.incident is None:
        yield 0, m.probes, m.patches, chi
        return
    xp = state.xp
    for s in range(len(m.incident) - 1, -1, -1):
        o = m.patches[:, s]
        yield s, m.incident[s], o, chi
        if s:
            back = chi * o.conj()[:, None]
            back *= (1 / xp.maximum(physics.abs2(o).max(axis=(1, 2), keepdims=True), 1e-30))[:, None]
            chi = state.slice_prop.adj(back)


def record_position_steps(state, stack, m: BatchModel, b, chi):
    """Position correction: store this batch's position steps in ``state.steps`` (from the object before the
    batch updates it); ``stack`` as for :func:`batch_model`. Returns conj(O_j) chi_j (BATCH, MODES, N, N), which
    the probe's numerator (:func:`probe_sums`) takes from here, or None when positions are not being corrected."""
    if state.steps is None:
        return None
    plain = stack if state.opr is None else state.shift.prepare(state.probe)  # the steps shift the main probe
    backprojected = m.patches.conj()[:, None] * chi
    state.steps[b.device] = positions.gradient_step(state.shift, plain, m.weights, m.probes, m.patches, backprojected)
    return backprojected


def object_sums(shape, corner, probes, chi, xp, wide: bool = False):
    """Object numerator and denominator of this batch on an (H, W) region.

    numerator  sum_j sum_k conj(P_jk) chi_jk   (complex, placed at each window)
    denominator sum_j sum_k |P_jk|^2           (real)

    ``wide``: accumulate in double precision. A sum over positions split across ranks or batches then rounds to
    the same single-precision value as the one-rank sum, which DM needs (it amplifies rounding differences
    ~1000x in ten iterations; LSQML does not, and sums in the working precision).
    """
    cdtype = xp.complex128 if wide else chi.dtype
    num = xp.zeros(shape, dtype=cdtype)
    den = xp.zeros(shape, dtype=num.real.dtype)
    physics.scatter_add(num, corner, physics.sum_modes(probes.conj() * chi))
    physics.scatter_add(den, corner, physics.sum_modes(physics.abs2(probes)))
    return num, den


def complete_object_sums(comm, num, den):
    """Add the neighbours' contributions to this rank's object sums ``num`` (complex) and ``den`` (real), both
    (H, W) on the tile, in place; returns them. Only the overlaps with other tiles travel (the real and imaginary
    parts and the denominator in one message per neighbour), summed in rank order: shared pixels agree bitwise
    on all ranks."""
    comm.accumulate([num.real, num.imag, den])
    return num, den


def probe_sums(shift, weights, patches, chi, wide: bool = False, backprojected=None):
    """Probe numerator sum_j S_j^T(conj(O_j) chi_j) (MODES, N, N) and denominator sum_j S_j^T |O_j|^2 (1, N, N),
    S_j the sub-pixel ``shift`` of position j (the denominator through ``shift.adj_weight``: bilinear for either
    shift); ``wide`` as in :func:`object_sums`; ``backprojected``: conj(O_j) chi_j when already made (by
    :func:`record_position_steps`, whose transform of it the Fourier shift's adjoint then reuses)."""
    g = patches.conj()[:, None] * chi if backprojected is None else backprojected
    o2 = physics.abs2(patches)[:, None]
    if wide:
        xp = array_module(g)
        g, o2, weights = g.astype(xp.complex128), o2.astype(xp.float64), weights.astype(xp.float64)
    return shift.adj(g, weights), shift.adj_weight(o2, weights)


def clip_amplitude(obj, limit: float):
    """Scale pixels whose amplitude exceeds ``limit`` back to it (no-op when limit <= 0)."""
    if limit <= 0:
        return obj
    xp = array_module(obj)
    return obj * (limit / xp.maximum(abs(obj), limit))
