"""Near-field ptychography on the real PETRA III P25 scan, ptyhpc beside CDTools' own example, and what the near
field does to the tiles.

usage: python scripts/bench_near_field.py [--epochs 100] [--ranks 1,2,4] [--skip-cdtools] [--output NAME]

1. ptyhpc (rPIE and LSQML, defaults, ``--near-field --focus-distance 3.65e-3``) and CDTools 0.3.2 running its
   examples/near_field_ptycho.py (Adam, 100 epochs at lr 0.04 in batches of 10 then 50 at 0.005 in batches of 50;
   .peers/cdtools from scripts/setup_peers.sh) on ../shared/data/petra3-p25-near-field: seconds per epoch (median)
   and in all, ptyhpc's misfit end / first epoch, and for both the Siemens star the object should show: its
   dominant angular period and the share of the phase's angular power in it at radii 45 and 60 px (a clear star:
   one period at both, a large share). A PNG puts the two phases side by side on the same field.
2. Tiles on R ranks (LSQML, 10 epochs, mpiexec): in the near field a window is the whole detector, so every tile
   carries a detector-sized halo: the tile's share of the object, halo bytes per epoch and peak memory per rank,
   beside the same on a far-field set of as many positions and the same detector size.
3. Simulated cone-beam scans (``ptyhpc simulate --near-field``; a family: detector 64 and 128 px, 1e6 to 1e8
   photons per image, two seeds): object NRMSE (ramp removed) after EPOCHS of rPIE and of LSQML with the defaults.
Writes benchmarks/NAME.json (default near_field) and benchmarks/NAME.png; ``--parts`` picks some of real, tiles,
simulated.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import BENCH, ROOT, product_attrs, ptyhpc, save  # noqa: E402
from ptyhpc.compare import spokes, star_centre  # noqa: E402
from ptyhpc.io import load  # noqa: E402
from ptyhpc.io.dataset import in_near_field  # noqa: E402
from ptyhpc.io.product import read_product  # noqa: E402
from ptyhpc.partition import partition  # noqa: E402

P25 = os.path.join(ROOT, "..", "shared", "data", "petra3-p25-near-field", "PETRAIII_P25_Near_Field_Ptycho.cxi")
FOCUS = 3.65e-3
RADII = (45, 60)


def star(obj, guess):
    centre = star_centre(obj, guess, radius=RADII[1], search=24, step=2)
    return {"centre": [int(c) for c in centre], "periods_and_shares": [list(spokes(obj, centre, r)) for r in RADII]}


def run_ptyhpc(tmp, algorithm, epochs, guess):
    out = os.path.join(tmp, f"{algorithm}.h5")
    ptyhpc("reconstruct", P25, "-o", out, "--near-field", "--focus-distance", FOCUS, "--algorithm", algorithm,
           "--epochs", epochs, "--quiet", "--no-preview")
    p, seconds = read_product(out), np.asarray(product_attrs(out)["seconds_per_epoch"])
    costs = [c for _, c in p["losses"]]
    return p["object"], {"algorithm": algorithm, "epochs": epochs, "seconds_per_epoch": float(np.median(seconds)),
                         "seconds": float(seconds.sum()), "misfit_end_over_first": costs[-1] / costs[0],
                         **star(p["object"], guess)}


def run_cdtools(tmp):
    python = os.path.join(ROOT, ".peers", "cdtools", "bin", "python")
    out = os.path.join(tmp, "cdtools.npz")
    r = subprocess.run([python, os.path.join(ROOT, "scripts", "peers", "cdtools_driver.py"), P25, out, str(FOCUS)],
                       capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"cdtools failed:\n{r.stderr[-3000:]}")
    z = np.load(out)
    obj = z["object"]
    seconds = z["seconds"]
    return obj, {"peer": "CDTools 0.3.2 FancyPtycho, examples/near_field_ptycho.py", "epochs": len(seconds),
                 "seconds_per_epoch": float(np.median(seconds)), "seconds": float(seconds.sum()),
                 "torch_threads": int(z["threads"]), "object_shape": list(obj.shape),
                 **star(obj, (obj.shape[0] // 2, obj.shape[1] // 2))}


def tiles(tmp, ranks_list):
    """Tile share, halo bytes and peak memory per rank for the near-field P25 scan and a far-field set of the same
    size (200 positions, 100 px detector)."""
    far = os.path.join(tmp, "far.cxi")
    ptyhpc("simulate", far, "--object-size", "260", "--probe-size", "100", "--positions", "200",
           "--probe-diameter", "34", "--aperture-radius", "12")
    rows = []
    for name, data, extra in (("near field (P25)", P25, ["--near-field", "--focus-distance", FOCUS]),
                              ("far field (simulated, 100 px, 200 positions)", far, [])):
        for ranks in ranks_list:
            out = os.path.join(tmp, f"tiles{ranks}.h5")
            ptyhpc("reconstruct", data, "-o", out, "--algorithm", "lsqml", "--epochs", "10", "--quiet",
                   "--no-preview", *extra, ranks=ranks)
            info = product_attrs(out)
            p = read_product(out)
            d = load(data)
            d = in_near_field(d, FOCUS) if extra else d
            part = partition(d.scan, d.n, d.object_shape, ranks)
            area = d.object_shape[0] * d.object_shape[1]
            rows.append({"set": name, "ranks": ranks, "object": list(p["object"].shape),
                         "tile_share_max": max(t.shape[0] * t.shape[1] for t in part.tiles) / area,
                         "halo_bytes_per_epoch": float(np.median(info["halo_bytes_per_epoch"]))
                         if info["halo_bytes_per_epoch"] else 0.0,
                         "peak_rss_bytes_max": max(info["peak_rss_bytes"]),
                         "seconds_per_epoch": float(np.median(info["seconds_per_epoch"]))})
            print(rows[-1], flush=True)
    return rows


FAMILY = (  # (detector px, object px, positions, photons per image, seed)
    (128, 256, 200, 1e8, 1), (128, 256, 200, 1e6, 1), (128, 256, 200, 1e7, 2), (64, 128, 100, 1e8, 3),
    (64, 128, 100, 1e6, 4))


def simulate_member(tmp, n, size, count, photons, seed) -> str:
    """Simulate one member of FAMILY into ``tmp``; returns the data file (its truth: ``*_truth.h5`` beside it)."""
    data = os.path.join(tmp, f"nf{n}_p{photons:.0e}_seed{seed}.cxi")
    ptyhpc("simulate", data, "--near-field", "--probe-size", n, "--object-size", size, "--positions", count,
           "--photons", photons, "--seed", seed)
    return data


def simulated(tmp, epochs):
    from ptyhpc.compare import compare_files

    rows = []
    for n, size, count, photons, seed in FAMILY:
        data = simulate_member(tmp, n, size, count, photons, seed)
        for algorithm in ("rpie", "lsqml"):
            out = os.path.join(tmp, "sim.h5")
            ptyhpc("reconstruct", data, "-o", out, "--near-field", "--algorithm", algorithm, "--epochs", epochs,
                   "--quiet", "--no-preview")
            e = compare_files(out, data.replace(".cxi", "_truth.h5"))
            rows.append({"detector_px": n, "object_px": size, "positions": count, "photons": photons, "seed": seed,
                         "algorithm": algorithm, "epochs": epochs, "object_nrmse_ramp": e["object_nrmse_ramp"],
                         "object_nrmse": e["object_nrmse"],
                         "seconds_per_epoch": float(np.median(product_attrs(out)["seconds_per_epoch"]))})
            print(rows[-1], flush=True)
    return rows


def picture(path, ours, theirs, ours_star, theirs_star):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    half = min(ours.shape) // 2 - 2
    (cy, cx), (dy, dx) = ours_star["centre"], theirs_star["centre"]
    a = ours[cy - half:cy + half, cx - half:cx + half]
    b = theirs[dy - half:dy + half, dx - half:dx + half]
    fig, ax = plt.subplots(1, 2, figsize=(10, 5))
    yy, xx = np.mgrid[:2 * half, :2 * half] - half
    inside = np.hypot(yy, xx) < 0.6 * half  # the star, not the unilluminated rim, sets the grey scale
    for axis, img, title in ((ax[0], a, "ptyhpc LSQML"), (ax[1], b, "CDTools (its example)")):
        phase = np.angle(img * np.conj(np.mean(img[inside])))
        lo, hi = np.percentile(phase[inside], [1, 99])
        axis.imshow(phase, cmap="gray", vmin=lo, vmax=hi)
        axis.set_title(f"{title}: phase")
        axis.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--ranks", default="1,2,4")
    ap.add_argument("--skip-cdtools", action="store_true")
    ap.add_argument("--output", default="near_field")
    ap.add_argument("--parts", default="real,tiles,simulated")
    args = ap.parse_args()
    parts = args.parts.split(",")
    if not os.path.isfile(P25):
        print(f"{P25} is absent: nothing to run", file=sys.stderr)
        return 1
    d = in_near_field(load(P25), FOCUS)
    guess = tuple(int(v) for v in np.round(d.scan.mean(axis=0) + d.n / 2))
    payload = {"data": os.path.relpath(P25, ROOT), "focus_distance_m": FOCUS, "geometry": d.geometry(),
               "object_pixel_m": d.pixel_size, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        objects = {}
        for algorithm in ("rpie", "lsqml") if "real" in parts else ():
            objects[algorithm], row = run_ptyhpc(tmp, algorithm, args.epochs, guess)
            payload["runs"].append(row)
            print(row, flush=True)
        if "real" in parts and not args.skip_cdtools:
            theirs, row = run_cdtools(tmp)
            payload["cdtools"] = row
            print(row, flush=True)
            png = os.path.join(BENCH, f"{args.output}.png")
            picture(png, objects["lsqml"], theirs, payload["runs"][1], row)
            payload["picture"] = os.path.relpath(png, ROOT)
        if "tiles" in parts:
            payload["tiles"] = tiles(tmp, [int(r) for r in args.ranks.split(",")])
        if "simulated" in parts:
            payload["simulated"] = simulated(tmp, args.epochs)
    save(args.output, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
