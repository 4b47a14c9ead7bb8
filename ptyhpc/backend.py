"""The one place that decides the array module ``xp`` (NumPy or CuPy) and the working precision.

Everything else in ptyhpc takes ``xp`` from its input arrays (:func:`array_module`), so physics and algorithms run
unchanged on the CPU and on a GPU. CuPy is imported here and nowhere else.
"""
from __future__ import annotations

import json
import os
import sys
from collections import OrderedDict

import numpy as np

DTYPES = {"complex64": (np.complex64, np.float32), "complex128": (np.complex128, np.float64)}


class DeviceError(RuntimeError):
    """The requested device cannot be used on this machine."""


def _cupy():
    try:
        import cupy
    except ImportError:
        return None
    try:
        return cupy if cupy.is_available() else None
    except Exception:  # a broken CUDA install raises from is_available on some versions
        return None


def get_xp(device: str = "cpu", local_rank: int = 0):
    """Return the array module for ``device`` ('cpu', 'gpu' or 'auto') and select this rank's GPU.

    With 'gpu', rank ``local_rank`` uses GPU ``local_rank % count`` (``count - 1 - local_rank % count`` with
    ``PTYHPC_GPU_ORDER=reverse``: on Polaris GPU 3 sits beside CPUs 0-7, so with ``--depth 8 --cpu-bind depth``
    the reversed order gives each rank the GPU nearest its cores) unless ``CUDA_VISIBLE_DEVICES`` already pins
    exactly one device, in which case that one (device 0) is used. The choice is made here, in Python, before
    CuPy touches a device, so no wrapper script is needed.
    """
    if device == "cpu":
        return np
    if device not in ("gpu", "auto"):
        raise DeviceError(f"unknown device {device!r}: use 'cpu', 'gpu' or 'auto'")
    cp = _cupy()
    if cp is None:
        if device == "auto":
            return np
        raise DeviceError(
            "--device gpu was requested but no usable GPU was found (CuPy is not installed, or "
            "cupy.is_available() is False: no CUDA driver or device). Use --device cpu, or install the 'gpu' extra "
            "on a machine with an NVIDIA GPU."
        )
    index = gpu_index(local_rank, cp.cuda.runtime.getDeviceCount(), os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                      os.environ.get("PTYHPC_GPU_ORDER", ""))
    cp.cuda.Device(index).use()
    return cp


def gpu_index(local_rank: int, count: int, visible: str = "", order: str = "") -> int:
    """The GPU (of ``count`` visible) that rank ``local_rank`` of its node uses; see :func:`get_xp`."""
    if "," not in visible and visible.strip():
        return 0  # CUDA_VISIBLE_DEVICES pins one device: it is device 0
    index = local_rank % count
    return count - 1 - index if order == "reverse" else index


FFT_WORKERS = 1
"""Threads of one CPU FFT call (``workers``): the cores this rank owns, set by :func:`limit_threads`."""


FFTW_WISDOM = os.environ.get("PTYHPC_FFTW_WISDOM") or os.path.join(sys.prefix, "share", "ptyhpc", "fftw-wisdom")
"""The machine's FFTW plans (FFTW's wisdom), made once by ``ptyhpc plan-fft`` (``scripts/setup.sh`` runs it) and
only read afterwards: the default CPU FFT computes with them (:class:`PlannedFFTW`)."""

PLANNED_SHAPES = {"sizes": (64, 128, 256), "batches": range(1, 33), "modes": (1,)}
"""What ``ptyhpc plan-fft`` plans by default: the batch FFTs (BATCH, MODES, N, N) complex64 of the default settings
(rPIE batches of 16, LSQML's of 32, any smaller last batch), both directions (threads: :func:`plan_fftw`)."""


def _pyfftw():
    """pyFFTW, or None where it is not installed.

    Imported with SciPy hidden unless something has loaded it already: pyFFTW's package imports scipy.fftpack
    only to offer its SciPy interfaces, which the planned transforms (:class:`PlannedFFTW`) do not use, and SciPy's
    FFT packages cost every process 25 MiB (VmRSS 61 against 86 MiB after importing NumPy, h5py, mpi4py and
    pyFFTW on this project's 2-core development VM), part of the fixed share that keeps 4 ranks' memory above a
    quarter of one's.
    ``import pyfftw.interfaces.scipy_fft`` (``fft = 'fftw'``) still works afterwards: it imports SciPy itself."""
    hide = "scipy" not in sys.modules
    if hide:
        sys.modules["scipy"] = None  # import then raises ImportError, which pyFFTW's interfaces catch
    try:
        import pyfftw
    except ImportError:
        return None
    finally:
        if hide and sys.modules.get("scipy", 0) is None:
            del sys.modules["scipy"]
    return pyfftw


def plan_fftw(path: str = FFTW_WISDOM, sizes=PLANNED_SHAPES["sizes"], batches=PLANNED_SHAPES["batches"],
              modes=PLANNED_SHAPES["modes"], threads=None, log=lambda msg: None) -> int:
    """Measure FFTW's plans of the complex64 batch transforms (BATCH, MODES, N, N) over the last two axes, both
    directions, every batch size in ``batches`` (1..B), on 1 thread and on the threads of a rank sharing
    ``threads`` cores (default: this process's) with 0, 1, 3 or 7 others, and write them to ``path`` and what
    was planned to ``path``.json (each atomically). Returns the number of plans. A DeviceError without pyFFTW."""
    pyfftw = _pyfftw()
    if pyfftw is None:
        raise DeviceError("plan-fft needs pyFFTW, which is not installed here: pip install 'ptyhpc[fftw]'")
    cores = threads or _cores()
    counts = sorted({1} | {max(1, cores // r) for r in (1, 2, 4, 8)})  # 1, 2, 4 or 8 ranks on the node
    count = 0
    for n in sizes:
        for k in modes:
            for b in batches:
                for w in counts:
                    for direction in ("FFTW_FORWARD", "FFTW_BACKWARD"):
                        arrays = [pyfftw.empty_aligned((b, k, n, n), np.complex64) for _ in range(2)]
                        _fftw_plan(pyfftw, arrays, direction, w, ("FFTW_MEASURE",))
                        count += 1
        log(f"plan-fft: {n}x{n} planned")
    from .io.output import atomic

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    families = {"sizes": sorted(set(sizes)), "modes": sorted(set(modes)), "batch": max(batches), "threads": counts}
    for name, data in ((path + ".json", json.dumps(families).encode()),
                       (path, WISDOM_SEPARATOR.join(pyfftw.export_wisdom()))):
        with atomic(name) as tmp, open(tmp, "wb") as f:
            f.write(data)
    return count


WISDOM_SEPARATOR = b"\n\0\n"


def _load_wisdom(pyfftw, path: str) -> bool:
    """Import the wisdom file ``path`` into FFTW; False where there is none or FFTW refuses its single-precision
    part (another FFTW version)."""
    try:
        with open(path, "rb") as f:
            parts = tuple(f.read().split(WISDOM_SEPARATOR))
    except OSError:
        return False
    return len(parts) == 3 and bool(pyfftw.import_wisdom(parts)[1])


def _fftw_plan(pyfftw, arrays, direction, threads, flags):
    """A pyFFTW plan of the 2-D transform over the last two axes, from ``arrays`` = (input, output) (aligned) to
    the same shape; unitary ("ortho") when called."""
    return pyfftw.FFTW(*arrays, axes=(-2, -1), direction=direction, flags=flags, threads=threads,
                       normalise_idft=False, ortho=True)


class PlannedFFTW:
    """``fft2``/``ifft2`` (scipy.fft's signature; ``norm="ortho"``) computed by FFTW with the plans of the
    machine's wisdom (:data:`FFTW_WISDOM`) and by scipy.fft for every other transform.

    Plans only from wisdom (FFTW_WISDOM_ONLY), never measured at run time: which plan FFTW's timing picks can
    change from process to process, and with it the last bit of the results, while a plan read from the same
    wisdom computes the same bits in every process of the machine. Which library transforms an array depends only
    on its image shape (MODES, N, N), precision and thread count, never on the batch size (a batch larger than
    the planned ones goes in planned chunks): the same image then gives the same bits whatever the batch it came
    in, which is what keeps N ranks equal to one rank (DM amplifies a rounding difference ~1000x in ten
    iterations; mixing FFTW and scipy by batch size broke that) and a resumed run equal to an uninterrupted one.
    ``tests/test_physics.py`` checks that FFTW's planned transforms do not depend on the batch size and the
    threads either. The most recently used plans are kept (``KEEP``); between calls they point at two scratch
    buffers of the largest planned batch per image shape, shared by all its plans, so that they hold no batch of
    the caller's (holding each plan's last input and output cost LSQML 80 MiB at 1 rank in the multislice memory
    benchmark)."""

    KEEP = 8

    def __init__(self, pyfftw, path: str = FFTW_WISDOM):
        self._pyfftw, self._scipy = pyfftw, SCIPY_FFT
        self.path = path
        try:
            with open(path + ".json") as f:
                self.families = json.load(f)
        except (OSError, ValueError):
            self.families = None
        self.loaded = self.families is not None and _load_wisdom(pyfftw, path)
        self._plans = OrderedDict()
        self._scratch = {}
        self._missing = set()
        """(image shape, direction, threads) whose plans the wisdom lacks after all (a file replaced while this
        process ran): scipy.fft transforms them, every batch alike."""

    def fft2(self, x, norm="ortho", workers=1):
        return self._transform(x, "FFTW_FORWARD", workers, self._scipy.fft2)

    def ifft2(self, x, norm="ortho", workers=1):
        return self._transform(x, "FFTW_BACKWARD", workers, self._scipy.ifft2)

    def planned(self, x, workers: int) -> bool:
        """Whether FFTW transforms ``x`` (its image shape, precision and ``workers`` were planned)."""
        f = self.families
        return (self.loaded and x.ndim == 4 and x.dtype == np.complex64 and x.shape[-1] == x.shape[-2]
                and x.shape[-1] in f["sizes"] and x.shape[1] in f["modes"] and workers in f["threads"])

    def _transform(self, x, direction, workers, fallback):
        family = (x.shape[1:], direction, workers)
        if self.planned(x, workers) and family not in self._missing:
            step = self.families["batch"]
            try:
                plans = [self._plan((len(x[s:s + step]),) + x.shape[1:], direction, workers)
                         for s in range(0, len(x), step)]
            except RuntimeError:  # "No FFTW wisdom is known for this plan."
                self._missing.add(family)
            else:
                out = self._pyfftw.empty_aligned(x.shape, x.dtype)
                for s, plan in zip(range(0, len(x), step), plans):
                    plan(x[s:s + step], out[s:s + step], normalise_idft=False, ortho=True)
                    plan.update_arrays(*self._buffers(plan.input_shape))  # let go of the caller's arrays
                return out
        return fallback(x, norm="ortho", workers=workers)

    def _buffers(self, shape):
        """Views (shape) of the two scratch buffers of the image shape ``shape[1:]`` (aligned: every image starts
        on the alignment, as in the planned arrays)."""
        image = tuple(shape[1:])
        if image not in self._scratch:
            full = (self.families["batch"],) + image
            self._scratch[image] = tuple(self._pyfftw.empty_aligned(full, np.complex64) for _ in range(2))
        return tuple(b[:shape[0]] for b in self._scratch[image])

    def _plan(self, shape, direction, workers):
        key = (shape, direction, workers)
        plan = self._plans.pop(key, None)
        if plan is None:
            plan = _fftw_plan(self._pyfftw, self._buffers(shape), direction, workers,
                              ("FFTW_MEASURE", "FFTW_WISDOM_ONLY"))
        self._plans[key] = plan
        while len(self._plans) > self.KEEP:
            self._plans.popitem(last=False)
        return plan


_PLANNED = None
"""This process's :class:`PlannedFFTW`, made on first use: the wisdom is read once, not for every Reconstruction
(the stream builds a new one each time frames join), and its plans stay cached across them."""


def _planned_fftw(pyfftw) -> PlannedFFTW:
    global _PLANNED
    if _PLANNED is None:
        _PLANNED = PlannedFFTW(pyfftw)
    return _PLANNED


def _cpu_fft(name: str):
    """(name, module) of the CPU FFT ``name``:

    - 'auto' (the default): FFTW with the machine's plans where it has them (:class:`PlannedFFTW`; pyFFTW, the
      ``fftw`` extra, and the wisdom ``ptyhpc plan-fft`` writes, both of which ``scripts/setup.sh`` provides),
      scipy.fft otherwise; the same bits in every run of the machine;
    - 'scipy': scipy.fft (pocketfft) alone;
    - 'fftw': FFTW for every transform, planned at run time by timing (FFTW_MEASURE; the first transform of a
      shape takes up to a few tenths of a second), so two runs can differ in the last bit; a
      :class:`DeviceError` without pyFFTW.

    Each keeps the input's precision and takes ``workers``."""
    if name == "auto":
        pyfftw = _pyfftw()
        if pyfftw is not None:
            planned = _planned_fftw(pyfftw)
            if planned.loaded:
                return "fftw (planned)", planned
        name = "scipy"
    if name == "fftw":
        try:
            import pyfftw
            import pyfftw.interfaces.scipy_fft as fftw
        except ImportError:
            raise DeviceError("setting fft = 'fftw' needs pyFFTW, which is not installed here: pip install "
                              "'ptyhpc[fftw]', or set fft to 'auto' or 'scipy'") from None
        pyfftw.config.PLANNER_EFFORT = "FFTW_MEASURE"
        pyfftw.interfaces.cache.enable()
        pyfftw.interfaces.cache.set_keepalive_time(10)
        return "fftw", fftw
    if name != "scipy":
        raise ValueError(f"unknown CPU FFT library {name!r}: use 'auto', 'scipy' or 'fftw'")
    return "scipy", SCIPY_FFT


class _SciPyFFT:
    """scipy.fft's ``fft2``/``ifft2``, SciPy imported at the first transform: a process whose transforms FFTW
    computes never loads it (see :func:`_pyfftw`)."""

    def fft2(self, x, norm="ortho", workers=1):
        import scipy.fft

        return scipy.fft.fft2(x, norm=norm, workers=workers)

    def ifft2(self, x, norm="ortho", workers=1):
        import scipy.fft

        return scipy.fft.ifft2(x, norm=norm, workers=workers)


SCIPY_FFT = _SciPyFFT()


FFT_LIBRARY, CPU_FFT = _cpu_fft("scipy")
"""Name and module (scipy.fft's ``fft2``/``ifft2`` signature) of the CPU FFT in use (:func:`use_cpu_fft`)."""


def use_cpu_fft(name: str) -> str:
    """Compute CPU FFTs with ``name`` ('auto', 'scipy' or 'fftw', see :func:`_cpu_fft`) from now on (the setting
    ``fft``; the engine calls this); returns the library in use."""
    global FFT_LIBRARY, CPU_FFT
    FFT_LIBRARY, CPU_FFT = _cpu_fft(name)
    return FFT_LIBRARY


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def limit_threads(ranks_on_node: int, blas_one: bool = False) -> None:
    """Give this rank's cores (cores / ranks_on_node) to its FFTs (:data:`FFT_WORKERS`), and one thread to BLAS
    when several ranks share the node or ``blas_one`` (the engine sets it with ``fft = 'fftw'``, whose threads
    BLAS's would take); when the user set OMP_NUM_THREADS, that many threads to both (the user's environment
    decides BLAS). Call it after :func:`use_cpu_fft`.

    A lone process keeps BLAS as it is, and there FFTW's transforms run on one thread while BLAS has several. The
    matrix products here are thin (4 x BATCH by BATCH x N^2 for the sub-pixel shifts: memory-bound, nothing for a
    second thread to gain), and an idle OpenBLAS thread spins for a while after each product, taking the core an
    FFT thread needs: with two BLAS threads beside two FFTW threads on 2 cores an rPIE epoch took 0.554 s, beside
    one 0.148 s, and one FFTW thread beside two BLAS threads 0.156 s (scripts/bench_threads.py at c903314; with
    scipy's FFTs BLAS's count hardly matters, 0.179 and 0.177 s). A lone process leaves BLAS to its environment,
    0.156 s against the best, 0.148. (Until 7023d3f a further reason was that one BLAS thread in a stream process
    made the restarting-server test fail in about half of its runs; pvAccess' slow search for a lost server, which
    io.pva.Subscription now cuts short, is the likely cause.) ``ptyhpc/__init__`` sets BLAS's threads
    through the environment under mpiexec when it is imported before NumPy; this runtime limit (threadpoolctl)
    covers the other cases.
    """
    global FFT_WORKERS
    if os.environ.get("PTYHPC_USER_THREADS"):
        FFT_WORKERS = max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
        return
    FFT_WORKERS = max(1, _cores() // max(ranks_on_node, 1))
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return
    if blas_one or ranks_on_node > 1:
        threadpool_limits(1, user_api="blas")
    elif FFT_LIBRARY != "scipy" and max([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
                                        or [1]) > 1:
        FFT_WORKERS = 1


def describe(xp) -> str:
    """The device ``xp`` computes on, in words, for the first log line and the run facts."""
    if xp is np:
        return f"cpu ({FFT_LIBRARY}, {FFT_WORKERS} FFT thread{'s' if FFT_WORKERS > 1 else ''})"
    device = xp.cuda.Device()
    name = xp.cuda.runtime.getDeviceProperties(device.id)["name"]
    return f"gpu {device.id} ({name.decode() if isinstance(name, bytes) else name})"


def array_module(a):
    """NumPy or CuPy, whichever owns array ``a``."""
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def asnumpy(a) -> np.ndarray:
    """A NumPy copy (or view) of a NumPy or CuPy array."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def is_gpu_array(a) -> bool:
    return array_module(a) is not np


def synchronize(xp) -> None:
    """Wait for queued GPU work (no-op on NumPy): call before timing or before handing a buffer to MPI."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()
