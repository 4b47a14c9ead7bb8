"""What one process gains from its cores and how a batch's object sums are best accumulated on the CPU.

1. Accumulation (``physics.scatter_add``'s choice): 16 windows of 128^2 complex64 added into a 512^2 array, by one
   slice-add per window (what ptyhpc does on NumPy), by ``np.add.at`` and by two ``np.bincount`` calls.
2. FFT threads alone: ``physics.fft2`` of 16 x 1 x 64^2, 16 x 1 x 128^2 and 16 x 1 x 256^2 complex64 with 1 and
   with 2 workers, with each CPU FFT library (scipy.fft and, when installed, FFTW; what
   ``physics.THREADED_FFT_SIZE`` is chosen from).
3. Threads in the loop: seconds per rPIE epoch on the default simulated set (one process) for each FFT library,
   ``backend.FFT_WORKERS`` 1 and 2, and 1 and 2 BLAS threads (what ``backend.limit_threads`` chooses from), all
   combinations alternating, median of ``--rounds``.
Writes benchmarks/threads.json.

    .venv/bin/python scripts/bench_threads.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import save  # noqa: E402


def best(fn, repeats=30) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def accumulation() -> dict:
    rng = np.random.default_rng(0)
    h = w = 512
    n, b = 128, 16
    corner = rng.integers(0, h - n, (b, 2))
    patches = (rng.standard_normal((b, n, n)) + 1j * rng.standard_normal((b, n, n))).astype(np.complex64)
    rows = corner[:, 0, None, None] + np.arange(n)[:, None]
    cols = corner[:, 1, None, None] + np.arange(n)[None, :]
    flat = (rows * w + cols).ravel()
    obj = np.zeros((h, w), np.complex64)

    def loop():
        for (y, x), p in zip(corner.tolist(), patches):
            obj[y:y + n, x:x + n] += p

    def add_at():
        np.add.at(obj, (rows, cols), patches)

    def bincount():
        obj.real += np.bincount(flat, patches.real.ravel(), h * w).reshape(h, w)
        obj.imag += np.bincount(flat, patches.imag.ravel(), h * w).reshape(h, w)

    return {name: best(fn) for name, fn in (("slice_loop", loop), ("add_at", add_at), ("bincount", bincount))}


def libraries() -> list:
    from ptyhpc import backend

    try:
        backend.use_cpu_fft("fftw")
        return ["scipy", "fftw"]
    except backend.DeviceError:
        return ["scipy"]
    finally:
        backend.use_cpu_fft("scipy")


def fft_alone() -> dict:
    from ptyhpc import backend, physics

    out = {}
    saved = dict(physics.THREADED_FFT_SIZE)
    for lib in libraries():
        backend.use_cpu_fft(lib)
        physics.THREADED_FFT_SIZE[lib] = 0  # thread every size here, to see where it pays
        for n in (64, 128, 256):
            x = (np.random.default_rng(1).standard_normal((16, 1, n, n)) + 1j).astype(np.complex64)
            for workers in (1, 2):
                backend.FFT_WORKERS = workers
                out[f"{lib}_16x{n}^2_workers_{workers}"] = best(lambda: physics.fft2(x), 100)
    physics.THREADED_FFT_SIZE.update(saved)
    backend.use_cpu_fft("scipy")
    return out


def threads_in_loop(rounds: int) -> dict:
    import tempfile

    from threadpoolctl import threadpool_limits

    from ptyhpc import backend, physics
    from ptyhpc.config import ReconConfig
    from ptyhpc.engine import Reconstruction
    from ptyhpc.io import load
    from ptyhpc.simulate import SimConfig, initial_probe_guess, write

    combos = [(lib, fft, blas) for lib in libraries() for fft in (1, 2) for blas in (1, 2)]
    saved = dict(physics.THREADED_FFT_SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sim.cxi")
        write(path, SimConfig())
        rec = Reconstruction(load(path), ReconConfig(algorithm="rpie"), probe=initial_probe_guess(SimConfig()))
        times = {c: [] for c in combos}
        for _ in range(rounds):
            for lib, fft, blas in combos:
                backend.use_cpu_fft(lib)
                backend.FFT_WORKERS = fft
                physics.THREADED_FFT_SIZE[lib] = 0  # the batch's FFTs on ``fft`` threads
                with threadpool_limits(blas, user_api="blas"):
                    rec.iterate(1)
                    t = time.perf_counter()
                    rec.iterate(4)
                    times[(lib, fft, blas)].append((time.perf_counter() - t) / 4)
    physics.THREADED_FFT_SIZE.update(saved)
    return {f"{lib}_fft_{fft}_blas_{blas}": float(np.median(v)) for (lib, fft, blas), v in times.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    acc, loop, alone = accumulation(), threads_in_loop(args.rounds), fft_alone()
    print("accumulation, 16 x 128^2 into 512^2: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in acc.items()))
    print("fft2 alone: " + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in alone.items()))
    print("rPIE epoch, default set, 1 process:\n  " + "\n  ".join(f"{k} {v:.4f} s" for k, v in loop.items()))
    save("threads", {"ranks": 1, "accumulation_seconds": acc, "fft_alone_seconds": alone,
                     "rpie_seconds_per_epoch": loop, "rounds": args.rounds})


if __name__ == "__main__":
    main()
