"""ptyhpc against Pty-chi (PyTorch, CPU) and PtyLab (NumPy) on the same simulated data.

Same file (the default simulated set: 512^2 object, 128^2 probe, 700 positions, 1e6 photons), same algorithm
family, same epochs, same starting guesses (flat object; the probe with 25 % more defocus and no aberrations,
scaled to the mean measured intensity), each peer in its own virtual environment (scripts/setup_peers.sh),
runs interleaved (ptyhpc, Pty-chi, PtyLab, ptyhpc, ... for ``--repeats`` rounds), each scored by the same
function (ptyhpc.compare.object_errors: crop to the rectangle spanned by the scan centres, remove one global
complex factor, and separately also a linear phase ramp). Prints seconds per epoch (median over epochs 2..E,
then over rounds), the ratios to the fastest peer, and each NRMSE. Writes benchmarks/peers.json.

Families: rPIE = ptyhpc rPIE (batch 16), Pty-chi rPIE (batch 32, as in ../shared/peers.md), PtyLab mPIE;
LSQML = ptyhpc LSQML (batch 32), Pty-chi LSQML (batch 64, Gaussian). ptyhpc runs as 1 process on the 2 cores (as
the peers' 2 threads; the default ``fft = 'auto'``: FFTW with the plans ``ptyhpc plan-fft`` measured, which there
runs one thread beside BLAS's two, and with ``fft = 'scipy'``, scipy.fft alone) and on 2 ranks of one thread each.
positions: the same set with recorded positions 2 px (per coordinate, normal) random errors and a 4 px drift
off the truth (``ptyhpc simulate --position-error 2 --position-drift 4``); ptyhpc rPIE and LSQML with
``--correct-positions`` against Pty-chi's rPIE and LSQML with its position correction (defaults), both from epoch
10 (ptyhpc's default start); each also scored for its positions (RMS error after the mean offset, pixels).
multislice: the same set through a thick sample of two slices 2 depths of field (2 dx^2 / lambda) apart
(``ptyhpc simulate --slices 2``), ptyhpc's multislice LSQML against Pty-chi's (``slice_spacings_m``), each slice
scored on its own (the NRMSE columns show the worse slice; the record holds both, and the error of the slices'
product against the true projection).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, product_attrs, ptyhpc, save  # noqa: E402

from ptyhpc.compare import object_errors, position_error  # noqa: E402
from ptyhpc.io import load  # noqa: E402
from ptyhpc.io.product import read_product  # noqa: E402

PEERS = os.path.join(ROOT, ".peers")
THREADS = 2


POSITION_START = 10
"""The epoch position correction starts in, for ptyhpc (its default) and Pty-chi alike."""


def run_ptyhpc(tmp, data, probe, algorithm, epochs, ranks, correct=False, slices=None, fft="auto", settings=()):
    """ptyhpc's reconstruction of ``data`` from ``probe`` (``settings``: more ``KEY=VALUE`` for ``--set``): returns
    (object or slices, corners it ends with, seconds per epoch)."""
    out = os.path.join(tmp, f"ptyhpc_{algorithm}_{ranks}{'_pc' if correct else ''}_{fft}.h5")
    ptyhpc("reconstruct", data, "-o", out, "--algorithm", algorithm, "--epochs", epochs, "--probe", probe,
           "--no-preview", "--quiet", "--set", f"fft={fft}", *[a for kv in settings for a in ("--set", kv)],
           *(["--correct-positions", "--set", f"position_start={POSITION_START}"] if correct else []),
           *(["--slices", slices[0], "--slice-spacing", slices[1]] if slices else []), ranks=ranks)
    r = read_product(out)
    return (r["layers"] if slices else r["object"]), r["scan"], product_attrs(out)["seconds_per_epoch"]


def run_peer(tmp, name, problem, algorithm, batch, correct=False, python=None, **extra):
    """Run peer ``name``'s driver (scripts/peers/) on ``problem`` with ``extra`` entries added to it, in its own
    virtual environment (or ``python``): returns (object, corners it ends with, seconds per epoch, result)."""
    z = dict(np.load(problem))
    z.update(algorithm=algorithm, batch=batch, position_start=POSITION_START if correct else -1, **extra)
    prob = os.path.join(tmp, f"{name}_{algorithm}.npz")
    np.savez(prob, **z)
    res = os.path.join(tmp, f"{name}_{algorithm}_result.npz")
    driver = os.path.join(ROOT, "scripts", "peers", f"{name}_driver.py")
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=str(int(z["threads"])))
    python = python or os.path.join(PEERS, name, "bin", "python")
    cmd = [python, driver, prob, res] + ([tmp] if name == "ptylab" else [])
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{r.stderr[-3000:]}")
    out = dict(np.load(res))
    corners = out["corners"] if "corners" in out else z["corners"]
    return out["object"], corners, out["seconds"].tolist(), out


def write_problem(path, patterns, scan, object_shape, probe, epochs, threads=THREADS, **extra):
    """The peers' drivers' problem file: ``patterns`` (POSI, N, N) with the zero frequency centred, ``scan`` the
    window corners (POSI, 2), ``probe`` (MODES, N, N) scaled here to the mean measured intensity (as ptyhpc scales
    its start), plus ``extra`` entries."""
    probe = probe * np.sqrt(patterns.sum(dtype=np.float64) / len(patterns) / (abs(probe) ** 2).sum())
    np.savez(path, patterns=np.fft.fftshift(patterns, axes=(-2, -1)), corners=scan, shape=np.array(object_shape),
             probe=probe, epochs=epochs, threads=threads, algorithm="", batch=0, **extra)


def simulated_problem(tmp, name, simulate_args, epochs, **extra):
    """Simulate a set (``ptyhpc simulate`` with ``simulate_args``) and export it for the peers' drivers (plus
    ``extra`` entries): returns (data, probe, problem, dataset, truth); the starting probe scaled to the mean
    measured intensity."""
    data, probe = os.path.join(tmp, f"{name}.cxi"), os.path.join(tmp, f"{name}_p0.npy")
    ptyhpc("simulate", data, "--initial-probe", probe, *simulate_args)
    d = load(data)
    truth = read_product(os.path.join(tmp, f"{name}_truth.h5"))
    problem = os.path.join(tmp, f"{name}_problem.npz")
    write_problem(problem, d.read_patterns(np.arange(d.count)).intensity, d.scan, d.object_shape, np.load(probe),
                  epochs, pixel=d.pixel_size, wavelength=d.wavelength, **extra)
    return data, probe, problem, d, truth


def thick_spacing() -> float:
    """2 depths of field (2 dx^2 / lambda) of the default set's object pixel dx, metres."""
    from ptyhpc.simulate import SimConfig

    pixel, wavelength, _ = SimConfig().geometry()
    return 2 * 2 * pixel ** 2 / wavelength


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--families", nargs="+", default=["rpie", "lsqml", "positions"],
                   choices=["rpie", "lsqml", "positions", "multislice"])
    p.add_argument("--output", default="peers", help="name of the JSON record in benchmarks/ (default: peers)")
    args = p.parse_args()
    for name in ("ptychi", "ptylab"):
        if not os.path.exists(os.path.join(PEERS, name, "bin", "python")):
            sys.exit(f"{PEERS}/{name} is missing: run scripts/setup_peers.sh first")
    runs = {"rpie": [("ptyhpc", "rpie", 1), ("ptychi", "rpie", 32), ("ptyhpc", "rpie", 2), ("ptylab", "mpie", 0),
                     ("ptyhpc+scipy", "rpie", 1)],
            "lsqml": [("ptyhpc", "lsqml", 1), ("ptychi", "lsqml", 64), ("ptyhpc", "lsqml", 2),
                      ("ptyhpc+scipy", "lsqml", 1)],
            "positions": [("ptyhpc", "rpie", 1), ("ptychi", "rpie", 32), ("ptyhpc", "lsqml", 1),
                          ("ptychi", "lsqml", 64)],
            "multislice": [("ptyhpc", "lsqml", 1), ("ptychi", "lsqml", 64), ("ptyhpc", "lsqml", 2)]}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        sets = {}

        def problem_set(kind):
            """(data, probe, problem, dataset, truth) of the standard set, its position-error twin or its thick
            twin."""
            if kind not in sets:
                extra, simulate_args = {}, []
                if kind == "positions":
                    simulate_args = ["--position-error", 2, "--position-drift", 4]
                if kind == "multislice":
                    extra = {"slices": 2, "slice_spacing": thick_spacing()}
                    simulate_args = ["--slices", 2, "--slice-spacing", extra["slice_spacing"]]
                sets[kind] = simulated_problem(tmp, kind, simulate_args, args.epochs, **extra)
            return sets[kind]

        for rep in range(args.repeats):
            for family in args.families:
                correct = family == "positions"
                thick = (2, thick_spacing()) if family == "multislice" else None
                data, probe, problem, d, truth = problem_set(family if family in ("positions", "multislice")
                                                             else "standard")
                for name, algorithm, k in runs[family]:
                    ours = name.startswith("ptyhpc")
                    fft = "scipy" if name.endswith("+scipy") else "auto"
                    label = f"ptyhpc {algorithm}" if ours else f"{name} {algorithm}"
                    if ours:
                        label += f" ({k} ranks" if k > 1 else f" (1 process, {THREADS} threads"
                        label += ", scipy FFT)" if fft == "scipy" else ")"
                    label += " + positions" if correct else ""
                    if ours:
                        obj, corners, seconds = run_ptyhpc(tmp, data, probe, algorithm, args.epochs, k, correct,
                                                           thick, fft)
                    else:
                        obj, corners, seconds, _ = run_peer(tmp, name, problem, algorithm, k, correct)
                    row = results.setdefault(label, {"family": family, "s_per_epoch": [], "nrmse": [],
                                                     "nrmse_ramp": [], "position_error_px": [], "slices": []})
                    if thick:  # each slice on its own; the worse one in the table
                        each = [object_errors(o, corners, t, truth["scan"], d.n) for o, t in zip(obj, truth["layers"])]
                        row["slices"].append([[x["object_nrmse"], x["object_nrmse_ramp"]] for x in each])
                        projection = object_errors(np.prod(obj, axis=0), corners, truth["object"], truth["scan"], d.n)
                        row.setdefault("projection_nrmse_ramp", []).append(projection["object_nrmse_ramp"])
                        e = max(each, key=lambda x: x["object_nrmse_ramp"])
                    else:
                        e = object_errors(obj, corners, truth["object"], truth["scan"], d.n)
                    row["s_per_epoch"].append(float(np.median(seconds[1:])))
                    row["nrmse"].append(e["object_nrmse"])
                    row["nrmse_ramp"].append(e["object_nrmse_ramp"])
                    row["position_error_px"].append(position_error(corners, truth["scan"]))
                    print(f"  round {rep + 1}: {label:40s} {row['s_per_epoch'][-1]:.3f} s/epoch  "
                          f"NRMSE {e['object_nrmse']:.4f} (ramp removed {e['object_nrmse_ramp']:.4f})  positions "
                          f"{row['position_error_px'][-1]:.3f} px", flush=True)
    print(f"\n{args.epochs} epochs, default simulated set, {THREADS} cores; medians over {args.repeats} round(s)")
    for family in args.families:
        rows = {k: v for k, v in results.items() if v["family"] == family}
        for v in rows.values():
            v["median_s_per_epoch"] = float(np.median(v["s_per_epoch"]))
            v["median_nrmse"] = float(np.median(v["nrmse"]))
            v["median_nrmse_ramp"] = float(np.median(v["nrmse_ramp"]))
        fastest_peer = min(v["median_s_per_epoch"] for k, v in rows.items() if not k.startswith("ptyhpc"))
        print(f"\n[{family}] {'run':40s} {'s/epoch':>8} {'/fastest peer':>14} {'NRMSE':>8} {'ramp removed':>13} "
              f"{'positions px':>13}")
        for k, v in rows.items():
            v["ratio_to_fastest_peer"] = v["median_s_per_epoch"] / fastest_peer
            v["median_position_error_px"] = float(np.median(v["position_error_px"]))
            print(f"        {k:40s} {v['median_s_per_epoch']:8.3f} {v['ratio_to_fastest_peer']:14.2f} "
                  f"{v['median_nrmse']:8.4f} {v['median_nrmse_ramp']:13.4f} {v['median_position_error_px']:13.3f}")
    save(args.output, {"families": args.families, "ranks": [1, 2], "epochs": args.epochs, "repeats": args.repeats,
                       "threads": THREADS, "results": results})


if __name__ == "__main__":
    main()
