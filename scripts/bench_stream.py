"""Streaming figures on this machine (loopback PV Access): the frame rate ``ptyhpc stream`` keeps up with, the
time to the first preview, and the time from the last frame to the final product.

usage: python scripts/bench_stream.py [--rates 100,200,400] [--seconds 60] [--ranks 2] [--final-epochs 50]
                                     [--routes receiver distributor] [--output stream]

1. Rates: ``ptyhpc replay`` serves 128x128 uint16 frames (the default simulated set, repeated, each pass moved by a
   third of a pixel) at each rate for ``--seconds``; ``mpiexec -n RANKS ptyhpc stream`` receives, joins and
   reconstructs while they arrive; lost = frames sent but never joined. The highest rate without loss is reported.
2. Latency: in the same runs, seconds from the first frame to the first published preview. Peak resident
   memory of each rank (every rank holds the whole scan as received).
3. End of scan: the default set (700 positions) replayed at 200 Hz, then ``--final-epochs``: seconds from the last
   frame to the final product written.
Each for every ``--route`` (how frames reach the ranks: all to rank 0, or dealt to the ranks by pvapy's data
distributor; ``ptyhpc stream --route``). Writes benchmarks/stream.json (``--output``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import product_attrs, ptyhpc, save  # noqa: E402

ENV = dict(os.environ, EPICS_PVA_AUTO_ADDR_LIST="NO", EPICS_PVA_ADDR_LIST="127.0.0.1",
           EPICS_PVAS_INTF_ADDR_LIST="127.0.0.1", EPICS_PVA_SERVER_PORT="15275", EPICS_PVA_BROADCAST_PORT="15276")
GEOMETRY = ["--energy-ev", "10000", "--distance", "2", "--detector-pixel", "75e-6"]


def one(tmp, data, tag, rate, repeat, count, ranks, final_epochs, preview=True, route="receiver"):
    replay = subprocess.Popen([sys.executable, "-m", "ptyhpc", "replay", data, "--frames", f"{tag}:f", "--positions",
                               f"{tag}:p", "--rate", str(rate), "--repeat", str(repeat), "--start-delay", "3",
                               "--linger", "5"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = os.path.join(tmp, f"{tag}.h5")
    mpi = ["mpiexec", "-n", str(ranks)] if ranks > 1 else []
    t0 = time.monotonic()
    r = subprocess.run(mpi + [sys.executable, "-m", "ptyhpc", "stream", "--frames", f"{tag}:f", "--positions",
                              f"{tag}:p", "-o", out, *GEOMETRY, "--final-epochs", str(final_epochs), "--quiet",
                              "--no-preview", "--quiet-seconds", "2", "--timeout", "30", "--route", route,
                              *(["--preview", f"{tag}:preview", "--preview-every", "1"] if preview else [])],
                       env=ENV, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - t0
    replay.wait(timeout=120)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    report = json.load(open(os.path.join(tmp, f"{tag}.stream.json")))
    sent = count * repeat
    return {"rate_hz": rate, "frames_sent": sent, "joined": report["joined"], "lost": sent - report["joined"],
            "epochs_while_streaming": report["epochs_while_streaming"], "timings": report["timings"],
            "wall_seconds": wall, "why": report["why"], "route": route,
            "peak_rss_bytes_per_rank": product_attrs(out)["peak_rss_bytes"],
            **({"frames_per_rank": report["frames_per_rank"]} if "frames_per_rank" in report else {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="100,200,400")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--final-epochs", type=int, default=50)
    ap.add_argument("--routes", nargs="+", default=["receiver"], choices=["receiver", "distributor"])
    ap.add_argument("--output", default="stream")
    args = ap.parse_args()
    record = {"ranks": args.ranks, "seconds": args.seconds, "frames": "128x128 uint16", "routes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "std.cxi")
        ptyhpc("simulate", data)
        count = 700
        for route in args.routes:
            rows = []
            for i, rate in enumerate(int(r) for r in args.rates.split(",")):
                repeat = max(1, int(round(rate * args.seconds / count)))
                row = one(tmp, data, f"{route}{i}", rate, repeat, count, args.ranks, final_epochs=1, route=route)
                rows.append(row)
                print(row, flush=True)
            end = one(tmp, data, f"{route}end", 200, 1, count, args.ranks, args.final_epochs, route=route)
            print(end, flush=True)
            kept = [r["rate_hz"] for r in rows if r["lost"] == 0]
            record["routes"][route] = {"rates": rows, "highest_rate_without_loss_hz": max(kept) if kept else None,
                                       "end_of_scan": end}
    save(args.output, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
