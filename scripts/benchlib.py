"""Shared helpers of the benchmark scripts: machine/commit metadata, running ptyhpc, writing JSON."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(next(line.split()[1] for line in f if line.startswith("MemTotal"))) * 1024
    except (OSError, StopIteration):
        pass
    return {"host": platform.node(), "cpu": cpu, "cores": len(os.sched_getaffinity(0)), "memory_bytes": mem,
            "python": platform.python_version(), "platform": platform.platform()}


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        # the records in benchmarks/ are outputs, not code: another benchmark's fresh JSON does not make a run dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def save(name: str, payload: dict) -> str:
    os.makedirs(BENCH, exist_ok=True)
    payload = {"benchmark": name, "commit": commit(), "machine": machine(),
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **payload}
    path = os.path.join(BENCH, f"{name}.json")
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
    print(f"wrote {path}")
    return path


def ptyhpc(*args, ranks: int = 1, env=None, timeout: int = 3600) -> subprocess.CompletedProcess:
    cmd = (["mpiexec", "-n", str(ranks)] if ranks > 1 else []) + [sys.executable, "-m", "ptyhpc", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return r


def product_attrs(path) -> dict:
    import h5py

    with h5py.File(path) as f:
        out = {}
        for k, v in f["ptyhpc"].attrs.items():
            try:
                out[k] = json.loads(v) if isinstance(v, str) else (v.item() if hasattr(v, "item") else v)
            except (ValueError, TypeError):
                out[k] = v
        return out
