#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the whole test suite:
#   1. every test in one process (tests marked mpi skip there; the CLI and malformed-input tests start
#      mpiexec themselves),
#   2. the MPI tests under mpiexec -n 2 and -n 4 (oversubscribed on small machines).
# Before them it starts Slurm on localhost (scripts/slurm_local.sh, as root) for the Parsl + Slurm test.
# A hung rank cannot hang the suite: pytest-timeout bounds each test and `timeout` each mpiexec run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/slurm_local.sh  # a real Slurm on localhost for `ptyhpc submit --site slurm` (tests skip without it)
bash scripts/sshd_local.sh   # a real sshd on 127.0.0.1:2222 for the ssh route (tests skip without it)
PY=.venv/bin/python
export PYTHONDONTWRITEBYTECODE=1
"$PY" -m pytest -q -p no:cacheprovider --timeout=600 tests
for n in 2 4; do
  echo "== MPI tests on $n ranks =="
  timeout 1200 mpiexec -n "$n" "$PY" -m pytest -q -p no:cacheprovider --timeout=900 --with-mpi -m mpi tests
done
