#!/usr/bin/env bash
# The GPU checks in one run (issue 17), for the lent device machine (it has CuPy for CUDA 13, mpi4py, h5py and
# PyTorch; not ptyhpc's other needs), or on the CPU with `--device cpu`:
#   1. what is there: the device, driver, CuPy, whether mpi4py's MPI is CUDA-aware;
#   2. the test suite's device cases (tests parametrised by the `device` or `xp` fixture) on that device;
#   3. the SPMD equality tests with 2 ranks sharing the device (host-staged MPI unless CUDA-aware);
#   4. scripts/bench_gpu.py (seconds per epoch against the FFTs alone, Pty-chi on the same device, and on a GPU the
#      100-epoch feedback run of the large set): benchmarks/gpu_<device>.json (and a copy and the logs under $OUT,
#      when the device tool sets it).
# Wheels the machine lacks travel in .whl/ (`bash scripts/gpu_wheels.sh` here, then the device tool's carry:
# [".whl"]) and, when the interpreter is not the project's .venv, are installed to /tmp/site first (a failed install
# ends the script); MPICH's runtime from them is unpacked to /tmp/mpich and goes on PATH and LD_LIBRARY_PATH.
#
#   bash scripts/gpu_check.sh [--device gpu|cpu] [bench_gpu.py options...]
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=gpu
if [ "${1:-}" = "--device" ]; then DEVICE=$2; shift 2; fi
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
LOGS=${OUT:-/tmp}  # the device tool brings back what is written under $OUT
if [ "$PY" != .venv/bin/python ] && compgen -G ".whl/*.whl" >/dev/null; then  # not with the project's venv
  set -e
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    $(ls .whl/*.whl | grep -v /mpich-) && export PYTHONPATH=/tmp/site:$PWD
  # pip --target keeps a wheel's bin/ and drops its lib/: MPICH's runtime is unpacked as it is
  if compgen -G ".whl/mpich-*.whl" >/dev/null; then
    "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall('/tmp/mpich')" .whl/mpich-*.whl
    m=$(ls -d /tmp/mpich/mpich-*.data/data) && chmod +x "$m"/bin/* \
      && export PATH=$m/bin:$PATH LD_LIBRARY_PATH=$m/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
  set +e
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
status=0
step() { echo "== $*"; }

step "environment"
"$PY" - "$DEVICE" <<'PY' || status=1
import sys
from ptyhpc.backend import describe, get_xp, limit_threads
limit_threads(1)
xp = get_xp(sys.argv[1])
print("device:", describe(xp))
try:
    from mpi4py import MPI
    print("MPI:", MPI.Get_library_version().splitlines()[0])
    from ptyhpc.comm import cuda_aware
    print("CUDA-aware MPI:", cuda_aware())
except ImportError as e:
    print("mpi4py:", e)
PY

step "device test cases ($DEVICE)"
"$PY" -m pytest -q -p no:cacheprovider tests/test_physics.py tests/test_algorithms.py tests/test_multislice.py \
  tests/test_opr.py tests/test_positions.py -k "$DEVICE" \
  2>&1 | tee "$LOGS/gpu_check_tests.log" | tail -3 || status=1

step "SPMD equality, 2 ranks sharing the device"
timeout 900 mpiexec -n 2 "$PY" -m pytest -q -p no:cacheprovider --with-mpi -m mpi -k "$DEVICE" \
  tests/test_spmd_mpi.py tests/test_io_mpi.py 2>&1 | tee "$LOGS/gpu_check_spmd.log" | tail -3 || status=1

FEEDBACK=()
[ "$DEVICE" = gpu ] && FEEDBACK=(--feedback-epochs 100)
step "bench_gpu.py --device $DEVICE ${FEEDBACK[*]} $*"
"$PY" scripts/bench_gpu.py --device "$DEVICE" "${FEEDBACK[@]}" "$@" 2>&1 | tee "$LOGS/gpu_check_bench.log" || status=1
[ -z "${OUT:-}" ] || cp "benchmarks/gpu_$DEVICE.json" "$OUT/"
exit $status
