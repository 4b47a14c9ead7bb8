"""The command line as a user runs it: simulate -> reconstruct (1 and R ranks) -> compare / info."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from ptyhpc.io.product import read_product

SMALL = ["--object-size", "192", "--probe-size", "64", "--positions", "150", "--probe-diameter", "22",
         "--aperture-radius", "8"]
needs_mpiexec = pytest.mark.skipif(shutil.which("mpiexec") is None, reason="mpiexec not installed")


def ptyhpc(*args, ranks=1, timeout=300):
    cmd = (["mpiexec", "-n", str(ranks)] if ranks > 1 else []) + [sys.executable, "-m", "ptyhpc", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    ptyhpc("simulate", d / "s.cxi", *SMALL, "--initial-probe", d / "p0.npy")
    return d


def test_simulate_reconstruct_compare(sim, tmp_path):
    out = tmp_path / "r.h5"
    r = ptyhpc("reconstruct", sim / "s.cxi", "-o", out, "--epochs", "20", "--probe", sim / "p0.npy")
    assert "epoch   20/20" in r.stderr  # plain progress lines when stderr is not a terminal
    assert (tmp_path / "r.png").stat().st_size > 10_000
    errors = json.loads(ptyhpc("compare", out, sim / "s_truth.h5", "--json").stdout)
    assert errors["object_nrmse_ramp"] <= 0.05  # measured 0.040 after 20 epochs
    assert errors["probe_nrmse"] <= 0.08
    assert "product file" in ptyhpc("info", out).stdout
    assert "150 x 64 x 64" in ptyhpc("info", sim / "s.cxi").stdout
    with h5py.File(out) as f:  # rPIE's defaults in force (LSQML's damping is recorded only for LSQML)
        assert json.loads(f["ptyhpc"].attrs["config_in_force"]) == {"batch_size": 16, "subpixel": "bilinear"}


def test_config_file_and_overrides(sim, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[reconstruct]\nalgorithm = "lsqml"\nepochs = 3\nbatch_size = 50\n')
    out = tmp_path / "r.h5"
    ptyhpc("reconstruct", sim / "s.cxi", "-o", out, "--config", cfg, "--epochs", "2", "--set", "lsqml_beta=0.5",
           "--no-preview")
    with h5py.File(out) as f:
        c = json.loads(f["ptyhpc"].attrs["config"])
        in_force = json.loads(f["ptyhpc"].attrs["config_in_force"])
    assert (c["algorithm"], c["epochs"], c["batch_size"], c["lsqml_beta"]) == ("lsqml", 2, 50, 0.5)
    # the defaults left open (lsqml_delta 0, subpixel 'auto') are recorded as what they came to: one slice's damping
    assert (c["lsqml_delta"], c["subpixel"]) == (0.0, "auto")
    assert in_force == {"batch_size": 50, "lsqml_delta": 0.03, "subpixel": "bilinear"}


def test_unknown_setting_and_gpu_without_gpu_are_clear_errors(sim, tmp_path):
    from ptyhpc.backend import _cupy

    bad = tmp_path / "c.toml"
    bad.write_text("[reconstruct]\nepoch = 3\n")
    r = subprocess.run([sys.executable, "-m", "ptyhpc", "reconstruct", sim / "s.cxi", "-o", tmp_path / "o.h5",
                        "--config", bad], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown setting(s) ['epoch']" in r.stderr
    if _cupy() is None:
        r = subprocess.run([sys.executable, "-m", "ptyhpc", "reconstruct", sim / "s.cxi", "-o", tmp_path / "o.h5",
                            "--device", "gpu"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "no usable GPU" in r.stderr and "Traceback" not in r.stderr


@needs_mpiexec
@pytest.mark.parametrize("algorithm,ranks", [("dm", 2), ("lsqml", 2), ("dm", 5)])
def test_mpiexec_result_file_equals_one_rank(sim, tmp_path, algorithm, ranks):
    args = ["reconstruct", sim / "s.cxi", "--algorithm", algorithm, "--epochs", "10", "--probe", sim / "p0.npy",
            "--no-preview", "--quiet"]
    ptyhpc(*args, "-o", tmp_path / "one.h5")
    ptyhpc(*args, "-o", tmp_path / "many.h5", ranks=ranks)
    one, many = read_product(tmp_path / "one.h5"), read_product(tmp_path / "many.h5")
    rel = np.linalg.norm(many["object"] - one["object"]) / np.linalg.norm(one["object"])
    assert rel <= 1e-5
    assert np.linalg.norm(many["probe"] - one["probe"]) / np.linalg.norm(one["probe"]) <= 1e-5
    attrs = many["attrs"]
    assert attrs["ranks"] == ranks
    neighbours = json.loads(attrs["neighbours"])
    halo = json.loads(attrs["halo_bytes_per_epoch"])
    assert max(neighbours) >= (4 if ranks == 5 else 1)
    assert all(b > 0 for b in halo)


@needs_mpiexec
def test_run_facts_in_the_result_are_readable_after_a_parallel_write(sim, tmp_path):
    """Per-rank facts (timings) differ between ranks; the collective write must still store one valid value."""
    out = tmp_path / "r.h5"
    ptyhpc("reconstruct", sim / "s.cxi", "-o", out, "--epochs", "3", "--no-preview", "--quiet", ranks=2)
    with h5py.File(out) as f:
        attrs = f["ptyhpc"].attrs
        seconds = json.loads(attrs["seconds_per_epoch"])
        assert len(seconds) == 3 and all(s > 0 for s in seconds)
        assert len(json.loads(attrs["peak_rss_bytes"])) == 2


def test_one_process_gives_its_ffts_the_cores_and_blas_one_thread_beside_fftw():
    """Without mpiexec a process's FFTs get all its cores, and with FFTW BLAS one thread (an idle OpenBLAS thread
    spinning beside the FFTW threads cost rPIE 3.7x per epoch, scripts/bench_threads.py)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from ptyhpc import backend

    if os.environ.get("PTYHPC_USER_THREADS"):
        pytest.skip("OMP_NUM_THREADS is set: the user's thread counts apply")
    saved = backend.FFT_WORKERS
    with threadpool_limits(limits=None):  # restores the test process's limits afterwards
        try:
            backend.limit_threads(1, blas_one=True)
            blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
            assert blas and max(blas) == 1, blas
            assert backend.FFT_WORKERS == len(os.sched_getaffinity(0))
        finally:
            backend.FFT_WORKERS = saved


def test_a_lone_process_keeps_blas_and_runs_fftw_on_one_thread_beside_it():
    """Without mpiexec BLAS keeps its threads (one BLAS thread in a stream process costs it a restarted server's
    frames: README, streaming), and then FFTW's transforms run on one thread (an FFTW thread beside spinning BLAS
    threads cost rPIE 3.7x per epoch) while scipy's get the cores."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from ptyhpc import backend

    if os.environ.get("PTYHPC_USER_THREADS"):
        pytest.skip("OMP_NUM_THREADS is set: the user's thread counts apply")

    def blas():
        return max([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] or [1])

    saved = backend.FFT_LIBRARY, backend.CPU_FFT, backend.FFT_WORKERS
    with threadpool_limits(limits=None):
        threads = blas()
        if threads < 2 or len(os.sched_getaffinity(0)) < 2:
            pytest.skip("BLAS has one thread here, or there is one core")
        try:
            backend.FFT_LIBRARY = "fftw (planned)"
            backend.limit_threads(1)
            assert backend.FFT_WORKERS == 1 and blas() == threads
            backend.FFT_LIBRARY = "scipy"
            backend.limit_threads(1)
            assert backend.FFT_WORKERS == len(os.sched_getaffinity(0)) and blas() == threads
        finally:
            backend.FFT_LIBRARY, backend.CPU_FFT, backend.FFT_WORKERS = saved


@needs_mpiexec
def test_ranks_share_the_cores_even_when_numpy_was_imported_first(tmp_path):
    """Two ranks on a node must not each start one BLAS thread per core (oversubscription), whatever the
    import order of the user's script."""
    script = tmp_path / "s.py"
    script.write_text(
        "import numpy, os\n"
        "from threadpoolctl import threadpool_info\n"
        "from mpi4py import MPI\n"
        "import sys; sys.path.insert(0, %r)\n"
        "from conftest import small_dataset\n"
        "from ptyhpc.config import ReconConfig\n"
        "from ptyhpc.engine import Reconstruction\n"
        "d, _, p0 = small_dataset()\n"
        "Reconstruction(d, ReconConfig(), MPI.COMM_WORLD, probe=p0)\n"
        "blas = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']\n"
        "cores = len(os.sched_getaffinity(0))\n"
        "assert blas and max(blas) <= max(1, cores // 2), (blas, cores)\n"
        "print('ok', blas)\n" % str(pathlib.Path(__file__).parent))
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PTYHPC_USER_THREADS")}
    r = subprocess.run(["mpiexec", "-n", "2", sys.executable, str(script)], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("ok") == 2


def test_a_start_epoch_past_the_last_epoch_is_reported(sim, tmp_path):
    """OPR and position correction wait for their start epochs (20 and 10 by default): a run shorter than that
    says so rather than silently reconstructing without them."""
    r = ptyhpc("reconstruct", sim / "s.cxi", "-o", tmp_path / "r.h5", "--epochs", "2", "--opr-modes", "1",
               "--correct-positions", "--set", "position_start=1", "--no-preview")
    warnings = [line for line in r.stderr.splitlines() if line.startswith("ptyhpc: warning")]
    assert warnings == ["ptyhpc: warning: opr_start = 20 with 2 epochs: the variable probe modes are never updated"]
