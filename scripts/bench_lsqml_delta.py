"""LSQML's preconditioner damping ``lsqml_delta`` (delta_O, delta_P of Odstrcil 2018, Eq. 25, relative to the
largest illumination) on a family of simulated sets: what a larger value gives and what it costs.

For each value in ``--deltas``, ptyhpc LSQML (1 process) on:

- the accuracy family of scripts/bench_accuracy.py (probes of 64 and 128 px, 60 % and 80 % overlap, 1e5 and 1e7
  photons, 400 positions; and the held-out set, 625 positions of the other images), 50 epochs;
- the standard set (512^2, 128^2 probe, 700 positions, 1e6 photons), 100 epochs;
- its position-error twin (2 px random errors and a 4 px drift) with ``--correct-positions``, 100 epochs (the set
  of ``bench_peers.py --families positions``; the RMS position error too);
- the thick test set (tests/test_multislice.py: 192^2, 64^2 probe, 150 positions, 1e6 photons, two slices 2
  depths of field apart), 100 epochs, each slice scored.

Object NRMSE with the phase ramp removed (ptyhpc.compare.object_errors; the worse slice for the thick set), and its
ratio to the first value of ``--deltas``. Writes benchmarks/lsqml_delta.json.

``--near-field`` instead runs the simulated near-field family of scripts/bench_near_field.py (cone-beam scans,
detectors of 64 and 128 px, 1e6 to 1e8 photons; ``ptyhpc reconstruct --near-field``, 100 epochs) and writes
benchmarks/lsqml_delta_near_field.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_accuracy import family_members  # noqa: E402
from benchlib import ptyhpc, save  # noqa: E402

from ptyhpc.compare import compare_files, object_errors, position_error  # noqa: E402
from ptyhpc.config import ReconConfig  # noqa: E402
from ptyhpc.engine import Reconstruction  # noqa: E402
from ptyhpc.io import load  # noqa: E402
from ptyhpc.io.product import read_product  # noqa: E402
from ptyhpc.simulate import SimConfig, initial_probe_guess, write  # noqa: E402


def sets(tmp: str) -> list:
    """(name, data file, truth file, starting probe, epochs, extra settings) of every set, simulated into ``tmp``."""
    out = []
    for name, *_, simulate_args in family_members():
        data, probe = os.path.join(tmp, f"{name}.cxi"), os.path.join(tmp, f"{name}_p0.npy")
        ptyhpc("simulate", data, "--initial-probe", probe, *simulate_args)
        out.append((name, data, os.path.join(tmp, f"{name}_truth.h5"), np.load(probe), 50, {}))
    small = dict(object_size=192, probe_size=64, positions=150, probe_diameter=22, aperture_radius=8)
    pixel, wavelength, _ = SimConfig(**small).geometry()
    spacing = 2 * 2 * pixel ** 2 / wavelength
    for name, sim, extra in (
            ("standard", SimConfig(), {}),
            ("standard_position_errors", SimConfig(position_error=2.0, position_drift=4.0),
             {"correct_positions": True}),
            ("thick_2_slices", SimConfig(**small, slices=2, slice_spacing_m=spacing),
             {"slices": 2, "slice_spacing_m": spacing})):
        data = os.path.join(tmp, f"{name}.cxi")
        write(data, sim)
        out.append((name, data, os.path.join(tmp, f"{name}_truth.h5"), initial_probe_guess(sim), 100, extra))
    return out


def near_field(deltas: list, epochs: int = 100) -> dict:
    """Object NRMSE (ramp removed) of LSQML on the simulated near-field family for each damping in ``deltas``."""
    from bench_near_field import FAMILY, simulate_member

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n, size, count, photons, seed in FAMILY:
            name = f"near_field_{n}px_p{photons:.0e}_seed{seed}"
            data, out = simulate_member(tmp, n, size, count, photons, seed), os.path.join(tmp, "out.h5")
            row = results[name] = {"epochs": epochs}
            for delta in deltas:
                ptyhpc("reconstruct", data, "-o", out, "--near-field", "--algorithm", "lsqml", "--epochs", epochs,
                       "--quiet", "--no-preview", "--set", f"lsqml_delta={delta}")
                error = compare_files(out, data.replace(".cxi", "_truth.h5"))["object_nrmse_ramp"]
                row[str(delta)] = {"nrmse_ramp": error}
                print(f"{name:30s} lsqml_delta {delta:<6g} object NRMSE {error:.4f} "
                      f"({error / row[str(deltas[0])]['nrmse_ramp']:.2f}x)", flush=True)
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deltas", type=float, nargs="+", default=[0.01, 0.03, 0.1])
    p.add_argument("--near-field", action="store_true", help="the simulated near-field family instead (see above)")
    args = p.parse_args()
    if args.near_field:
        save("lsqml_delta_near_field", {"ranks": [1], "deltas": args.deltas, "algorithm": "lsqml",
                                        "results": near_field(args.deltas)})
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data, truth_file, probe, epochs, extra in sets(tmp):
            d, truth = load(data), read_product(truth_file)
            row = results[name] = {"epochs": epochs, **{k: v for k, v in extra.items() if k != "slice_spacing_m"}}
            for delta in args.deltas:
                cfg = ReconConfig(algorithm="lsqml", epochs=epochs, device="cpu", lsqml_delta=delta, **extra)
                rec = Reconstruction(d, cfg, probe=probe)
                rec.iterate(epochs)
                scan = rec.gather_scan()
                obj = rec.gather_object()
                layers = obj if obj.ndim == 3 else obj[None]
                truths = truth["layers"] if obj.ndim == 3 else [truth["object"]]
                errors = [object_errors(a, scan, b, truth["scan"], d.n)["object_nrmse_ramp"]
                          for a, b in zip(layers, truths)]
                row[str(delta)] = {"nrmse_ramp": max(errors), "slices": errors,
                                   "position_error_px": position_error(scan, truth["scan"])}
                ratio = max(errors) / row[str(args.deltas[0])]["nrmse_ramp"]
                print(f"{name:26s} lsqml_delta {delta:<6g} object NRMSE {max(errors):.4f} ({ratio:.2f}x)"
                      + (f"  slices {', '.join(f'{e:.4f}' for e in errors)}" if len(errors) > 1 else "")
                      + (f"  positions {row[str(delta)]['position_error_px']:.3f} px" if cfg.correct_positions
                         else ""), flush=True)
    save("lsqml_delta", {"ranks": [1], "deltas": args.deltas, "algorithm": "lsqml", "results": results})


if __name__ == "__main__":
    main()
