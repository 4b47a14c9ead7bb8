"""HDF5 opening in one place: the ``mpio`` driver on the given communicator when h5py is built against parallel
HDF5 and more than one rank reads, plain independent opens otherwise (each rank opens the file read-only)."""
from __future__ import annotations

import os

import h5py
import numpy as np

from ..comm import Ranks
from .dataset import InputError


def _missing_filters(d) -> list:
    """[(code, name)] of the filters dataset ``d`` is compressed with that HDF5 cannot load here."""
    plist = d.id.get_create_plist()
    missing = []
    for i in range(plist.get_nfilters()):
        code, _, _, name = plist.get_filter(i)
        if not h5py.h5z.filter_avail(code):
            missing.append((code, name.decode(errors="replace") if isinstance(name, bytes) else name))
    return missing


def load_filters(d) -> None:
    """Make HDF5 able to decode dataset ``d``: when it is compressed with a filter HDF5 lacks (bitshuffle/LZ4,
    Blosc, zstd, ...: what detectors such as the Eiger write), import hdf5plugin, which registers them. Only such
    files pay for it (about 6 MiB of every process's memory); without hdf5plugin nothing happens (reading then
    fails, :func:`locate` says why)."""
    if not _missing_filters(d):
        return
    try:
        import hdf5plugin  # noqa: F401 (importing it registers the filters)
    except ImportError:
        pass


def parallel_available() -> bool:
    """True when h5py has MPI and it is not switched off with ``PTYHPC_MPIO=0`` (which forces the path a serial
    h5py takes: independent opens for reading, rank 0 writing)."""
    return bool(h5py.get_config().mpi) and os.environ.get("PTYHPC_MPIO", "1") != "0"


def runs(indices) -> list[tuple[int, int]]:
    """[(start, stop)] positions in ``indices`` (sorted) of its runs of consecutive values."""
    indices = np.asarray(indices)
    if not len(indices):
        return []
    cuts = np.flatnonzero(np.diff(indices) != 1) + 1
    return list(zip([0, *cuts.tolist()], [*cuts.tolist(), len(indices)]))


def open_file(path, mode: str = "r", comm=None):
    """h5py.File on ``path``; collective (mpio) when ``comm`` (``comm.Ranks``, an mpi4py communicator or None) has
    several ranks and h5py is parallel.

    Opening, creating datasets and writing attributes are then collective: every rank must make the same
    calls with the same arguments (HDF5's rule for metadata in parallel).
    """
    mpi = Ranks.of(comm).mpi  # the communicator itself, for HDF5 (None on one rank)
    try:
        if mpi is not None and parallel_available():
            return h5py.File(path, mode, driver="mpio", comm=mpi)
        return h5py.File(path, mode)
    except OSError as e:
        if mode == "r":
            raise InputError(path, "-", f"not a readable HDF5 file ({e})") from None
        raise


def locate(f, key: str):
    """The dataset ``f[key]`` and every file it reads from, checked so that reading it cannot silently fail.

    Returns (dataset, sources, virtual): ``sources`` the absolute paths of the files holding its data (the file
    an external link points to; each source file of a virtual dataset), ``virtual`` True for a virtual dataset
    (parallel HDF5 cannot read those: read them with independent opens). Raises InputError for an external link
    that cannot be followed, a virtual dataset whose source file or dataset is missing (HDF5 would read zeros
    there without a word) and a compression filter this installation cannot decode.
    """
    path = f.filename
    try:
        d = f[key]
    except KeyError as e:
        link = f.get(key, getlink=True)
        for _ in range(16):  # follow soft links (CXI's data_1/data) to what cannot be followed
            if not isinstance(link, h5py.SoftLink):
                break
            link = f.get(link.path, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise InputError(path, key, f"external link to {link.filename}:{link.path} cannot be followed (missing "
                                        "file or dataset?)") from None
        raise InputError(path, key, f"cannot be opened ({e})") from None
    if not isinstance(d, h5py.Dataset):
        raise InputError(path, key, "is a group, not a dataset")
    sources = [os.path.abspath(d.file.filename)]
    _check_filters(path, key, d)
    if not d.is_virtual:
        return d, sources, False
    here = os.path.dirname(os.path.abspath(d.file.filename))
    for m in d.virtual_sources():
        if m.file_name == ".":
            continue
        candidates = [m.file_name] if os.path.isabs(m.file_name) else [os.path.join(here, m.file_name), m.file_name]
        found = next((c for c in candidates if os.path.isfile(c)), None)
        if found is None:
            raise InputError(path, key, f"virtual dataset source file {m.file_name} is missing (HDF5 would read its "
                                        "frames as zeros)")
        with h5py.File(found, "r") as src:
            if m.dset_name not in src:
                raise InputError(path, key, f"virtual dataset source {m.file_name}:{m.dset_name} is missing (HDF5 "
                                            "would read its frames as zeros)")
            _check_filters(found, m.dset_name, src[m.dset_name])
        sources.append(os.path.abspath(found))
    return d, list(dict.fromkeys(sources)), True


def _check_filters(path, key, d) -> None:
    """Raise InputError when ``d`` is compressed with a filter HDF5 cannot load here (hdf5plugin's included)."""
    load_filters(d)
    missing = _missing_filters(d)
    if missing:
        code, name = missing[0]
        raise InputError(path, key, f"compressed with HDF5 filter {code} ({name or 'unnamed'}), which this "
                                    "installation cannot decode: pip install hdf5plugin (ptyhpc loads it)")


def read_rows(path, dataset: str, indices, comm=None, dtype=np.float32, independent: bool = False):
    """Rows ``indices`` (sorted, increasing) of ``path:dataset`` along its first axis, as ``dtype`` (None: as
    stored). ``independent``: open the file on this rank alone even under MPI (virtual datasets, which parallel
    HDF5 cannot read).

    Each run of consecutive indices is one hyperslab, read independently. With ``PTYHPC_COLLECTIVE_READ=1`` under
    mpio (every rank of ``comm`` calls this) a rank's hyperslabs are one selection read in a single collective
    call instead, so MPI-IO can aggregate the ranks' requests: measure it with scripts/bench_io.py on your
    filesystem first (on this 2-core VM's local disk it was slower: 19x at 4 ranks, benchmarks/io.json).
    """
    with open_file(path, "r", None if independent else comm) as f:
        return rows_of(f[dataset], indices, dtype)


def row_blocks(path, dataset: str, indices, comm=None, dtype=None, independent: bool = False, block: int = 256):
    """Rows ``indices`` (sorted) of ``path:dataset`` as an iterator of consecutive blocks of ``block`` rows, from
    one open of the file (under mpio the open is collective and the block reads independent, so ranks with
    different numbers of blocks never wait for each other; with collective reads on, one block of all rows)."""
    indices = np.asarray(indices, dtype=np.int64)
    with open_file(path, "r", None if independent else comm) as f:
        d = f[dataset]
        collective = f.driver == "mpio" and collective_reads()  # asked once: the query is collective under mpio
        if collective:
            yield rows_of(d, indices, dtype, collective=True)
            return
        for start in range(0, max(len(indices), 1), block):
            yield rows_of(d, indices[start:start + block], dtype, collective=False)


def collective_reads() -> bool:
    """True when ``PTYHPC_COLLECTIVE_READ=1``: under mpio each rank's rows are one collective read, which every
    rank must make together (so a rank reads its rows in one call, not block by block)."""
    return os.environ.get("PTYHPC_COLLECTIVE_READ", "0") == "1"


def rows_of(d, indices, dtype=None, collective=None):
    """Rows ``indices`` (sorted) of the open dataset ``d``, as ``dtype`` (None: as stored); see ``read_rows``.
    ``collective``: read them in one collective call (None: when the file is mpio and collective reads are on;
    that query is itself collective under mpio, so a caller reading several blocks asks it once)."""
    indices = np.asarray(indices, dtype=np.int64)
    load_filters(d)
    out = np.empty((len(indices),) + d.shape[1:], dtype=dtype or d.dtype)
    if collective is None:
        collective = d.file.driver == "mpio" and collective_reads()
    try:
        if collective:
            _read_collective(d, indices, out)
        else:
            for start, stop in runs(indices):
                d.read_direct(out, np.s_[indices[start]:indices[stop - 1] + 1], np.s_[start:stop])
    except OSError as e:
        raise InputError(d.file.filename, d.name.lstrip("/"),
                         f"reading rows failed, truncated or corrupt file? ({e})") from None
    return out


def _read_collective(d, indices, out) -> None:
    """Read rows ``indices`` of dataset ``d`` into ``out`` with one collective H5Dread (a union of hyperslabs)."""
    from h5py import h5fd, h5p, h5s

    tail = tuple(d.shape[1:])
    fspace = d.id.get_space()
    fspace.select_none()
    for start, stop in runs(indices):
        fspace.select_hyperslab((int(indices[start]),) + (0,) * len(tail), (stop - start,) + tail, op=h5s.SELECT_OR)
    mspace = h5s.create_simple(out.shape)
    if not len(indices):
        mspace.select_none()
    dxpl = h5p.create(h5p.DATASET_XFER)
    dxpl.set_dxpl_mpio(h5fd.MPIO_COLLECTIVE)
    d.id.read(mspace, fspace, out, dxpl=dxpl)
