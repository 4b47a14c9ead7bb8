"""ptyhpc: SPMD ptychographic reconstruction.

Scan positions are split spatially across MPI ranks; each rank holds only its tile of the object plus a halo and
exchanges overlaps with its neighbours. Each rank drives one GPU through CuPy or the CPU through NumPy.

Glossary of array dimensions used in every docstring
-----------------------------------------------------
POSI   scan positions (diffraction patterns) held by this rank; BATCH: a subset processed together
MODES  incoherent probe modes (mixed state), K
N      side of a diffraction pattern and of the probe window, in pixels (square, N x N)
H, W   object (or object tile) height and width, in object pixels

Conventions
-----------
* Far field: Psi = FFT2(psi) with ``norm="ortho"`` (so sum |Psi|^2 == sum |psi|^2); the zero frequency sits at
  pixel [0, 0] in memory. Files that store centred patterns (CXI, Ptychodus) are ``ifftshift``-ed on reading.
* ``scan`` holds, for each position, the object-pixel coordinate of the probe window's top-left corner,
  rows first: ``scan[j] = (y, x)``. Exit wave ``psi_jk(r) = P_k(r - d_j) * O(r + n_j)``, with ``n_j`` the integer
  part of ``scan[j]`` and ``d_j`` its fractional part; the probe is shifted by ``d_j`` with bilinear
  interpolation (the probe is band-limited by the optics, so interpolating it costs little; the object keeps its
  full resolution). The simulator uses an exact Fourier shift instead.
"""
__version__ = "0.1.0"


def _limit_threads() -> None:
    """Under mpiexec with several ranks on a node, give each rank one BLAS thread and cores / ranks OpenMP threads
    (unless the user set OMP_NUM_THREADS): otherwise every rank's BLAS starts one thread per core and they fight.
    Runs at import, before NumPy loads its BLAS; ``backend.limit_threads`` explains the one BLAS thread and
    limits it at run time in every other case."""
    import os

    env = os.environ
    local = next((env[k] for k in ("MPI_LOCALNRANKS", "PMI_LOCAL_SIZE", "PALS_LOCAL_SIZE",
                                   "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE") if env.get(k)), None)
    if "OMP_NUM_THREADS" in env:
        env.setdefault("PTYHPC_USER_THREADS", "1")  # the user chose: backend.limit_threads leaves it alone
        return
    if local is None:
        return
    try:
        per_rank = max(1, len(os.sched_getaffinity(0)) // max(1, int(local)))
    except (ValueError, AttributeError):
        return
    env.setdefault("OMP_NUM_THREADS", str(per_rank))
    for key in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(key, "1")


_limit_threads()
