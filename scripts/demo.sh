#!/usr/bin/env bash
# Set everything up (scripts/setup.sh), simulate the default dataset (512^2 object, 128^2 probe, 700 positions,
# 1e6 photons per pattern) and reconstruct it with rPIE on 2 MPI ranks, then score it against the ground truth.
# Output in out/: demo.cxi (data), demo_truth.h5, demo_rpie.h5 (Ptychodus product file) and demo_rpie.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/ptyhpc simulate out/demo.cxi --initial-probe out/demo_probe.npy
mpiexec -n 2 .venv/bin/ptyhpc reconstruct out/demo.cxi -o out/demo_rpie.h5 --algorithm rpie --epochs 50 \
  --probe out/demo_probe.npy
.venv/bin/ptyhpc compare out/demo_rpie.h5 out/demo_truth.h5
