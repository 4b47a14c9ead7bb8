#!/usr/bin/env bash
# Create one virtual environment per peer reconstructor for scripts/bench_peers.py, following the install notes
# in ../shared/peers.md: Pty-chi 2.2.0 on a CPU-only torch 2.13.0, PtyLab 0.3.7 on numpy, CDTools 0.3.2 (the
# near-field anchor, scripts/bench_near_field.py) on a CPU-only torch 2.13.0. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${PTYHPC_PEERS:-.peers}
PY=${PYTHON:-python3}
mkdir -p "$ROOT"
pipq() { "$1/bin/python" -m pip install -q --disable-pip-version-check "${@:2}"; }

if ! "$ROOT/ptychi/bin/python" -c "import sys, types; sys.modules['torchvision']=types.ModuleType('torchvision'); import ptychi" 2>/dev/null; then
  echo "[peers] Pty-chi 2.2.0 (CPU torch 2.13.0)"
  "$PY" -m venv "$ROOT/ptychi"
  pipq "$ROOT/ptychi" torch==2.13.0 h5py scikit-image
  pipq "$ROOT/ptychi" ptychi==2.2.0
  # ptychi drags in a CUDA torch: put the CPU build back and drop the CUDA packages.
  extra=$("$ROOT/ptychi/bin/python" -m pip list --format=freeze 2>/dev/null | cut -d= -f1 |
          grep -E '^(torch|torchvision|triton|nvidia-.*|cuda-.*)$' || true)
  [ -z "$extra" ] || "$ROOT/ptychi/bin/python" -m pip uninstall -q -y $extra
  pipq "$ROOT/ptychi" torch==2.13.0
fi
if ! "$ROOT/ptylab/bin/python" -c "import PtyLab" 2>/dev/null; then
  echo "[peers] PtyLab 0.3.7"
  "$PY" -m venv "$ROOT/ptylab"
  pipq "$ROOT/ptylab" ptylab==0.3.7 h5py
fi
if ! "$ROOT/cdtools/bin/python" -c "import cdtools" 2>/dev/null; then
  echo "[peers] CDTools 0.3.2 (CPU torch 2.13.0)"
  "$PY" -m venv "$ROOT/cdtools"
  pipq "$ROOT/cdtools" torch==2.13.0
  pipq "$ROOT/cdtools" cdtools-py==0.3.2
  extra=$("$ROOT/cdtools/bin/python" -m pip list --format=freeze 2>/dev/null | cut -d= -f1 |
          grep -E '^(triton|nvidia-.*|cuda-.*)$' || true)
  [ -z "$extra" ] || "$ROOT/cdtools/bin/python" -m pip uninstall -q -y $extra
fi
echo "[peers] ok: $ROOT/ptychi, $ROOT/ptylab, $ROOT/cdtools"
