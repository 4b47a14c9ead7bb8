"""Run PtyLab (mPIE, numpy) on a problem exported by bench_peers.py; runs inside PtyLab's own environment.

usage: python ptylab_driver.py PROBLEM.npz RESULT.npz WORKDIR
Same PROBLEM/RESULT layout as ptychi_driver.py; RESULT also holds ``corners``, the window corners in PtyLab's
object frame (PtyLab rounds positions to whole pixels). PtyLab reads its input from an HDF5 file of its own
layout (ptychogram, wavelength, encoder in metres, dxd, zo), written here with dxo = lambda zo / (N dxd).
"""
import os
import sys
import time

import h5py
import numpy as np

z = np.load(sys.argv[1])
work = sys.argv[3]
os.environ.setdefault("OMP_NUM_THREADS", str(int(z["threads"])))
from PtyLab import Engines, easyInitialize  # noqa: E402

patterns = z["patterns"].astype(np.float32)
n = patterns.shape[-1]
epochs = int(z["epochs"])
wavelength, zo, dxo = 1e-10, 1.0, 1e-8
dxd = wavelength * zo / (n * dxo)
corners = z["corners"]
encoder = (corners - corners.mean(axis=0)) * dxo  # rows first, metres
path = os.path.join(work, "ptylab_input.hdf5")
with h5py.File(path, "w") as f:
    f["ptychogram"] = patterns
    f["wavelength"] = wavelength
    f["encoder"] = encoder
    f["dxd"] = dxd
    f["zo"] = zo
experimental, reconstruction, params, monitor, engine = easyInitialize(path, engine=Engines.mPIE,
                                                                       operationMode="CPM", dummyMonitor=True)
params.gpuSwitch = False
params.positionOrder = "random"
params.probeUpdateStart = 1
params.objectUpdateStart = 1
params.probePowerCorrectionSwitch = False
params.comStabilizationSwitch = False
params.orthogonalizationSwitch = False
reconstruction.initializeObjectProbe()
reconstruction.probe = z["probe"].reshape(reconstruction.probe.shape).astype(reconstruction.probe.dtype)
reconstruction.object = np.ones_like(reconstruction.object)
engine = Engines.mPIE(reconstruction, experimental, params, monitor)
engine.numIterations = 1
seconds = []
for _ in range(epochs):
    t0 = time.perf_counter()
    engine.reconstruct()
    seconds.append(time.perf_counter() - t0)
obj = np.asarray(reconstruction.object).reshape(reconstruction.object.shape[-2:])
probe = np.asarray(reconstruction.probe).reshape((-1, n, n))
np.savez(sys.argv[2], object=obj, probe=probe, seconds=np.array(seconds),
         corners=np.asarray(reconstruction.positions, dtype=np.float64))
