"""The one place that decides the array module ``xp`` (NumPy or CuPy) and the working precision.

Everything else in ptyhpc takes ``xp`` from its input arrays (:func:`array_module`), so physics and algorithms run
unchanged on the CPU and on a GPU. CuPy is imported here and nowhere else.
"""
from __future__ import annotations

import os

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


def _cpu_fft(name: str):
    """(name, module) of the CPU FFT library ``name``: 'scipy' (scipy.fft: pocketfft, whose transforms do not
    depend on the run or the batch) or 'fftw' (pyFFTW's scipy.fft interface, the ``fftw`` extra; a
    :class:`DeviceError` without it). Both keep the input's precision and take ``workers``. FFTW's plans are measured (FFTW_MEASURE: the
    first transform of a shape takes up to a few tenths of a second, later ones reuse its wisdom) and cached while
    in use (10 s keep-alive, so a one-off large transform's buffers are not held); which plan wins the timing can
    change from run to run, and with it the last bit of the results."""
    if name == "fftw":
        try:
            import pyfftw
            import pyfftw.interfaces.scipy_fft as fftw
        except ImportError:
            raise DeviceError("setting fft = 'fftw' needs pyFFTW, which is not installed here: pip install "
                              "'ptyhpc[fftw]', or leave fft at 'scipy'") from None
        pyfftw.config.PLANNER_EFFORT = "FFTW_MEASURE"
        pyfftw.interfaces.cache.enable()
        pyfftw.interfaces.cache.set_keepalive_time(10)
        return "fftw", fftw
    if name != "scipy":
        raise ValueError(f"unknown CPU FFT library {name!r}: use 'scipy' or 'fftw'")
    import scipy.fft

    return "scipy", scipy.fft


FFT_LIBRARY, CPU_FFT = _cpu_fft("scipy")
"""Name and module (scipy.fft's ``fft2``/``ifft2`` signature) of the CPU FFT in use (:func:`use_cpu_fft`)."""


def use_cpu_fft(name: str) -> None:
    """Compute CPU FFTs with ``name`` ('scipy' or 'fftw', see :func:`_cpu_fft`) from now on (the setting ``fft``;
    the engine calls this)."""
    global FFT_LIBRARY, CPU_FFT
    FFT_LIBRARY, CPU_FFT = _cpu_fft(name)


def limit_threads(ranks_on_node: int, blas_one: bool = False) -> None:
    """Give this rank's cores (cores / ranks_on_node) to its FFTs (:data:`FFT_WORKERS`), and one thread to BLAS
    when several ranks share the node or ``blas_one`` (the engine sets it with ``fft = 'fftw'``, whose threads
    BLAS's would take); when the user set OMP_NUM_THREADS, that many threads to both (the user's environment
    decides BLAS). A lone process with scipy's FFTs keeps BLAS as it is: there its thread count hardly matters
    (below), and one BLAS thread in a stream process (set here at run time or by OPENBLAS_NUM_THREADS=1) makes
    its frames subscription miss a restarted server in about half of the runs (tests/test_stream.py, restarts;
    not understood: the README's streaming section says what is known).

    The matrix products here are thin (4 x BATCH by BATCH x N^2 for the sub-pixel shifts: memory-bound, nothing
    for a second thread to gain), and an idle OpenBLAS thread spins for a while after each product, taking the core
    an FFT thread needs: with two BLAS threads beside two FFTW threads on 2 cores an rPIE epoch took 0.554 s
    instead of 0.148 s (scripts/bench_threads.py at c903314; with scipy's FFTs on one thread BLAS's count hardly
    matters, 0.179 and 0.177 s). ``ptyhpc/__init__`` sets BLAS's threads through the environment
    under mpiexec when it is imported before NumPy; this runtime limit (threadpoolctl) covers every other case.
    """
    global FFT_WORKERS
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if os.environ.get("PTYHPC_USER_THREADS"):
        FFT_WORKERS = max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
        return
    FFT_WORKERS = max(1, cores // max(ranks_on_node, 1))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    if blas_one or ranks_on_node > 1:
        threadpool_limits(1, user_api="blas")


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
