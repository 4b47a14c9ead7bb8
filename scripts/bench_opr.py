"""OPR (--opr-modes) on a probe that varies along the scan and on a constant one: object NRMSE with and without.

The small simulated set of the tests (192^2 object, 64 px probe with a 22 px spot, 150 positions, 1e6 photons),
once with a probe whose defocus drifts by +-F and intensity by +-F/2 along the scan (``--probe-variation F``) and
once constant; rPIE and LSQML, 100 epochs from the usual starting probe, 1 process, without OPR and with
``--modes`` variable modes. Prints the object NRMSE (ramp removed) and writes benchmarks/opr.json.
``--seeds`` simulates independent sets (noise, scan and probe drift; seed 0 is the tests' set), ``--gains`` runs
OPR with each weight-step gain (``ptyhpc.opr.WEIGHT_GAIN``; default: the module's) and ``--starts`` from each
first epoch of the modes' updates (``opr_start``; default: the configuration's); ``--set KEY=VALUE`` changes a
setting of every run; ``--standard`` runs the standard set (512^2 object, 128^2 probe, 700 positions) instead of
the small one.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import save  # noqa: E402

from ptyhpc import opr  # noqa: E402
from ptyhpc.compare import object_errors  # noqa: E402
from ptyhpc.config import ReconConfig  # noqa: E402
from ptyhpc.engine import Reconstruction  # noqa: E402
from ptyhpc.io.dataset import from_arrays  # noqa: E402
from ptyhpc.simulate import SimConfig, initial_probe_guess, simulate  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--modes", type=int, default=3)
    p.add_argument("--variation", type=float, default=0.3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--gains", type=float, nargs="+", default=[opr.WEIGHT_GAIN])
    p.add_argument("--starts", type=int, nargs="+", default=[ReconConfig.opr_start])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--standard", action="store_true", help="the standard set instead of the small one")
    p.add_argument("--output", default="opr")
    args = p.parse_args()
    settings = {k: ReconConfig.parse(k, v) for k, v in (item.split("=", 1) for item in args.set)}
    geometry = {} if args.standard else dict(object_size=192, probe_size=64, positions=150, probe_diameter=22,
                                             aperture_radius=8)
    rows = []
    for seed, variation in itertools.product(args.seeds, (args.variation, 0.0)):
        sim = SimConfig(**geometry, probe_variation=variation, seed=seed)
        patterns, scan, obj, _, mask = simulate(sim)
        d = from_arrays(patterns, scan, mask=mask)

        def error(algorithm, modes, **more):
            cfg = ReconConfig(algorithm=algorithm, epochs=args.epochs, device="cpu", opr_modes=modes,
                              **{**settings, **more})
            rec = Reconstruction(d, cfg, probe=initial_probe_guess(sim))
            rec.iterate(args.epochs)
            return object_errors(rec.gather_object(), rec.gather_scan(), obj, scan, d.n)["object_nrmse_ramp"]

        for algorithm in ("lsqml", "rpie"):
            without = error(algorithm, 0)
            for gain, start in itertools.product(args.gains, args.starts):
                opr.WEIGHT_GAIN = gain
                row = {"seed": seed, "variation": variation, "algorithm": algorithm, "gain": gain,
                       "opr_start": start, "without": without,
                       "with": error(algorithm, args.modes, opr_start=start)}
                row["ratio"] = row["with"] / without
                rows.append(row)
                print(f"seed {seed}  probe variation {variation:.2f}  {algorithm:5s}  without OPR {without:.4f}  "
                      f"with {args.modes} modes, gain {gain:g}, from epoch {start}: {row['with']:.4f}  "
                      f"ratio {row['ratio']:.3f}", flush=True)
    save(args.output, {"ranks": 1, "epochs": args.epochs, "modes": args.modes, "seeds": args.seeds,
                       "set": "standard" if args.standard else "small",
                       "gains": args.gains, "starts": args.starts, "settings": args.set, "results": rows})


if __name__ == "__main__":
    main()
