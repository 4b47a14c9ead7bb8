"""HDF5 opening in one place: the ``mpio`` driver on the given communicator when h5py is built against parallel
HDF5 and more than one rank reads, plain independent opens otherwise (each rank opens the file read-only)."""
from __future__ import annotations

import h5py

from .dataset import InputError


def parallel_available() -> bool:
    return bool(h5py.get_config().mpi)


def open_file(path, mode: str = "r", comm=None):
    """h5py.File on ``path``; collective (mpio) when ``comm`` has several ranks and h5py is parallel.

    Opening, creating datasets and writing attributes are then collective: every rank must make the same
    calls with the same arguments (HDF5's rule for metadata in parallel).
    """
    try:
        if comm is not None and comm.Get_size() > 1 and parallel_available():
            return h5py.File(path, mode, driver="mpio", comm=comm)
        return h5py.File(path, mode)
    except OSError as e:
        if mode == "r":
            raise InputError(path, "-", f"not a readable HDF5 file ({e})") from None
        raise


def read_rows(path, dataset: str, indices, comm=None):
    """Rows ``indices`` (sorted, increasing) of ``path:dataset`` along its first axis.

    Consecutive indices are read as one hyperslab each, so a rank's contiguous runs cost one read apiece.
    """
    import numpy as np

    indices = np.asarray(indices, dtype=np.int64)
    with open_file(path, "r", comm) as f:
        d = f[dataset]
        out = np.empty((len(indices),) + d.shape[1:], dtype=np.float32)
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1
        start = 0
        try:
            for run in np.split(indices, breaks) if len(indices) else []:
                out[start:start + len(run)] = d[run[0]:run[-1] + 1]
                start += len(run)
        except OSError as e:
            raise InputError(path, dataset, f"reading patterns failed, truncated or corrupt file? ({e})") from None
        return out
