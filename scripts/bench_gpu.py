"""Seconds per epoch on one device, against the FFTs alone: rPIE and LSQML on the standard set and on a large one.

Sets: ``standard`` (the default simulated set: 700 patterns of 128^2, 512^2 object) and ``large`` (10,000
patterns of 256^2 over a 4096^2 object; ``--large-positions`` and ``--large-object`` shrink it for a CPU run).
For each algorithm: the seconds of each epoch (median of epochs 2..E) with the batch size given (``--batch``;
a GPU wants large batches), the time from the start to the end of the first epoch (when the first preview can
be shown), and the FFT roofline: the same forward and inverse FFTs an epoch runs (2 per position for rPIE, 4
for LSQML: the model, the exit-wave update and the two step directions), timed alone in batches of the same
size; "fraction" = that time / the epoch's. Object NRMSE against the truth (ramp removed) after the last
epoch. Records the device, driver and library versions. Writes benchmarks/gpu_<device>.json.

    python scripts/bench_gpu.py --device gpu [--epochs 20] [--sets standard large] [--batch 256]
    python scripts/bench_gpu.py --device cpu --sets standard --epochs 5     # the same script on the CPU
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import save  # noqa: E402

FFTS_PER_POSITION = {"rpie": 2, "lsqml": 4}


def versions(xp) -> dict:
    import h5py
    import scipy

    out = {"numpy": np.__version__, "scipy": scipy.__version__, "h5py": h5py.__version__}
    if xp is not np:
        rt = xp.cuda.runtime
        props = rt.getDeviceProperties(xp.cuda.Device().id)
        name = props["name"]
        out.update({"cupy": xp.__version__, "device": name.decode() if isinstance(name, bytes) else name,
                    "driver": rt.driverGetVersion(), "cuda_runtime": rt.runtimeGetVersion(),
                    "memory_bytes": int(props["totalGlobalMem"])})
    else:
        from ptyhpc import backend

        out["device"] = backend.describe(np)
    return out


def make_set(name, args):
    from ptyhpc.io.dataset import from_arrays
    from ptyhpc.simulate import SimConfig, initial_probe_guess, simulate

    if name == "standard":
        cfg = SimConfig()
    else:
        cfg = SimConfig(object_size=args.large_object, probe_size=256, positions=args.large_positions,
                        probe_diameter=88, aperture_radius=32)
    patterns, scan, obj, probe, mask = simulate(cfg)
    return from_arrays(patterns, scan, mask=mask), {"object": obj, "scan": scan}, initial_probe_guess(cfg), cfg


def fft_roofline(xp, n, positions, batch, per_position, repeats=3):
    """Seconds for ``per_position`` forward/inverse FFT pairs of ``positions`` patterns of n^2, in batches."""
    from ptyhpc import physics
    from ptyhpc.backend import synchronize

    x = xp.ones((batch, 1, n, n), dtype=xp.complex64)
    physics.ifft2(physics.fft2(x))
    best = np.inf
    for _ in range(repeats):
        synchronize(xp)
        t0 = time.perf_counter()
        for _ in range(-(-positions // batch)):
            for _ in range(per_position // 2):
                x = physics.ifft2(physics.fft2(x))
        synchronize(xp)
        best = min(best, time.perf_counter() - t0)
    return best


def run(algorithm, dataset, truth, p0, args, xp):
    from ptyhpc.compare import object_errors
    from ptyhpc.config import ReconConfig
    from ptyhpc.engine import Reconstruction

    cfg = ReconConfig(algorithm=algorithm, device=args.device, batch_size=args.batch)
    t0 = time.perf_counter()
    rec = Reconstruction(dataset, cfg, probe=p0)
    rec.iterate(1)
    first = time.perf_counter() - t0
    rec.iterate(args.epochs - 1)
    seconds = float(np.median(rec.history.seconds[1:])) if args.epochs > 1 else rec.history.seconds[0]
    errors = object_errors(rec.gather_object(), dataset.scan, truth["object"], truth["scan"], dataset.n)
    fft = fft_roofline(xp, dataset.n, dataset.count, cfg.batch, FFTS_PER_POSITION[algorithm])
    return {"algorithm": algorithm, "batch": cfg.batch, "epochs": args.epochs, "seconds_per_epoch": seconds,
            "seconds_to_first_epoch": first, "fft_seconds_per_epoch": fft, "fft_fraction": fft / seconds,
            "object_nrmse_ramp": errors["object_nrmse_ramp"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=0, help="positions per batch (0: each algorithm's default)")
    p.add_argument("--sets", nargs="+", default=["standard", "large"], choices=("standard", "large"))
    p.add_argument("--algorithms", nargs="+", default=["rpie", "lsqml"], choices=("rpie", "lsqml"))
    p.add_argument("--large-positions", type=int, default=10000)
    p.add_argument("--large-object", type=int, default=4096)
    args = p.parse_args()
    from ptyhpc.backend import get_xp, limit_threads

    limit_threads(1)
    xp = get_xp(args.device)
    results = []
    for name in args.sets:
        dataset, truth, p0, cfg = make_set(name, args)
        for algorithm in args.algorithms:
            r = run(algorithm, dataset, truth, p0, args, xp)
            r.update({"set": name, "patterns": dataset.count, "n": dataset.n, "object": list(dataset.object_shape)})
            results.append(r)
            print(f"{name:8s} {algorithm:5s} batch {r['batch']:4d}: {r['seconds_per_epoch']:.4f} s/epoch, FFTs alone "
                  f"{r['fft_seconds_per_epoch']:.4f} s ({100 * r['fft_fraction']:.0f} %), first epoch done after "
                  f"{r['seconds_to_first_epoch']:.2f} s, NRMSE {r['object_nrmse_ramp']:.4f}", flush=True)
    save(f"gpu_{args.device}", {"device": args.device, "ranks": 1, "versions": versions(xp), "results": results})


if __name__ == "__main__":
    main()
