"""Seconds per epoch on one device, against the FFTs alone: rPIE and LSQML on the standard set and on a large one.

Sets: ``standard`` (the default simulated set: 700 patterns of 128^2, 512^2 object) and ``large`` (10,000
patterns of 256^2 over a 4096^2 object; ``--large-positions`` and ``--large-object`` shrink it for a CPU run).
For each algorithm: the seconds of each epoch (median of epochs 2..E) with the batch size given (``--batch``;
a GPU wants large batches), the time from the start to the end of the first epoch (when the first preview can
be shown), and the FFT roofline: the same forward and inverse FFTs an epoch runs (2 per position for rPIE, 4
for LSQML: the model, the exit-wave update and the two step directions), timed alone in batches of the same
size; "fraction" = that time / the epoch's. Object NRMSE against the truth (ramp removed) after the last
epoch, scored like every benchmark here (ptyhpc.compare.object_errors).

Pty-chi beside it (scripts/peers/ptychi_driver.py), same set, same epochs, same starting object and probe, same
batch size, same scoring, on the same device (its GPU backend through PyTorch, with its ``save_data_on_device``;
on the CPU with as many threads as ptyhpc's FFTs have, all cores of the process); "ptyhpc_ratio" = ptyhpc's seconds per
epoch / Pty-chi's. Its interpreter: ``--ptychi PY``, else .peers/ptychi (scripts/setup_peers.sh), else this one
when it finds the package (the device machine, with the wheels scripts/gpu_wheels.sh fetches); ``--no-ptychi``
leaves it out.

``--feedback-epochs N``: one more ptyhpc LSQML run of N epochs on the large set (when it is among ``--sets``), timed
from the start (the data in memory) to the end of the last epoch: the "minutes of feedback" figure (issue 17: 100
epochs within 60 s, the first epoch, when a preview can be shown, within 10 s). Records the device, driver and
library versions. Writes benchmarks/gpu_<device>.json.

    python scripts/bench_gpu.py --device gpu [--epochs 20] [--sets standard large] [--batch 256]
    python scripts/bench_gpu.py --device cpu --sets standard --epochs 5     # the same script on the CPU
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, save  # noqa: E402

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


def run(algorithm, dataset, truth, p0, epochs, batch, device, xp):
    from ptyhpc.backend import synchronize
    from ptyhpc.compare import object_errors
    from ptyhpc.config import ReconConfig
    from ptyhpc.engine import Reconstruction

    cfg = ReconConfig(algorithm=algorithm, device=device, batch_size=batch)
    t0 = time.perf_counter()
    rec = Reconstruction(dataset, cfg, probe=p0)
    rec.iterate(1)
    first = time.perf_counter() - t0
    rec.iterate(epochs - 1)
    synchronize(xp)
    total = time.perf_counter() - t0
    seconds = float(np.median(rec.history.seconds[1:])) if epochs > 1 else rec.history.seconds[0]
    errors = object_errors(rec.gather_object(), dataset.scan, truth["object"], truth["scan"], dataset.n)
    return {"algorithm": algorithm, "batch": cfg.batch, "epochs": epochs, "seconds_per_epoch": seconds,
            "seconds_to_first_epoch": first, "seconds_total": total,
            "object_nrmse_ramp": errors["object_nrmse_ramp"]}


def ptychi_python(args):
    """The interpreter that runs Pty-chi (see the module's docstring), or None."""
    if args.no_ptychi:
        return None
    if args.ptychi:
        return args.ptychi
    venv = os.path.join(ROOT, ".peers", "ptychi", "bin", "python")
    if os.path.exists(venv):
        return venv
    return sys.executable if importlib.util.find_spec("ptychi") else None


def run_ptychi(python, tmp, problem, algorithm, batch, dataset, truth, device):
    from bench_peers import run_peer

    from ptyhpc.compare import object_errors

    obj, corners, seconds, out = run_peer(tmp, "ptychi", problem, algorithm, batch, python=python, device=device)
    errors = object_errors(obj, corners, truth["object"], truth["scan"], dataset.n)
    return {"batch": batch, "seconds_per_epoch": float(np.median(seconds[1:] if len(seconds) > 1 else seconds)),
            "seconds_to_first_epoch": float(out["seconds_to_first_epoch"]),
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
    p.add_argument("--feedback-epochs", type=int, default=0, help="epochs of the large set's feedback run (0: none)")
    p.add_argument("--ptychi", metavar="PY", help="the Python that runs Pty-chi")
    p.add_argument("--no-ptychi", action="store_true", help="leave Pty-chi out")
    args = p.parse_args()
    from bench_peers import write_problem

    from ptyhpc.backend import get_xp, limit_threads

    limit_threads(1)
    xp = get_xp(args.device)
    ptychi = ptychi_python(args)
    print(f"Pty-chi: {ptychi or 'not found (pass --ptychi PY, or run scripts/setup_peers.sh)'}", flush=True)
    results, peer, feedback = [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            dataset, truth, p0, cfg = make_set(name, args)
            problem = os.path.join(tmp, "problem.npz")
            if ptychi:
                write_problem(problem, dataset.read_patterns(np.arange(dataset.count)).intensity, dataset.scan,
                              dataset.object_shape, p0, args.epochs, threads=len(os.sched_getaffinity(0)))
            for algorithm in args.algorithms:
                r = run(algorithm, dataset, truth, p0, args.epochs, args.batch, args.device, xp)
                r["fft_seconds_per_epoch"] = fft_roofline(xp, dataset.n, dataset.count, r["batch"],
                                                          FFTS_PER_POSITION[algorithm])
                r["fft_fraction"] = r["fft_seconds_per_epoch"] / r["seconds_per_epoch"]
                r.update({"set": name, "patterns": dataset.count, "n": dataset.n,
                          "object": list(dataset.object_shape)})
                results.append(r)
                print(f"{name:8s} {algorithm:5s} batch {r['batch']:4d}: {r['seconds_per_epoch']:.4f} s/epoch, FFTs "
                      f"alone {r['fft_seconds_per_epoch']:.4f} s ({100 * r['fft_fraction']:.0f} %), first epoch "
                      f"done after {r['seconds_to_first_epoch']:.2f} s, NRMSE {r['object_nrmse_ramp']:.4f}",
                      flush=True)
                if ptychi:
                    q = run_ptychi(ptychi, tmp, problem, algorithm, r["batch"], dataset, truth, args.device)
                    q.update({"set": name, "algorithm": algorithm, "epochs": args.epochs,
                              "ptyhpc_ratio": r["seconds_per_epoch"] / q["seconds_per_epoch"]})
                    peer.append(q)
                    print(f"{name:8s} {algorithm:5s} Pty-chi batch {q['batch']:4d}: {q['seconds_per_epoch']:.4f} "
                          f"s/epoch, first epoch done after {q['seconds_to_first_epoch']:.2f} s, NRMSE "
                          f"{q['object_nrmse_ramp']:.4f}; ptyhpc's time {q['ptyhpc_ratio']:.2f}x", flush=True)
            if name == "large" and args.feedback_epochs:
                feedback = run("lsqml", dataset, truth, p0, args.feedback_epochs, args.batch, args.device, xp)
                print(f"feedback: {args.feedback_epochs} LSQML epochs of the large set in "
                      f"{feedback['seconds_total']:.1f} s (first epoch done after "
                      f"{feedback['seconds_to_first_epoch']:.2f} s), NRMSE {feedback['object_nrmse_ramp']:.4f}",
                      flush=True)
            del dataset
    save(f"gpu_{args.device}", {"device": args.device, "ranks": 1, "versions": versions(xp), "results": results,
                                "ptychi": peer, "ptychi_python": ptychi, "feedback": feedback})


if __name__ == "__main__":
    main()
