"""``ptyhpc scaling``: a strong- or weak-scaling campaign of reconstructions on a site, gathered into one JSON
and one PNG (time per iteration, parallel efficiency and halo bytes vs ranks).

Strong: the same input on every rank count (by default a simulated set sized for the largest run). Weak: a simulated set per rank count whose positions and object
area grow with the ranks (``positions_per_rank`` each). Each run's facts come from its own product file (the
``ptyhpc`` group: seconds per epoch, halo bytes per epoch), so ``collect`` also summarises runs made by
``jobs/polaris_scaling.pbs`` without Parsl.
"""
from __future__ import annotations

import json
import math
import os
import re

import numpy as np

SKIP = 1
"""Epochs left out of the median time (the first carries start-up costs)."""


def run_name(nodes: int, ranks_per_node: int) -> str:
    return f"run_n{nodes}_r{ranks_per_node}"


def weak_set(ranks: int, positions_per_rank: int, base_side: int = 256) -> tuple[str, dict]:
    """(file name, ``SimConfig`` settings) of the simulated set for ``ranks`` ranks (positions and object area
    proportional to ``ranks``)."""
    side = int(round(base_side * math.sqrt(ranks) / 16)) * 16
    return f"weak_{ranks}.cxi", dict(object_size=side, probe_size=64, positions=positions_per_rank * ranks,
                                     probe_diameter=22, aperture_radius=8)


def weak_input(folder, ranks: int, positions_per_rank: int, base_side: int = 256) -> str:
    """The simulated set for ``ranks`` ranks in ``folder`` (written here if it is not there yet)."""
    from ..simulate import SimConfig, write

    name, settings = weak_set(ranks, positions_per_rank, base_side)
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        write(path, SimConfig(**settings))
    return path


def collect(paths, mode: str) -> dict:
    """Summary of finished runs (product files): per run nodes, ranks, median s/epoch, halo bytes per epoch
    (all ranks), and the parallel efficiency against the run with the fewest ranks."""
    from ..io.product import read_product

    runs = []
    for path in paths:
        attrs = read_product(path)["attrs"]
        seconds = json.loads(attrs["seconds_per_epoch"])
        halo = json.loads(attrs["halo_bytes_per_epoch"]) if attrs.get("halo_bytes_per_epoch") else []
        m = re.search(r"_n(\d+)_r(\d+)", os.path.basename(path))
        runs.append({"file": os.path.abspath(path), "nodes": int(m.group(1)) if m else 1, "ranks": int(attrs["ranks"]),
                     "epochs": int(attrs["epochs"]), "algorithm": attrs["algorithm"],
                     "seconds_per_epoch": float(np.median(seconds[SKIP:] if len(seconds) > SKIP else seconds)),
                     "halo_bytes_per_epoch": float(np.median(halo)) if halo else 0.0,
                     "peak_rss_bytes_max": max(json.loads(attrs["peak_rss_bytes"]))})
    runs.sort(key=lambda r: r["ranks"])
    base = runs[0]
    for r in runs:
        t = r["seconds_per_epoch"]
        if mode == "strong":
            r["speedup"] = base["seconds_per_epoch"] / t
            r["efficiency"] = r["speedup"] * base["ranks"] / r["ranks"]
        else:
            r["efficiency"] = base["seconds_per_epoch"] / t
    return {"mode": mode, "runs": runs}


def plot(summary: dict, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = summary["runs"]
    ranks = [r["ranks"] for r in runs]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    ax[0].plot(ranks, [r["seconds_per_epoch"] for r in runs], "o-")
    ax[0].set(xlabel="ranks", ylabel="seconds per iteration", title=f"{summary['mode']} scaling")
    ax[1].plot(ranks, [r["efficiency"] for r in runs], "o-")
    ax[1].axhline(1.0, color="grey", lw=0.5)
    ax[1].set(xlabel="ranks", ylabel="parallel efficiency", ylim=(0, 1.2))
    ax[2].plot(ranks, [r["halo_bytes_per_epoch"] / 1e6 for r in runs], "o-")
    ax[2].set(xlabel="ranks", ylabel="halo MB per iteration (all ranks)")
    for a in ax:
        a.set_xticks(ranks)
        a.grid(alpha=0.3)
    fig.tight_layout()
    tmp = png + ".partial.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, png)


def write_summary(summary: dict, folder: str) -> tuple[str, str]:
    """Write ``folder/scaling.json`` (atomically) and ``folder/scaling.png``."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "scaling.json")
    with open(path + ".partial", "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(path + ".partial", path)
    png = os.path.join(folder, "scaling.png")
    plot(summary, png)
    return path, png


def campaign(site, input_path, folder, nodes_list, ranks_list, mode: str, args=(), positions_per_rank: int = 150,
             stream=None) -> tuple[dict, str, str]:
    """Run every (nodes, ranks per node) combination on ``site``, one after the other in one block of
    max(nodes_list) nodes; returns (summary, json path, png path). Raises RuntimeError if a run fails. On a
    globus-compute site ``folder`` is a path there: the sets are simulated, the runs made and summarised there
    (``globus.campaign``)."""
    import posixpath
    import sys

    from .submit import reconstruct_line, run_tasks

    stream = stream or sys.stderr
    remote = site.provider == "globus-compute"
    if remote and not posixpath.isabs(folder):
        raise ValueError(f"scaling on {site.name}: -o must be an absolute folder on the site, not {folder!r}")
    inputs = {}

    def simulated(ranks):
        name, settings = weak_set(ranks, positions_per_rank)
        if not remote:
            return weak_input(folder, ranks, positions_per_rank)
        path = posixpath.join(folder, name)
        inputs[path] = [w for k, v in settings.items() for w in (f"--{k.replace('_', '-')}", str(v))]
        return path

    if not remote:
        os.makedirs(folder, exist_ok=True)
    tasks, outputs = [], []
    if mode == "strong" and not input_path:
        input_path = simulated(max(nodes_list) * max(ranks_list))
    for nodes in nodes_list:
        for rpn in ranks_list:
            source = input_path if mode == "strong" else simulated(nodes * rpn)
            out = os.path.join(folder, run_name(nodes, rpn) + ".h5")
            line = reconstruct_line(site, source, out, [*args, "--no-preview", "--quiet"])
            tasks.append((run_name(nodes, rpn), nodes, rpn, line))
            outputs.append(out)
    if remote:
        from . import globus

        summary = globus.campaign(site, inputs, tasks, outputs, folder, mode, stream)
        return summary, posixpath.join(folder, "scaling.json"), posixpath.join(folder, "scaling.png")
    codes = run_tasks(site, max(nodes_list), tasks, os.path.join(folder, "ptyhpc_runinfo"), stream)
    failed = [t[0] for t, c in zip(tasks, codes) if c]
    if failed:
        raise RuntimeError(f"scaling runs failed: {', '.join(failed)} (their stderr is in "
                           f"{os.path.join(folder, 'ptyhpc_runinfo')})")
    summary = collect(outputs, mode)
    summary.update({"site": site.name, "args": list(args)})
    return (summary,) + write_summary(summary, folder)
