"""Running ``ptyhpc`` as a user does, in a subprocess (under ``mpiexec -n R`` where R > 1), and checking what it
left behind. Shared by the end-to-end test modules."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys


def run(cmd, timeout=90):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def mpiexec(n):
    return ["mpiexec", "-n", str(n)] if n > 1 and shutil.which("mpiexec") else []


def ptyhpc(ranks, *args):
    return mpiexec(ranks) + [sys.executable, "-m", "ptyhpc", *map(str, args)]


def checksums(folder) -> dict:
    """{name: sha256} of every file under ``folder`` (links followed)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def one_error_line(r, *parts):
    """The run failed with a ``ptyhpc: error`` line holding every one of ``parts``, and no traceback."""
    assert r.returncode != 0, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("ptyhpc: error")]
    assert errors, r.stderr
    assert all(str(p) in errors[0] for p in parts), errors[0]
    assert "Traceback" not in r.stderr, r.stderr
    return errors[0]
