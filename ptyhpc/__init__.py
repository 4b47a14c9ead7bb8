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
