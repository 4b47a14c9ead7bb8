"""Did a change alter the far-field results or their speed? The same reconstructions with this checkout and with
an earlier commit, interleaved.

usage: python scripts/bench_revisions.py BASE [--epochs 20] [--rounds 3] [--algorithms rpie,lsqml,dm]
           [--simulate "ARGS"] [--reconstruct "ARGS"] [--output NAME]

BASE is extracted with ``git archive`` into a temporary folder; both trees run ``python -m ptyhpc reconstruct``
with this environment on the same simulated file (the default set: 512^2 object, 128^2 probe, 700 positions;
``--simulate`` adds options to ``ptyhpc simulate``, e.g. "--position-error 2 --position-drift 4", and
``--reconstruct`` to every reconstruction, e.g. "--correct-positions"), alternating BASE and HEAD within each
round. Reports per algorithm: median seconds per epoch of each revision
and their ratio, and the largest difference between the two objects relative to the object's largest value (0:
bit for bit the same). Writes benchmarks/NAME.json (default revisions).
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import ROOT, commit, product_attrs, save  # noqa: E402
from ptyhpc.io.product import read_product  # noqa: E402


def run(tree, data, out, algorithm, epochs, extra=()):
    env = dict(os.environ, PYTHONPATH=tree)
    r = subprocess.run([sys.executable, "-m", "ptyhpc", "reconstruct", data, "-o", out, "--algorithm", algorithm,
                        "--epochs", str(epochs), "--quiet", "--no-preview", *extra], cwd=tree, env=env,
                       capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"{tree}: {r.stderr[-2000:]}")
    return float(np.median(product_attrs(out)["seconds_per_epoch"])), read_product(out)["object"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--algorithms", default="rpie,lsqml,dm")
    ap.add_argument("--simulate", default="", help="more options of ptyhpc simulate (one string)")
    ap.add_argument("--reconstruct", default="", help="more options of every reconstruction (one string)")
    ap.add_argument("--output", default="revisions")
    args = ap.parse_args()
    base = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tree = os.path.join(tmp, "base")
        os.makedirs(tree)
        archive = subprocess.run(["git", "archive", base], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        data = os.path.join(tmp, "data.cxi")
        subprocess.run([sys.executable, "-m", "ptyhpc", "simulate", data, *shlex.split(args.simulate)], cwd=ROOT,
                       check=True, capture_output=True)
        trees = {"base": tree, "head": ROOT}
        times = {(a, k): [] for a in args.algorithms.split(",") for k in trees}
        objects = {}
        for i in range(args.rounds):
            for algorithm in args.algorithms.split(","):
                for key in (("base", "head") if i % 2 == 0 else ("head", "base")):
                    seconds, obj = run(trees[key], data, os.path.join(tmp, f"{key}.h5"), algorithm, args.epochs,
                                       shlex.split(args.reconstruct))
                    times[algorithm, key].append(seconds)
                    objects[algorithm, key] = obj
                    print(f"round {i + 1} {algorithm:5s} {key}: {seconds:.4f} s/epoch", flush=True)
    rows = []
    for algorithm in args.algorithms.split(","):
        b, h = (float(np.median(times[algorithm, k])) for k in ("base", "head"))
        ob, oh = objects[algorithm, "base"], objects[algorithm, "head"]
        diff = float(np.abs(ob - oh).max() / np.abs(ob).max())
        rows.append({"algorithm": algorithm, "base_seconds_per_epoch": b, "head_seconds_per_epoch": h,
                     "head_over_base": h / b, "object_max_difference": diff,
                     "base_runs": times[algorithm, "base"], "head_runs": times[algorithm, "head"]})
        print(f"{algorithm:5s} base {b:.4f}  head {h:.4f} s/epoch  ratio {h / b:.3f}  object difference {diff:.2e}")
    save(args.output, {"base": base, "head": commit(), "epochs": args.epochs, "rounds": args.rounds,
                       "set": " ".join(["ptyhpc simulate defaults", args.simulate]).strip(),
                       "reconstruct": args.reconstruct, "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
