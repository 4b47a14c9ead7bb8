#!/usr/bin/env bash
# Set up ptyhpc on a fresh Debian 12 machine (as root, or with sudo):
#   * MPICH and parallel HDF5 from Debian (mpich, libhdf5-mpich-dev),
#   * a virtual environment (.venv, or $PTYHPC_VENV) with mpi4py and h5py built from source against that same
#     MPICH (no PyPI wheel of h5py has MPI, and the mpi4py wheel looks for libmpi.so.12, which Debian names
#     libmpich.so.12),
#   * ptyhpc itself, editable, with the test, workflow, ptychodus, globus, stream (pvapy) and fftw extras (Ptychodus: its readers through
#     --reader, and the tests that check ptyhpc against it).
# Idempotent: on a machine that is already set up it checks each piece and returns in a few seconds.
# PTYHPC_SERIAL=1 skips MPI and parallel HDF5 entirely (a serial-only install: plain PyPI wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PTYHPC_VENV:-.venv}
PY=${PYTHON:-python3}
log() { printf '[setup] %s\n' "$*"; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

if [ "${PTYHPC_SERIAL:-0}" != 1 ]; then
  missing=()
  for p in mpich libmpich-dev libhdf5-mpich-dev pkg-config; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # If Open MPI is also installed, Debian's alternatives prefer it; mpi4py, h5py and mpiexec must agree.
  if update-alternatives --list mpi 2>/dev/null | grep -q openmpi; then
    $SUDO update-alternatives --set mpi /usr/bin/mpicc.mpich >/dev/null
    $SUDO update-alternatives --set mpirun /usr/bin/mpirun.mpich >/dev/null
  fi
fi

[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
VPY="$VENV/bin/python"
pipq() { "$VPY" -m pip install -q --disable-pip-version-check "$@"; }

if [ "${PTYHPC_SERIAL:-0}" != 1 ]; then
  pipq numpy "Cython>=3" pkgconfig "setuptools>=77" packaging wheel
  if ! "$VPY" -c "from mpi4py import MPI; assert 'MPICH' in MPI.Get_library_version()" 2>/dev/null; then
    log "building mpi4py against Debian's MPICH (~3 min)"
    MPICC=mpicc.mpich pipq --no-binary=mpi4py --no-cache-dir --force-reinstall --no-deps mpi4py
  fi
  if ! "$VPY" -c "import h5py, sys; sys.exit(0 if h5py.get_config().mpi else 1)" 2>/dev/null; then
    log "building h5py against parallel HDF5 (hdf5-mpich, ~3 min)"
    CC=mpicc.mpich HDF5_MPI=ON HDF5_PKGCONFIG_NAME=hdf5-mpich \
      pipq --no-binary=h5py --no-build-isolation --no-cache-dir --force-reinstall --no-deps h5py
  fi
  pipq -e ".[mpi,test,workflow,ptychodus,globus,stream,fftw]"
else
  pipq -e ".[test,workflow,ptychodus,globus,stream,fftw]"
fi
# FFTW's plans of the default batch FFTs, measured once here (about a second): the default fft = 'auto' computes
# with them, the same bits in every process of this machine (ptyhpc plan-fft --help)
"$VENV/bin/ptyhpc" plan-fft >/dev/null && log "FFTW plans measured into $VENV/share/ptyhpc/fftw-wisdom"
"$VPY" - <<'PY'
import h5py, numpy
try:
    from mpi4py import MPI
    mpi = MPI.Get_library_version().splitlines()[0]
except ImportError:
    mpi = "none"
print(f"[setup] ok: numpy {numpy.__version__}, h5py {h5py.__version__} (parallel={h5py.get_config().mpi}), MPI: {mpi}")
PY
