"""Ptychodus product files: the reconstruction (object, probe, positions, losses) in the layout Ptychodus reads.

Root attributes ``name``, ``comments``, ``detector_object_distance_m``, ``probe_energy_eV``,
``probe_photon_count``, ``exposure_time_s``, ``mass_attenuation_m2_kg``, ``tomography_angle_deg``; datasets
``probe_position_indexes``, ``probe_position_x_m``, ``probe_position_y_m`` (probe centres relative to the object
centre), ``probe`` (1, MODES, N, N) with ``pixel_width_m``/``pixel_height_m``, ``object`` (1, H, W) with
``center_x_m``/``center_y_m``/``pixel_width_m``/``pixel_height_m``, ``object_layer_spacing_m`` (empty),
``loss_epochs``, ``loss_values``. ptyhpc adds a group ``ptyhpc`` (window corners in pixels, run facts).

Writing is atomic: everything goes to ``OUT.partial`` and is renamed to ``OUT`` only when complete, so a crash
never leaves a half-written result under the real name. With several ranks each writes its own core of the
object: collectively through parallel HDF5 where h5py has it, otherwise by sending it to rank 0, tile by tile.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .dataset import H_PLANCK_C
from .h5 import open_file, parallel_available

EV = 1.602176634e-19


def write_product(path, *, shape, core_box, core, probe, scan, n, pixel_size=None, wavelength=None,
                  distance=None, losses=(), comm=None, extra=None):
    """Write a product file. Every rank of ``comm`` calls this with its own ``core`` (the object on
    ``core_box`` = (y0, y1, x0, x1), host array); ``probe`` (MODES, N, N), ``scan`` (POSI, 2) global corners and
    ``losses`` [(epoch, value)] are the same on all ranks. Serial use: ``comm=None``, the core is the whole object.
    """
    size = comm.Get_size() if comm is not None else 1
    rank = comm.Get_rank() if comm is not None else 0
    if size > 1:
        # HDF5's rule in parallel: metadata (attributes, dataset shapes) must be identical on all ranks, and
        # per-rank facts such as timings are not: every rank writes rank 0's.
        extra, losses, probe = comm.bcast((extra, list(losses), np.asarray(probe)), root=0)
    tmp = f"{path}.partial"
    px = pixel_size or 1.0
    centres = (np.asarray(scan) + n / 2 - np.asarray(shape) / 2) * px
    parallel = size > 1 and parallel_available()
    if rank == 0 or parallel:
        f = open_file(tmp, "w", comm if parallel else None)
        # Metadata (attributes, dataset creation) is collective under mpio: every rank makes the same calls.
        f.attrs.update({
            "name": os.path.basename(os.fspath(path)), "comments": "ptyhpc reconstruction",
            "detector_object_distance_m": float(distance or 0.0),
            "probe_energy_eV": float(H_PLANCK_C / wavelength / EV) if wavelength else 0.0,
            "probe_photon_count": 0.0, "exposure_time_s": 0.0, "mass_attenuation_m2_kg": 0.0,
            "tomography_angle_deg": 0.0,
        })
        f.create_dataset("probe_position_indexes", data=np.arange(len(scan)))
        f.create_dataset("probe_position_x_m", data=centres[:, 1])
        f.create_dataset("probe_position_y_m", data=centres[:, 0])
        p = f.create_dataset("probe", data=np.asarray(probe)[None].astype(np.complex64))
        p.attrs.update({"pixel_width_m": px, "pixel_height_m": px})
        o = f.create_dataset("object", shape=(1,) + tuple(shape), dtype=np.complex64)
        o.attrs.update({"center_x_m": 0.0, "center_y_m": 0.0, "pixel_width_m": px, "pixel_height_m": px})
        f.create_dataset("object_layer_spacing_m", data=np.zeros(0))
        losses = list(losses)
        f.create_dataset("loss_epochs", data=np.array([e for e, _ in losses], dtype=np.int64))
        f.create_dataset("loss_values", data=np.array([v for _, v in losses], dtype=np.float64))
        g = f.create_group("ptyhpc")
        g.create_dataset("scan_px", data=np.asarray(scan, dtype=np.float64))
        g.attrs["probe_window"] = n
        for k, v in (extra or {}).items():
            g.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)
    y0, y1, x0, x1 = core_box
    if parallel:
        with o.collective:
            o[0, y0:y1, x0:x1] = np.asarray(core, dtype=np.complex64)
        f.close()
    elif size > 1:
        if rank == 0:
            o[0, y0:y1, x0:x1] = core
            for r in range(1, size):
                box = comm.recv(source=r, tag=31)
                block = np.empty((box[1] - box[0], box[3] - box[2]), dtype=np.complex64)
                comm.Recv(block, source=r, tag=32)
                o[0, box[0]:box[1], box[2]:box[3]] = block
            f.close()
        else:
            comm.send(tuple(core_box), dest=0, tag=31)
            comm.Send(np.ascontiguousarray(core, dtype=np.complex64), dest=0, tag=32)
    else:
        o[0, y0:y1, x0:x1] = core
        f.close()
    if rank == 0:
        os.replace(tmp, path)
    if comm is not None and size > 1:
        comm.Barrier()


def read_product(path) -> dict:
    """A product file (ours or Ptychodus') as a dict: object (H, W), probe (MODES, N, N), scan (POSI, 2)
    corners in pixels, pixel_size, losses [(epoch, value)], attrs (the ptyhpc group's attributes)."""
    from .dataset import InputError

    with open_file(path, "r") as f:
        for key in ("object", "probe", "probe_position_x_m", "probe_position_y_m"):
            if key not in f:
                raise InputError(path, key, "missing: not a product file")
        obj = f["object"][()]
        obj = obj.reshape(obj.shape[-2:]) if obj.ndim > 2 else obj
        probe = f["probe"][()]
        n = probe.shape[-1]
        probe = probe.reshape((-1, n, n))
        px = float(f["object"].attrs.get("pixel_width_m", 1.0))
        if "ptyhpc/scan_px" in f:
            scan = f["ptyhpc/scan_px"][()]
            attrs = dict(f["ptyhpc"].attrs)
        else:
            c = np.stack([f["probe_position_y_m"][()], f["probe_position_x_m"][()]], axis=1) / px
            scan = c + np.asarray(obj.shape) / 2 - n / 2
            attrs = {}
        epochs = f["loss_epochs"][()] if "loss_epochs" in f else np.arange(0)
        values = f["loss_values"][()] if "loss_values" in f else np.arange(0)
    return {"object": obj, "probe": probe, "scan": scan, "pixel_size": px,
            "losses": list(zip(epochs.tolist(), values.tolist())), "attrs": attrs}
