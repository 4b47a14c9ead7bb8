"""Ptychodus product files: the reconstruction (object, probe, positions, losses) in the layout Ptychodus reads.

Root attributes ``name``, ``comments``, ``detector_object_distance_m``, ``photon_energy_eV`` (and the older
``probe_energy_eV``), ``probe_photon_count``, ``exposure_time_s``, ``mass_attenuation_m2_per_kg``,
``tomography_angle_deg``, ``tilt_angle_deg``, ``focus_object_distance_m``, ``far_field`` (Ptychodus 1.7's
``ptychodus.api.io.ProductFileKeys``); datasets
``probe_position_indexes``, ``probe_position_x_m``, ``probe_position_y_m`` (probe centres relative to the object
centre), ``probe`` (1, MODES, N, N) with ``pixel_width_m``/``pixel_height_m``, ``object`` (1, H, W) with
``center_x_m``/``center_y_m``/``pixel_width_m``/``pixel_height_m``, ``object_layer_spacing_m`` (empty; S-1 spacings with S layers),
``loss_epochs``, ``loss_values``. ptyhpc adds a group ``ptyhpc`` (window corners in pixels, run facts).

A checkpoint is a product file with one more group, ``checkpoint``: its attributes (epoch, algorithm, seed),
small arrays every rank holds (the cost history) and, in ``checkpoint/rows``, per-position arrays (DM's exit
waves), each rank writing the rows of its own positions. The object is then stored in the run's precision (complex64/complex128).

Writing is atomic: everything goes to ``OUT.partial`` and is renamed to ``OUT`` only when complete, so a crash
never leaves a half-written result under the real name (and a crash while checkpointing leaves the previous
checkpoint intact). With several ranks each writes its own core of the object (and its own rows): collectively
through parallel HDF5 where h5py has it, otherwise by sending them to rank 0, one rank at a time.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from ..comm import Ranks
from ..units import ev_from_wavelength
from .h5 import open_file, parallel_available, runs
from .output import atomic


@dataclass
class Product:
    """What a product file holds, as one rank has it: every field is the same on all ranks but ``core`` and
    ``core_box``.

    core : (h, w), or (S, h, w) for S slices (multislice), complex, host array: this rank's core of the object
    probe : (MODES, N, N) complex
    scan : (POSI, 2) probe window corners in object pixels (rows first): the positions in use
    n : the probe window N, pixels
    shape : (H, W) of the whole object (default: ``core``'s, for one process)
    core_box : (y0, y1, x0, x1) where ``core`` sits in the whole object (default: all of it)
    pixel_size : object pixel size, m (None: no geometry; stored as 1)
    wavelength, distance : m (None: unknown)
    losses : [(epoch, value)]
    recorded_scan : (POSI, 2) the positions as the input recorded them, when ``scan`` holds corrected ones
        (``ptyhpc/recorded_scan_px``; default: ``scan``)
    opr : (variable modes (C-1, N, N), weights (POSI, C-1)) of orthogonal probe relaxation, or None: stored as
        Ptychodus stores them, ``probe`` (C, MODES, N, N) whose [0] is the main probe and [c] holds mode c in its
        first incoherent mode, and ``opr_weights`` (POSI, C) whose column 0 is 1
    layer_spacing : m between slices: a multislice ``core`` is stored as ``object`` (S, H, W) with
        ``object_layer_spacing_m`` (S-1,) all this value
    extra : attributes of the ``ptyhpc`` group (run facts; values that are not numbers or strings as JSON)
    """

    core: np.ndarray
    probe: np.ndarray
    scan: np.ndarray
    n: int
    shape: tuple | None = None
    core_box: tuple | None = None
    pixel_size: float | None = None
    wavelength: float | None = None
    distance: float | None = None
    losses: list = field(default_factory=list)
    recorded_scan: np.ndarray | None = None
    opr: tuple | None = None
    layer_spacing: float | None = None
    extra: dict | None = None

    def __post_init__(self):
        if self.shape is None:
            self.shape = tuple(np.shape(self.core)[-2:])
        if self.core_box is None:
            self.core_box = (0, self.shape[0], 0, self.shape[1])


def write_product(path, product: Product, comm=None, checkpoint=None) -> None:
    """Write ``product`` to ``path``. Every rank of ``comm`` (``comm.Ranks``, an mpi4py communicator or None)
    calls this with its own share (its ``core``).

    ``checkpoint`` : optional dict ``attrs`` {name: scalar/str}, ``arrays`` {name: array, same on all ranks},
    ``rows`` {name: (indices, local)}: ``local`` (len(indices), ...) holds rows ``indices`` (sorted, this rank's
    positions) of a (POSI, ...) dataset. Its object keeps ``core``'s dtype; a plain product stores complex64.
    """
    shape, core, scan, n, opr = product.shape, product.core, product.scan, product.n, product.opr
    recorded = scan if product.recorded_scan is None else product.recorded_scan
    extra, losses, probe = product.extra, product.losses, product.probe
    ranks = Ranks.of(comm)
    size, rank = ranks.size, ranks.rank
    if size > 1:
        # HDF5's rule in parallel: metadata (attributes, dataset shapes) must be identical on all ranks, and
        # per-rank facts such as timings are not: every rank writes rank 0's.
        extra, losses, probe = ranks.bcast((extra, list(losses), np.asarray(probe)))
    with atomic(path, rank) as tmp:
        px = product.pixel_size or 1.0
        centres = (np.asarray(scan) + n / 2 - np.asarray(shape) / 2) * px
        parallel = size > 1 and parallel_available()
        odtype = np.asarray(core).dtype if checkpoint is not None else np.complex64
        if rank == 0 or parallel:
            f = open_file(tmp, "w", ranks if parallel else None)
            # Metadata (attributes, dataset creation) is collective under mpio: every rank makes the same calls.
            energy = float(ev_from_wavelength(product.wavelength)) if product.wavelength else 0.0
            f.attrs.update({
                "name": os.path.basename(os.fspath(path)), "comments": "ptyhpc reconstruction",
                "detector_object_distance_m": float(product.distance or 0.0),
                "photon_energy_eV": energy, "probe_energy_eV": energy,  # Ptychodus 1.7's name, and the older one
                "probe_photon_count": 0.0, "exposure_time_s": 0.0, "mass_attenuation_m2_per_kg": 0.0,
                "tomography_angle_deg": 0.0, "tilt_angle_deg": 0.0, "focus_object_distance_m": 0.0,
                "far_field": True,
            })
            f.create_dataset("probe_position_indexes", data=np.arange(len(scan)))
            f.create_dataset("probe_position_x_m", data=centres[:, 1])
            f.create_dataset("probe_position_y_m", data=centres[:, 0])
            stored = np.asarray(probe)[None]
            if opr is not None:
                modes, weights = opr
                variable = np.zeros((len(modes),) + stored.shape[1:], dtype=stored.dtype)
                variable[:, 0] = modes
                stored = np.concatenate([stored, variable])
                f.create_dataset("opr_weights", data=np.concatenate([np.ones((len(weights), 1)), weights], axis=1))
            p = f.create_dataset("probe", data=stored.astype(np.complex64))
            p.attrs.update({"pixel_width_m": px, "pixel_height_m": px})
            layers = np.shape(core)[0] if np.ndim(core) == 3 else 1
            o = f.create_dataset("object", shape=(layers,) + tuple(shape), dtype=odtype)
            o.attrs.update({"center_x_m": 0.0, "center_y_m": 0.0, "pixel_width_m": px, "pixel_height_m": px})
            f.create_dataset("object_layer_spacing_m", data=np.full(layers - 1, float(product.layer_spacing or 0.0)))
            losses = list(losses)
            f.create_dataset("loss_epochs", data=np.array([e for e, _ in losses], dtype=np.int64))
            f.create_dataset("loss_values", data=np.array([v for _, v in losses], dtype=np.float64))
            g = f.create_group("ptyhpc")
            g.create_dataset("scan_px", data=np.asarray(scan, dtype=np.float64))
            g.create_dataset("recorded_scan_px", data=np.asarray(recorded, dtype=np.float64))
            g.attrs["probe_window"] = n
            for k, v in (extra or {}).items():
                g.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)
            targets = {"object": o}  # where each piece of a rank goes
            if checkpoint is not None:
                c = f.create_group("checkpoint")
                c.attrs.update(checkpoint.get("attrs", {}))
                for k, v in checkpoint.get("arrays", {}).items():
                    c.create_dataset(k, data=np.asarray(v))
                r = c.create_group("rows")
                for k, (_, local) in checkpoint.get("rows", {}).items():
                    targets[k] = r.create_dataset(k, shape=(len(scan),) + local.shape[1:], dtype=local.dtype)
        # each rank's pieces: its object core, then its rows of each per-position dataset (DM's exit waves)
        pieces = [("object", product.core_box, np.asarray(core, dtype=odtype))]
        pieces += [(k, indices, local) for k, (indices, local) in (checkpoint or {}).get("rows", {}).items()]
        if parallel:
            with o.collective:
                _put(o, *pieces[0])
            for piece in pieces[1:]:
                _put(targets[piece[0]], *piece)  # independent writes: ranks have different numbers of runs
            f.close()
        elif size > 1:
            if rank == 0:
                for r in range(size):  # one rank at a time: rank 0 never holds more than one rank's piece
                    for i, piece in enumerate(pieces):
                        k, where, block = piece if r == 0 else ranks.receive(r, tag=31 + i)
                        _put(targets[k], k, where, block)
                f.close()
            else:
                for i, piece in enumerate(pieces):
                    ranks.send(piece, tag=31 + i)
        else:
            for k, where, block in pieces:
                _put(targets[k], k, where, block)
            f.close()
    ranks.barrier()


def _put(dset, key, where, block):
    """Write ``block`` into ``dset``: for ``key`` 'object' the core box ``where`` = (y0, y1, x0, x1) of the
    (1, H, W) object, else the sorted row indices ``where`` of a per-position dataset (one write per run)."""
    if key == "object":
        y0, y1, x0, x1 = where
        dset[(slice(None) if block.ndim == 3 else 0, slice(y0, y1), slice(x0, x1))] = block
        return
    for start, stop in runs(where):
        dset[where[start]:where[stop - 1] + 1] = block[start:stop]


def read_product(path) -> dict:
    """A product file (ours or Ptychodus') as a dict: object (H, W) (a layered object's layers multiplied: its
    projection), probe (MODES, N, N) (OPR modes combined at their mean weights), scan (POSI, 2) corners in
    object pixels (placed as Ptychodus places positions, object centre included), pixel_size, losses [(epoch,
    value)], attrs (the ptyhpc group's attributes; empty for a file ptyhpc did not write), opr_weights (POSI, C) or
    None, layers (S, H, W) the object's layers as stored and layer_spacing (S-1,) metres."""
    from .dataset import InputError
    from .ptychodus import corners_from_positions, product_probe

    with open_file(path, "r") as f:
        for key in ("object", "probe", "probe_position_x_m", "probe_position_y_m"):
            if key not in f:
                raise InputError(path, key, "missing: not a product file")
        o = f["object"]
        layers = o[()]
        layers = layers.reshape((-1,) + layers.shape[-2:])
        obj = np.prod(layers, axis=0) if len(layers) > 1 else layers[0]
        spacing = f["object_layer_spacing_m"][()] if "object_layer_spacing_m" in f else np.zeros(0)
        weights = f["opr_weights"][()] if "opr_weights" in f else None
        probe = product_probe(path, f["probe"][()], weights)
        n = probe.shape[-1]
        px = float(o.attrs.get("pixel_width_m", 1.0))
        center = (float(o.attrs.get("center_x_m", 0.0)), float(o.attrs.get("center_y_m", 0.0)))
        scan = corners_from_positions(f["probe_position_x_m"][()], f["probe_position_y_m"][()], px, obj.shape, n,
                                      center)
        attrs = dict(f["ptyhpc"].attrs) if "ptyhpc" in f else {}
        epochs = f["loss_epochs"][()] if "loss_epochs" in f else np.arange(0)
        values = f["loss_values"][()] if "loss_values" in f else np.arange(0)
    return {"object": obj, "probe": probe, "scan": scan, "pixel_size": px,
            "losses": list(zip(epochs.tolist(), values.tolist())), "attrs": attrs, "opr_weights": weights,
            "layers": layers, "layer_spacing": np.atleast_1d(spacing)}


def initial_object(path, dataset) -> np.ndarray:
    """The object of the product ``path`` (ptyhpc's or Ptychodus') as a starting guess on ``dataset``'s object
    grid (H, W): placed by the positions the two share (the same scan, so the grids differ by whole pixels),
    1 where the product's object does not reach. Refuses another pixel size or a grid offset by a fraction of a
    pixel."""
    from .dataset import InputError, check_object

    r = read_product(path)
    if dataset.pixel_size and not np.isclose(r["pixel_size"], dataset.pixel_size, rtol=1e-6):
        raise InputError(path, "object/pixel_width_m", f"{r['pixel_size']:.6e} m, but this scan's object pixel is "
                                                       f"{dataset.pixel_size:.6e} m")
    if len(r["scan"]) != dataset.count:
        raise InputError(path, "probe_position_x_m", f"{len(r['scan'])} positions, but {dataset.path} has "
                                                     f"{dataset.count}: a product of another scan?")
    shift = np.median(dataset.scan - r["scan"], axis=0)
    whole = np.round(shift).astype(int)
    if np.abs(shift - whole).max() > 1e-3 or np.abs(dataset.scan - r["scan"] - shift).max() > 1e-3:
        raise InputError(path, "probe_position_x_m/_y_m", "its positions are not this scan's shifted by whole "
                                                          "pixels: a product of another scan?")
    obj = check_object(path, "object", r["object"], r["object"].shape)
    out = np.ones(dataset.object_shape, dtype=np.complex64)
    (dy, dx), (h, w) = whole, obj.shape
    y0, x0 = max(dy, 0), max(dx, 0)
    y1, x1 = min(dy + h, out.shape[0]), min(dx + w, out.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = obj[y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    return out


def checkpoint_positions(path) -> np.ndarray | None:
    """The positions in use (``ptyhpc/scan_px``, corrected ones included) of the checkpoint ``path``, or None
    where there are none to read (:func:`read_checkpoint` then says what is wrong)."""
    try:
        with open_file(path, "r") as f:
            return f["ptyhpc/scan_px"][()] if "ptyhpc/scan_px" in f else None
    except OSError:
        return None


def read_checkpoint(path, dataset, box, indices, comm=None) -> dict:
    """This rank's part of the checkpoint ``path`` for a run on ``dataset``: object (the tile ``box`` = (y0, y1,
    x0, x1), in the stored precision), probe (MODES, N, N), scan (POSI, 2) all positions in use, rows {name: the rows ``indices`` of each per-position
    dataset}, arrays {name: array} and attrs of the ``checkpoint`` group. Every rank of ``comm`` calls it."""
    from .dataset import InputError
    from .h5 import rows_of

    if not os.path.isfile(path):
        raise InputError(path, "-", "checkpoint file not found")
    with open_file(path, "r", comm) as f:
        for key in ("checkpoint", "object", "probe", "ptyhpc/scan_px", *(f"checkpoint/{k}" for k in CHECKPOINT_ARRAYS)):
            if key not in f:
                raise InputError(path, key, "missing: not a ptyhpc checkpoint")
        for key in CHECKPOINT_ATTRS:
            if key not in f["checkpoint"].attrs:
                raise InputError(path, f"checkpoint/@{key}", "missing: not a complete ptyhpc checkpoint")
        key = "ptyhpc/recorded_scan_px" if "ptyhpc/recorded_scan_px" in f else "ptyhpc/scan_px"
        recorded = f[key][()]
        if recorded.shape != dataset.scan.shape or not np.allclose(recorded, dataset.scan, atol=1e-6):
            raise InputError(path, key, f"positions differ from those of {dataset.path}: a checkpoint of another "
                                        "scan?")
        if f["ptyhpc/scan_px"].shape != dataset.scan.shape:
            raise InputError(path, "ptyhpc/scan_px", f"shape {f['ptyhpc/scan_px'].shape}, but {dataset.path} has "
                                                     f"{dataset.scan.shape} positions")
        o = f["object"]
        if o.shape[-2:] != tuple(dataset.object_shape):
            raise InputError(path, "object", f"shape {o.shape[-2:]} is not the object shape "
                             f"{tuple(dataset.object_shape)} of {dataset.path}")
        y0, y1, x0, x1 = box
        stored = f["probe"][()]
        stored = stored.reshape((1,) * (4 - stored.ndim) + stored.shape[-3:]) if stored.ndim < 4 else stored
        opr = None
        if len(stored) > 1 and "opr_weights" in f:  # (main probe, variable modes, this rank's weights)
            opr = (stored[1:, 0], f["opr_weights"][()][np.asarray(indices)][:, 1:])
        layers = o[:, y0:y1, x0:x1]
        out = {"object": layers if len(layers) > 1 else layers[0], "probe": stored[0], "opr": opr,
               "attrs": dict(f["checkpoint"].attrs), "scan": f["ptyhpc/scan_px"][()]}
        out["arrays"] = {k: v[()] for k, v in f["checkpoint"].items() if k != "rows"}
        out["rows"] = {k: rows_of(v, indices) for k, v in f["checkpoint/rows"].items()}
    for key, value in [("object", out["object"]), ("probe", out["probe"]), ("ptyhpc/scan_px", out["scan"])] + list(
            out["rows"].items()):
        if not np.isfinite(value).all():  # a checkpoint written before the non-finite check existed
            raise InputError(path, key, "holds NaN or Inf: the checkpoint of a diverged run")
    return out


CHECKPOINT_ATTRS = ("epoch", "algorithm")
"""Attributes of a checkpoint's ``checkpoint`` group that a resume needs."""
CHECKPOINT_ARRAYS = ("epochs", "costs", "seconds")
"""Datasets of the ``checkpoint`` group that a resume needs (the cost history); ``position_rms`` joins them in a run that corrects positions."""
