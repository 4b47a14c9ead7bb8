"""Run CDTools' own near-field example (examples/near_field_ptycho.py of cdtools 0.3.2) on a CXI file; runs inside
CDTools' environment.

usage: python cdtools_driver.py DATA.cxi RESULT.npz FOCUS_DISTANCE_M [EPOCHS_1 EPOCHS_2]
The example's settings: FancyPtycho.from_dataset(n_modes=1, near_field=True, propagation_distance=FOCUS), Adam
EPOCHS_1 (100) epochs at lr 0.04 in batches of 10, then EPOCHS_2 (50) at lr 0.005 in batches of 50. RESULT holds
``object`` (complex, CDTools' object grid), ``probe``, ``pixel`` (m), ``losses`` and ``seconds`` (wall, per epoch).
"""
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # ../shared/peers.md: busy-waiting threads slow 2-core runs
import numpy as np  # noqa: E402
import torch as t  # noqa: E402
import cdtools  # noqa: E402

data, out, focus = sys.argv[1], sys.argv[2], float(sys.argv[3])
first, second = (int(v) for v in sys.argv[4:6]) if len(sys.argv) > 5 else (100, 50)
dataset = cdtools.datasets.Ptycho2DDataset.from_cxi(data)
model = cdtools.models.FancyPtycho.from_dataset(dataset, n_modes=1, near_field=True, propagation_distance=focus)
recon = cdtools.reconstructors.AdamReconstructor(model, dataset)
losses, seconds = [], []
for epochs, lr, batch in ((first, 0.04, 10), (second, 0.005, 50)):
    if not epochs:
        continue
    t0 = time.perf_counter()
    for loss in recon.optimize(epochs, lr=lr, batch_size=batch):
        now = time.perf_counter()
        losses.append(float(loss))
        seconds.append(now - t0)
        t0 = now
model.tidy_probes()
obj = model.obj.detach().cpu().numpy()
obj = obj[0] if obj.ndim == 3 else obj
probe = model.probe.detach().cpu().numpy()
pixel = float(np.abs(model.probe_basis.detach().cpu().numpy()).max())
np.savez(out, object=obj, probe=probe, pixel=pixel, losses=np.asarray(losses), seconds=np.asarray(seconds),
         threads=t.get_num_threads())
