"""Halo traffic and strong scaling of ptyhpc's spatial decomposition.

1. plan: for 4, 16 and 64 tiles of a 4096^2 object scanned with a 128^2 probe (Fermat spiral, 14 px step), the
   halo bytes each rank sends per DM iteration under the real exchange plan (24 bytes per overlapping pixel:
   the object numerator re/im and denominator in float64), beside what a full-object ring all-reduce of the same
   fields sends per rank (2 (R-1)/R x H x W x 24 bytes), as Tike / PtyPy / Pty-chi would. From the plan.
2. measured: real ranks (mpiexec -n 2 and -n 4, oversubscribed where the machine is small) on a 1024^2 object
   with a 64^2 probe: halo bytes counted by ptyhpc's communicator, compared with the plan for the same partition.
3. strong scaling: the default simulated set (512^2, 128^2 probe, 700 positions), 1 vs 2 ranks, seconds per
   epoch (median over epochs, then over interleaved rounds: this VM's timings vary +-15 % run to run) and
   parallel efficiency t1 / (R tR), for rPIE, LSQML and DM.

Writes benchmarks/scaling.json and benchmarks/scaling.png.
"""
from __future__ import annotations

import argparse
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
    times = {(a, r): [] for a in ("rpie", "lsqml", "dm") for r in (1, 2)}
    print(f"\n[strong scaling] default set (512^2, 700 x 128^2), {epochs} epochs, median s/epoch of epochs 2..E,"
          f" then the median over {repeats} interleaved rounds")
    for _ in range(repeats):
        for algorithm, ranks in times:
            out = os.path.join(tmp, f"s_{algorithm}_{ranks}.h5")
            ptyhpc("reconstruct", data, "-o", out, "--algorithm", algorithm, "--epochs", epochs, "--probe", probe,
                   "--no-preview", "--quiet", ranks=ranks)
            times[algorithm, ranks].append(float(np.median(product_attrs(out)["seconds_per_epoch"][1:])))
    rows = []
    for algorithm in ("rpie", "lsqml", "dm"):
        t1, t2 = (float(np.median(times[algorithm, r])) for r in (1, 2))
        eff = t1 / (2 * t2)
        rows.append({"algorithm": algorithm, "seconds_per_epoch": {"1": t1, "2": t2}, "efficiency_2": eff,
                     "rounds": {"1": times[algorithm, 1], "2": times[algorithm, 2]}})
        print(f"  {algorithm:6s} 1 rank {t1:.3f} s, 2 ranks {t2:.3f} s, efficiency {eff:.2f}  "
              f"(rounds: {np.round(times[algorithm, 1], 3).tolist()} / {np.round(times[algorithm, 2], 3).tolist()})")
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
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds of the strong-scaling runs")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plan = section_plan()
        measured = section_measured(tmp)
        strong = section_strong(tmp, args.epochs, args.repeats)
    save("scaling", {"ranks": [1, 2, 4, 16, 64], "plan": plan, "measured": measured, "strong": strong,
                     "notes": "plan rows come from the exchange plan; measured rows from real ranks on this machine"})
    plot(strong, plan, os.path.join(BENCH, "scaling.png"))


if __name__ == "__main__":
    main()
