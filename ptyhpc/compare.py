"""Scoring a reconstruction against ground truth, with one function for ptyhpc and for its peers."""
from __future__ import annotations

import numpy as np


def phase_ramp(z: np.ndarray) -> np.ndarray:
    """exp(i (gy y + gx x)): the linear phase ramp of ``z``, from its mean neighbour phase differences."""
    gy = np.angle(np.sum(z[1:, :] * np.conj(z[:-1, :])))
    gx = np.angle(np.sum(z[:, 1:] * np.conj(z[:, :-1])))
    y, x = np.mgrid[: z.shape[0], : z.shape[1]]
    return np.exp(1j * (gy * y + gx * x))


def nrmse(rec: np.ndarray, true: np.ndarray, ramp: bool = False) -> float:
    """||a rec - true|| / ||true|| with the best global complex factor a (after a linear phase ramp of
    rec / true is removed, when ``ramp``)."""
    rec = rec.astype(np.complex128)
    true = true.astype(np.complex128)
    if ramp:
        rec = rec * np.conj(phase_ramp(rec * np.conj(true)))
    a = np.vdot(rec, true) / max(np.vdot(rec, rec).real, 1e-300)
    return float(np.linalg.norm(a * rec - true) / np.linalg.norm(true))


def scanned_region(scan: np.ndarray, n: int) -> tuple:
    """(y0, y1, x0, x1): the rectangle spanned by the probe centres (window corners + N/2)."""
    c = scan + n / 2
    lo = np.ceil(c.min(axis=0)).astype(int)
    hi = np.floor(c.max(axis=0)).astype(int) + 1
    return lo[0], hi[0], lo[1], hi[1]


def object_errors(rec_obj, rec_scan, true_obj, true_scan, n) -> dict:
    """Object NRMSE inside the rectangle spanned by the scan centres, with the two frames aligned by the
    positions (their integer offset), without and with removal of a linear phase ramp."""
    offset = np.median(np.asarray(rec_scan) - np.asarray(true_scan), axis=0)
    shift = np.round(offset).astype(int)
    y0, y1, x0, x1 = scanned_region(np.asarray(true_scan), n)
    t = true_obj[y0:y1, x0:x1]
    r = rec_obj[y0 + shift[0]:y1 + shift[0], x0 + shift[1]:x1 + shift[1]]
    if r.shape != t.shape:
        raise ValueError(f"the reconstruction ({rec_obj.shape}) does not cover the scanned region of the truth")
    return {"object_nrmse": nrmse(r, t), "object_nrmse_ramp": nrmse(r, t, ramp=True),
            "region": [int(y0), int(y1), int(x0), int(x1)], "frame_offset": offset.tolist()}


def position_error(rec_scan, true_scan) -> float:
    """RMS distance (pixels) between two sets of positions (POSI, 2) of the same scan after removing their mean
    offset (the global position is degenerate with the object's)."""
    d = np.asarray(rec_scan, dtype=np.float64) - np.asarray(true_scan, dtype=np.float64)
    d -= d.mean(axis=0)
    return float(np.sqrt((d ** 2).sum(axis=1).mean()))


def probe_error(rec_probe, true_probe) -> float:
    """NRMSE of the first (strongest) probe mode with a global complex factor: mixed states are compared through
    their dominant orthogonal mode."""
    return nrmse(np.asarray(rec_probe).reshape((-1,) + rec_probe.shape[-2:])[0],
                 np.asarray(true_probe).reshape((-1,) + true_probe.shape[-2:])[0])


def compare_files(result, truth) -> dict:
    from .io.product import read_product

    r, t = read_product(result), read_product(truth)
    n = t["probe"].shape[-1]
    out = object_errors(r["object"], r["scan"], t["object"], t["scan"], n)
    out["probe_nrmse"] = probe_error(r["probe"], t["probe"])
    if len(r["scan"]) == len(t["scan"]):
        out["position_error_px"] = position_error(r["scan"], t["scan"])
    if r["losses"]:
        out["final_cost"] = r["losses"][-1][1]
    return out
