"""How soon a subscription finds a PV Access server that restarted: ``io.pva.Subscription`` (a channel without a
server made anew every ``REOPEN`` seconds) against pvAccess' own reconnection (``REOPEN`` infinite), over real
pvapy servers on loopback (EPICS_PVA_ADDR_LIST=127.0.0.1, no broadcast: how the tests and the demo run).

Each trial: a server with two records posts a counter to both every 10 ms for 1.5 s and exits; after a gap (drawn
uniformly from 2-5 s, the same gaps for both ways) a new server starts and posts at once, for 6 s. The client
drains its two subscriptions every 50 ms (the stream's polling interval) throughout. Figure: for each channel, the
seconds from the new server's first update to the first of its updates received (missed: none within its 6 s).
Writes benchmarks/reconnect.json (``--output``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import save  # noqa: E402

os.environ.update(EPICS_PVA_AUTO_ADDR_LIST="NO", EPICS_PVA_ADDR_LIST="127.0.0.1", EPICS_PVAS_INTF_ADDR_LIST="127.0.0.1",
                  EPICS_PVA_SERVER_PORT="15375", EPICS_PVA_BROADCAST_PORT="15376")

SERVER = """
import sys, time, pvaccess as pva
tag, seconds, delay = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
s = {"v": pva.INT}
server = pva.PvaServer()
server.stop()
for name in ("rc:a", "rc:b"):
    server.addRecord(name, pva.PvObject(s))
server.start()
time.sleep(delay)
t0, i = time.time(), 0
print(t0, flush=True)
while time.time() - t0 < seconds:
    i += 1
    for name in ("rc:a", "rc:b"):
        server.update(name, pva.PvObject(s, {"v": tag * 1000000 + i}))
    time.sleep(0.01)
"""


def serve(tag: int, seconds: float, delay: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SERVER, str(tag), str(seconds), str(delay)],
                            stdout=subprocess.PIPE, text=True)


def trial(gap: float, reopen: float, poll: float = 0.05) -> list:
    """Seconds from the restarted server's first update to the first received, per channel (None: missed)."""
    from ptyhpc.io import pva as stream_pva

    stream_pva.REOPEN = reopen
    pva = stream_pva._pva()
    first = serve(1, 1.5, 1.0)
    subs = [stream_pva.Subscription(pva, name, stream_pva.frames_request()) for name in ("rc:a", "rc:b")]
    got = [None, None]

    def drain():
        now = time.time()
        for k, s in enumerate(subs):
            for pv in s.take():
                if pv["v"] // 1000000 == 2 and got[k] is None:
                    got[k] = now

    while first.poll() is None:
        drain()
        time.sleep(poll)
    end = time.monotonic() + gap
    while time.monotonic() < end:
        drain()
        time.sleep(poll)
    second = serve(2, 6.0, 0.0)
    while second.poll() is None and None in got:
        drain()
        time.sleep(poll)
    second.kill()
    started = float(second.communicate()[0].split()[0])
    for s in subs:
        s.close()
    return [None if t is None else round(t - started, 3) for t in got]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="reconnect")
    args = p.parse_args()
    from ptyhpc.io import pva as stream_pva

    gaps = np.random.default_rng(args.seed).uniform(2, 5, args.trials).round(2).tolist()
    ways = {"made anew": stream_pva.REOPEN, "pvAccess alone": float("inf")}
    rows = {name: [] for name in ways}
    for gap in gaps:
        for name, reopen in ways.items():
            rows[name].append({"gap_s": gap, "seconds": trial(gap, reopen)})
            print(f"gap {gap:.2f} s, {name}: {rows[name][-1]['seconds']}")
    summary = {}
    for name, rs in rows.items():
        found = [t for r in rs for t in r["seconds"] if t is not None]
        summary[name] = {"median_s": float(np.median(found)) if found else None,
                         "max_s": max(found) if found else None,
                         "missed": sum(t is None for r in rs for t in r["seconds"]),
                         "channels_apart": sum(r["seconds"][0] != r["seconds"][1] for r in rs)}
        print(f"{name}: median {summary[name]['median_s']} s, largest {summary[name]['max_s']} s, "
              f"missed {summary[name]['missed']} of {2 * len(rs)}, the two channels at different times in "
              f"{summary[name]['channels_apart']} of {len(rs)} trials")
    save(args.output, {"reopen_s": stream_pva.REOPEN, "poll_s": 0.05, "trials": rows, "summary": summary})


if __name__ == "__main__":
    main()
