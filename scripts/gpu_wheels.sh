#!/usr/bin/env bash
# Fetch into .whl/ (ignored) the wheels scripts/gpu_check.sh installs on the lent device machine, which has Python
# 3.12, CuPy for CUDA 13, PyTorch, mpi4py, h5py, NumPy, SciPy, matplotlib, pandas, scikit-image, scikit-learn, tqdm
# and pytest, and no network (../.library/device/KINDS.md): MPICH's runtime for its mpi4py (libmpi and mpiexec),
# pytest-mpi, pyFFTW, and Pty-chi 2.2.0 with what it needs that the image lacks (pydantic and its parts). hdf5plugin
# (46 MB) is left out: the GPU checks read no compressed file. Name `.whl` in the device tool's `carry`.
#
#   bash scripts/gpu_wheels.sh [PYTHON_VERSION]        # default 3.12; about 20 MB
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
PY=${PYTHON:-python3}
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version "$PYV" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  mpich==5.0.2 pytest-mpi==0.6 pyfftw==0.15.1 ptychi==2.2.0 pydantic==2.14.4 pydantic-core==2.50.5 \
  annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0 2>&1 | grep -v "^WARNING: Location" || true
ls .whl/*.whl | wc -l | xargs echo "wheels:" && du -sh .whl
