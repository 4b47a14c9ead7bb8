"""Halo traffic and strong scaling of ptyhpc's spatial decomposition.

1. plan: for 4, 16 and 64 tiles of a 4096^2 object scanned with a 128^2 probe (Fermat spiral, 14 px step), the
   halo bytes each rank sends per DM iteration under the real exchange plan (24 bytes per overlapping pixel:
   the object numerator re/im and denominator in float64), beside what a full-object ring all-reduce of the same
   fields sends per rank (2 (R-1)/R x H x W x 24 bytes), as Tike / PtyPy / Pty-chi would. From the plan.
2. measured: real ranks (mpiexec -n 2 and -n 4, oversubscribed where the machine is small) on a 1024^2 object
   with a 64^2 probe: halo bytes counted by ptyhpc's communicator, compared with the plan for the same partition.
3. strong scaling: the default simulated set (512^2, 128^2 probe, 700 positions), 1 vs 2 ranks, one core (one
   BLAS thread) per rank, seconds per epoch (median over epochs) and parallel efficiency t1 / (R tR), for rPIE,
   LSQML and DM. This VM's timings drift by 15-20 % over tens of minutes, so every round runs the 1- and the
   2-rank job back to back and the efficiency reported is the median of the rounds' efficiencies.
4. rPIE's ``sync_every`` (how often the tiles' overlaps are averaged): object error after 100 epochs and s/epoch
   on 1, 2 and 4 ranks for k = 1, 4, 16 with alpha 0.1 throughout (the default), and k = 4 with alpha's ramp
   (``alpha_ramp=50``, during which the overlaps are averaged after every batch).

Writes benchmarks/scaling.json and benchmarks/scaling.png.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import BENCH, product_attrs, ptyhpc, save  # noqa: E402

from ptyhpc.partition import partition  # noqa: E402
from ptyhpc.simulate import SimConfig, make_scan  # noqa: E402

BYTES_PER_PIXEL = 24  # DM/LSQML object sums: float64 numerator (re, im) and denominator


def plan_bytes(scan, n, shape, ranks):
    part = partition(scan, n, shape, ranks)
    halo = np.array([sum((b[1] - b[0]) * (b[3] - b[2]) for _, b in part.neighbours(r)) for r in range(ranks)])
    halo = halo * BYTES_PER_PIXEL
    allreduce = 2 * (ranks - 1) / ranks * shape[0] * shape[1] * BYTES_PER_PIXEL
    tiles = [t.shape[0] * t.shape[1] for t in part.tiles]
    return {
        "ranks": ranks, "positions": len(scan),
        "halo_bytes_per_rank_mean": float(halo.mean()), "halo_bytes_per_rank_max": float(halo.max()),
        "allreduce_bytes_per_rank": float(allreduce),
        "ratio_mean": float(halo.mean() / allreduce), "ratio_max": float(halo.max() / allreduce),
        "neighbours_max": int(max(len(part.neighbours(r)) for r in range(ranks))),
        "tile_pixels_max": int(max(tiles)), "object_pixels": int(shape[0] * shape[1]),
        "halo_bytes_total": float(halo.sum()),
    }


def section_plan():
    cfg = SimConfig(object_size=4096, probe_size=128, step=14.0)
    # the spiral fills the square; count what fits at this step
    cfg = SimConfig(object_size=4096, probe_size=128, positions=int((4096 - 132) ** 2 / 14.0 ** 2), step=14.0)
    scan = make_scan(cfg, np.random.default_rng(0))
    rows = [plan_bytes(scan, 128, (4096, 4096), r) for r in (4, 16, 64)]
    print("\n[plan] 4096^2 object, 128^2 probe, %d positions, bytes each rank sends per DM iteration" % len(scan))
    print(f"{'tiles':>6} {'halo mean':>12} {'halo max':>12} {'all-reduce':>12} {'mean/AR':>8} {'max/AR':>8} {'nbrs':>5}")
    for r in rows:
        print(f"{r['ranks']:>6} {r['halo_bytes_per_rank_mean'] / 1e6:>10.2f}MB {r['halo_bytes_per_rank_max'] / 1e6:>10.2f}MB "
              f"{r['allreduce_bytes_per_rank'] / 1e6:>10.1f}MB {r['ratio_mean']:>8.3f} {r['ratio_max']:>8.3f} "
              f"{r['neighbours_max']:>5}")
    return rows


def section_measured(tmp):
    data = os.path.join(tmp, "mid.cxi")
    ptyhpc("simulate", data, "--object-size", 1024, "--probe-size", 64, "--positions", 3000,
           "--probe-diameter", 22, "--aperture-radius", 8, "--photons", 1e5)
    from ptyhpc.io import load

    d = load(data)
    rows = []
    print("\n[measured] 1024^2 object, 64^2 probe, 3000 positions, DM, halo bytes counted by the communicator")
    for ranks in (2, 4):
        out = os.path.join(tmp, f"mid_{ranks}.h5")
        ptyhpc("reconstruct", data, "-o", out, "--algorithm", "dm", "--epochs", 2, "--no-preview", "--quiet",
               ranks=ranks)
        measured = product_attrs(out)["halo_bytes_per_epoch"][-1]
        planned = plan_bytes(d.scan, d.n, d.object_shape, ranks)["halo_bytes_total"]
        rows.append({"ranks": ranks, "measured_bytes_all_ranks": measured, "planned_bytes_all_ranks": planned})
        print(f"  {ranks} ranks: measured {measured / 1e6:.3f} MB per iteration (all ranks), plan {planned / 1e6:.3f} MB")
    return rows


def section_strong(tmp, epochs, repeats):
    data = os.path.join(tmp, "default.cxi")
    probe = os.path.join(tmp, "p0.npy")
    ptyhpc("simulate", data, "--initial-probe", probe)
    one_core = dict(os.environ, OMP_NUM_THREADS="1")
    algorithms = ("rpie", "lsqml", "dm")
    times = {(a, r): [] for a in algorithms for r in (1, 2)}
    print(f"\n[strong scaling] default set (512^2, 700 x 128^2), {epochs} epochs, median s/epoch of epochs 2..E; "
          f"{repeats} rounds, each running 1 and then 2 ranks back to back (2 then 1 in odd rounds); one core "
          f"(one BLAS thread) per rank")
    for round_ in range(repeats):
        for algorithm in algorithms:
            for ranks in ((1, 2) if round_ % 2 == 0 else (2, 1)):
                out = os.path.join(tmp, f"s_{algorithm}_{ranks}.h5")
                ptyhpc("reconstruct", data, "-o", out, "--algorithm", algorithm, "--epochs", epochs, "--probe",
                       probe, "--no-preview", "--quiet", ranks=ranks, env=one_core)
                times[algorithm, ranks].append(float(np.median(product_attrs(out)["seconds_per_epoch"][1:])))
    rows = []
    for algorithm in algorithms:
        t1, t2 = (np.array(times[algorithm, r]) for r in (1, 2))
        per_round = t1 / (2 * t2)  # each round's pair ran minutes apart at most: this VM drifts more than that
        row = {"algorithm": algorithm, "seconds_per_epoch": {"1": float(np.median(t1)), "2": float(np.median(t2))},
               "efficiency_2": float(np.median(per_round)), "efficiency_2_rounds": per_round.tolist(),
               "rounds": {"1": t1.tolist(), "2": t2.tolist()}}
        rows.append(row)
        print(f"  {algorithm:6s} 1 rank {np.median(t1):.3f} s, 2 ranks {np.median(t2):.3f} s, efficiency "
              f"{row['efficiency_2']:.2f} (median of rounds: {np.round(per_round, 2).tolist()})")
    return rows


def section_sync(tmp, epochs):
    """rPIE: how often the overlaps are averaged (``sync_every``) against error and time on 1, 2 and 4 ranks, with
    alpha 0.1 throughout (the default), and with alpha's ramp over the first 50 epochs (``alpha_ramp=50``, during
    which the overlaps are averaged after every batch; every 4th after it)."""
    data, probe = os.path.join(tmp, "default.cxi"), os.path.join(tmp, "p0.npy")
    truth = os.path.join(tmp, "default_truth.h5")

    def run(ranks, k, ramp=0):
        out = os.path.join(tmp, f"sync_{ranks}_{k}_{ramp}.h5")
        ptyhpc("reconstruct", data, "-o", out, "--algorithm", "rpie", "--epochs", epochs, "--probe", probe,
               "--no-preview", "--quiet", "--set", f"sync_every={k}", "--set", f"alpha_ramp={ramp}", ranks=ranks,
               env=dict(os.environ, OMP_NUM_THREADS="1"))
        e = json.loads(ptyhpc("compare", out, truth, "--json").stdout)
        seconds = product_attrs(out)["seconds_per_epoch"]
        return {"ranks": ranks, "sync_every": k, "alpha_ramp": ramp,
                "object_nrmse_ramp": e["object_nrmse_ramp"], "probe_nrmse": e["probe_nrmse"],
                "seconds_per_epoch": float(np.median(seconds[1:])),
                "seconds_per_epoch_first_50": float(np.median(seconds[1:50])),
                "seconds_per_epoch_after_50": float(np.median(seconds[50:])) if len(seconds) > 50 else None}

    print(f"\n[rPIE overlap averaging] default set, {epochs} epochs: object NRMSE (ramp removed) and s/epoch")
    rows = [run(1, 4), run(1, 4, ramp=50)]
    rows += [run(ranks, k, ramp) for ranks in (2, 4) for k, ramp in ((1, 0), (4, 0), (16, 0), (4, 50))]
    for r in rows:
        after = r["seconds_per_epoch_after_50"]
        print(f"  {r['ranks']} rank(s), sync_every {r['sync_every']:2d}, alpha_ramp {r['alpha_ramp']:2d}: object "
              f"{r['object_nrmse_ramp']:.4f}, probe {r['probe_nrmse']:.4f}, {r['seconds_per_epoch']:.3f} s/epoch "
              f"({r['seconds_per_epoch_first_50']:.3f} in the first 50" +
              (f", {after:.3f} after)" if after is not None else ")"))
    return rows


def plot(strong, plan, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for row in strong:
        ranks = sorted(int(k) for k in row["seconds_per_epoch"])
        ax[0].plot(ranks, [row["seconds_per_epoch"][str(r)] for r in ranks], "o-", label=row["algorithm"])
    ax[0].set_xlabel("ranks")
    ax[0].set_ylabel("seconds per epoch")
    ax[0].set_xticks([1, 2])
    ax[0].set_title("strong scaling, default set")
    ax[0].legend()
    ranks = [r["ranks"] for r in plan]
    ax[1].loglog(ranks, [r["halo_bytes_per_rank_mean"] for r in plan], "o-", label="halo (mean per rank)")
    ax[1].loglog(ranks, [r["allreduce_bytes_per_rank"] for r in plan], "s--", label="full-object all-reduce")
    ax[1].set_xticks(ranks, [str(r) for r in ranks])
    ax[1].minorticks_off()
    ax[1].set_xlabel("ranks (tiles)")
    ax[1].set_ylabel("bytes sent per rank per iteration")
    ax[1].set_title("4096$^2$ object, 128$^2$ probe (plan)")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5, help="rounds of the strong-scaling runs")
    p.add_argument("--sync-epochs", type=int, default=100, help="epochs of the rPIE sync_every study (0: skip it)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plan = section_plan()
        measured = section_measured(tmp)
        strong = section_strong(tmp, args.epochs, args.repeats)
        sync = section_sync(tmp, args.sync_epochs) if args.sync_epochs else []
    save("scaling", {"ranks": [1, 2, 4, 16, 64], "plan": plan, "measured": measured, "strong": strong,
                     "rpie_sync_every": sync,
                     "notes": "plan rows come from the exchange plan; measured rows from real ranks on this machine"})
    plot(strong, plan, os.path.join(BENCH, "scaling.png"))


if __name__ == "__main__":
    main()
