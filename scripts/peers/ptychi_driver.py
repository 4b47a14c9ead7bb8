"""Run Pty-chi on a problem exported by bench_peers.py; runs inside Pty-chi's own virtual environment.

usage: python ptychi_driver.py PROBLEM.npz RESULT.npz
PROBLEM: patterns (POSI, N, N) with the zero frequency centred, corners (POSI, 2) window corners (rows first),
shape (H, W), probe (MODES, N, N) for an orthonormal FFT, algorithm 'rpie' | 'lsqml', epochs, batch, threads;
optional position_start (>= 0: its position correction, defaults otherwise, from that epoch); optional slices (> 1:
multislice, with slice_spacing, pixel and wavelength in metres); optional device 'cpu' (the default) | 'gpu'.
RESULT: object (H, W) (multislice: (S, H, W)), probe, seconds (per epoch; on a GPU each epoch ends with a device
synchronisation), seconds_to_first_epoch (from the task's creation, data upload included, to the end of epoch 1),
corners (POSI, 2) the positions it ends with.
Conventions (../shared/peers.md): unnormalised FFT (probe / N), positions are probe centres relative to the
object's pixel round(H/2) - 0.5, and torchvision is stubbed (only used for blurring random starts).
"""
import os
import sys
import time
import types

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_tv = types.ModuleType("torchvision")
_tv.transforms = types.ModuleType("torchvision.transforms")
_tv.transforms.GaussianBlur = None  # only used to blur random starts, which this benchmark does not use
sys.modules.setdefault("torchvision", _tv)
sys.modules.setdefault("torchvision.transforms", _tv.transforms)

import numpy as np  # noqa: E402
import torch  # noqa: E402

z = np.load(sys.argv[1])
torch.set_num_threads(int(z["threads"]))
import ptychi.api as api  # noqa: E402
from ptychi.api.task import PtychographyTask  # noqa: E402

algorithm, epochs, batch = str(z["algorithm"]), int(z["epochs"]), int(z["batch"])
patterns = z["patterns"].astype(np.float32)
n = patterns.shape[-1]
h, w = (int(v) for v in z["shape"])
centres = z["corners"] + (n - 1) / 2 - (np.round(np.array([h, w]) / 2) - 0.5)

options = api.RPIEOptions() if algorithm == "rpie" else api.LSQMLOptions()
options.reconstructor_options.num_epochs = epochs
options.reconstructor_options.batch_size = batch
gpu = "device" in z.files and str(z["device"]) == "gpu"
options.reconstructor_options.default_device = api.Devices.GPU if gpu else api.Devices.CPU
options.data_options.save_data_on_device = gpu  # its own setting for speed on a GPU: no host copy per batch
options.object_options.optimizable = True
options.probe_options.optimizable = True
start = int(z["position_start"]) if "position_start" in z.files else -1
options.probe_position_options.optimizable = start >= 0
if start >= 0:
    options.probe_position_options.optimization_plan.start = start
if algorithm == "lsqml":
    options.reconstructor_options.noise_model = api.NoiseModels.GAUSSIAN
slices = int(z["slices"]) if "slices" in z.files else 1
if slices > 1:
    options.object_options.slice_spacings_m = np.full(slices - 1, float(z["slice_spacing"]))
    options.object_options.pixel_size_m = float(z["pixel"])
    options.data_options.wavelength_m = float(z["wavelength"])


def sync():
    if gpu:
        torch.cuda.synchronize()


start_time = time.perf_counter()
task = PtychographyTask(
    options,
    diffraction_data=patterns,
    object_data=np.ones((slices, h, w), np.complex64),
    probe_data=(z["probe"] / n).astype(np.complex64)[None],
    probe_position_x_px=centres[:, 1],
    probe_position_y_px=centres[:, 0],
)
seconds = []
for _ in range(epochs):
    t0 = time.perf_counter()
    task.run(1)
    sync()
    seconds.append(time.perf_counter() - t0)
    if len(seconds) == 1:
        first = time.perf_counter() - start_time
obj = np.asarray(task.get_data_to_cpu("object", as_numpy=True)).reshape((slices, h, w) if slices > 1 else (h, w))
probe = np.asarray(task.get_data_to_cpu("probe", as_numpy=True))
rows = np.asarray(task.get_probe_positions_y(as_numpy=True), dtype=np.float64)
cols = np.asarray(task.get_probe_positions_x(as_numpy=True), dtype=np.float64)
corners = np.stack([rows, cols], axis=1) - (n - 1) / 2 + (np.round(np.array([h, w]) / 2) - 0.5)
np.savez(sys.argv[2], object=obj, probe=probe.reshape((-1, n, n)) * n, seconds=np.array(seconds),
         seconds_to_first_epoch=first, corners=corners)
