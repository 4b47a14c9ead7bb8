"""Launching through Parsl: the local site and a real Slurm on localhost run the reconstruction and return what
`mpiexec -n 2 ptyhpc reconstruct` returns; the Polaris batch script is the one Parsl's PBSProProvider writes."""
import dataclasses
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ptyhpc.io.product import read_product

pytest.importorskip("parsl")
SMALL = ["--object-size", "192", "--probe-size", "64", "--positions", "150", "--probe-diameter", "22",
         "--aperture-radius", "8"]
ARGS = ["--algorithm", "dm", "--epochs", "5", "--no-preview"]
needs_mpiexec = pytest.mark.skipif(shutil.which("mpiexec") is None, reason="mpiexec not installed")


def ptyhpc(*args, timeout=300, check=True):
    r = subprocess.run([sys.executable, "-m", "ptyhpc", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("launch")
    ptyhpc("simulate", d / "s.cxi", *SMALL)
    direct = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-m", "ptyhpc", "reconstruct", d / "s.cxi", "-o",
                             d / "direct.h5", *ARGS], capture_output=True, text=True, timeout=300)
    assert direct.returncode == 0, direct.stderr
    return d


def _same_as_direct(sim, out):
    direct, launched = read_product(sim / "direct.h5"), read_product(out)
    assert launched["attrs"]["ranks"] == 2
    assert np.array_equal(launched["object"], direct["object"])
    assert np.array_equal(launched["probe"], direct["probe"])


@needs_mpiexec
def test_submit_local_equals_direct_mpiexec(sim, tmp_path):
    out = tmp_path / "local.h5"
    r = ptyhpc("submit", sim / "s.cxi", "-o", out, "--site", "local", "--ranks", "2", *ARGS)
    assert f"result: {out}" in r.stdout
    assert "epoch    5/5  cost" in r.stderr  # progress streamed back while the task ran
    assert "executable follows" not in r.stderr
    _same_as_direct(sim, out)


def _slurm_ready():
    if shutil.which("sinfo") is None:
        return "Slurm is not installed (scripts/slurm_local.sh installs and starts it; needs root)"
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.split()
    if not {"idle", "mixed"} & set(state):
        return f"no idle Slurm node (sinfo: {state or 'no answer'}); run scripts/slurm_local.sh as root"
    return ""


@needs_mpiexec
def test_submit_through_slurm_equals_direct_mpiexec(sim, tmp_path):
    reason = _slurm_ready()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "slurm.h5"
    r = ptyhpc("submit", sim / "s.cxi", "-o", out, "--site", "slurm", "--ranks", "2", *ARGS)
    assert "site slurm (slurm)" in r.stderr and f"result: {out}" in r.stdout
    scripts = [p for p in (tmp_path / "ptyhpc_runinfo").rglob("submit_scripts/parsl.ptyhpc-slurm.block-*")
               if not p.suffix.startswith(".std")]
    assert scripts and "#SBATCH" in scripts[0].read_text()  # the block was an sbatch job
    _same_as_direct(sim, out)


@needs_mpiexec
def test_a_failed_reconstruction_is_a_clear_error_from_submit(sim, tmp_path):
    r = ptyhpc("submit", sim / "s_truth.h5", "-o", tmp_path / "bad.h5", "--ranks", "2", *ARGS, check=False,
               timeout=120)
    assert r.returncode != 0
    assert "entry_1/data_1/data: missing" in r.stderr
    assert "the reconstruction failed (exit code" in r.stderr
    assert not (tmp_path / "bad.h5").exists()


def test_polaris_batch_script_is_the_one_pbspro_provider_writes(tmp_path):
    from ptyhpc.launch import load_site
    from ptyhpc.launch.submit import batch_script, mpi_line, reconstruct_line

    site = load_site("polaris", account="MYPROJ", queue="prod", walltime="01:30:00")
    _, cmd, script = batch_script(site, 3, str(tmp_path))
    assert re.match(r"qsub\s+-q prod -A MYPROJ \S+", cmd)
    for line in ("#PBS -l select=3:ncpus=64:ngpus=4:system=polaris", "#PBS -l place=scatter",
                 "#PBS -l filesystems=home:eagle", "#PBS -l walltime=01:30:00", "module use /soft/modulefiles",
                 "module load conda", "export MPICH_GPU_SUPPORT_ENABLED=1", "export TMPDIR=/tmp",
                 "process_worker_pool.py"):
        assert line in script, line
    assert "set +u" in script.split("module load conda")[0] and "export PTYHPC_GPU_ORDER=reverse" in script
    line = mpi_line(site, 3, 4, reconstruct_line(site, "in.cxi", "out.h5", ["--epochs", "5"]))
    assert re.match(r"mpiexec -n 12 -ppn 4 -hosts <node0>,<node1>,<node2> --depth 8 --cpu-bind depth "
                    r"--env OMP_NUM_THREADS=1 python -m ptyhpc reconstruct \S+in\.cxi -o "
                    r"\S+out\.h5 --epochs 5 --device gpu$", line), line


def test_worker_address_and_preemptable_queue(tmp_path):
    """Polaris' workers reach the login node on hsn0; an empty interface is Parsl's default (every address);
    127.0.0.1 only for the local site. On the preemptable queue Parsl retries a preempted task and the
    reconstruction resumes from its checkpoint."""
    from ptyhpc.launch import load_site
    from ptyhpc.launch.parsl_config import executor, parsl_config
    from ptyhpc.launch.sites import PREEMPTION_RETRIES
    from ptyhpc.launch.submit import reconstruct_line

    polaris = load_site("polaris")
    assert polaris.address_interface == "hsn0"
    assert executor(load_site("local"), 1, str(tmp_path / "l")).address == "127.0.0.1"
    assert executor(dataclasses.replace(polaris, address_interface=""), 1, str(tmp_path / "p")).address is None
    with pytest.raises(ValueError, match="'hsn0' is not a network interface of this machine"):
        executor(polaris, 1, str(tmp_path / "q"))  # this machine has no Slingshot interface
    pre = load_site("polaris", queue="preemptable")
    line = reconstruct_line(pre, "in.cxi", "out.h5", ["--epochs", "500"])
    assert line.endswith("--epochs 500 --device gpu --checkpoint-every 10 --resume auto")
    assert "--resume" not in reconstruct_line(polaris, "in.cxi", "out.h5", [])
    assert parsl_config(dataclasses.replace(pre, address_interface=""), 1, str(tmp_path / "r")).retries == \
        PREEMPTION_RETRIES
    assert parsl_config(dataclasses.replace(polaris, address_interface=""), 1, str(tmp_path / "s")).retries == 0


def test_submit_without_a_scheduler_reports_the_provider_error(sim, tmp_path):
    """A PBS site where there is no qsub (a workstation): the provider's own error within seconds, not a pointer
    to a task output that was never written."""
    site = tmp_path / "pbs.toml"
    site.write_text('[site]\nprovider = "pbspro"\naccount = "X"\nqueue = "debug"\n')
    r = ptyhpc("submit", sim / "s.cxi", "-o", tmp_path / "o.h5", "--site", site, "--epochs", 1, check=False,
               timeout=120)
    assert r.returncode != 0
    assert "qsub: not found" in r.stderr and "no task ran: the pbspro batch job could not start" in r.stderr
    assert "reconstruct.stderr" not in r.stderr


def test_dry_run_prints_script_and_mpiexec_line(tmp_path):
    r = ptyhpc("submit", tmp_path / "in.cxi", "-o", tmp_path / "o.h5", "--site", "polaris", "--nodes", "2",
               "--dry-run", "--epochs", "7", "--probe", "p.npy")
    assert "#PBS -l select=2:ncpus=64:ngpus=4:system=polaris" in r.stdout
    assert "mpiexec -n 8 -ppn 4" in r.stdout and "--epochs 7" in r.stdout
    assert f"--probe {tmp_path.parent}" not in r.stdout and "/p.npy" in r.stdout  # paths made absolute


def test_site_profile_errors_are_clear(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text('[site]\nprovider = "pbspro"\nqueu = "debug"\n')
    r = ptyhpc("submit", "x.cxi", "-o", "y.h5", "--site", bad, "--dry-run", check=False)
    assert r.returncode == 2 and "unknown setting(s) ['queu']" in r.stderr
    r = ptyhpc("submit", "x.cxi", "-o", "y.h5", "--site", "nosuchsite", "--dry-run", check=False)
    assert r.returncode == 2 and "site 'nosuchsite': no nosuchsite.toml" in r.stderr


@needs_mpiexec
def test_scaling_local_writes_json_and_png(tmp_path):
    r = ptyhpc("scaling", "--site", "local", "--nodes", "1", "--ranks", "1,2", "-o", tmp_path, "--epochs", "4",
               "--algorithm", "dm", "--positions-per-rank", "75", timeout=600)
    summary = json.loads((tmp_path / "scaling.json").read_text())
    runs = summary["runs"]
    assert [run["ranks"] for run in runs] == [1, 2]
    assert all(run["seconds_per_epoch"] > 0 for run in runs)
    assert runs[0]["halo_bytes_per_epoch"] == 0 and runs[1]["halo_bytes_per_epoch"] > 0
    assert runs[0]["efficiency"] == 1.0
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
    assert "wrote" in r.stdout
    # the same summary from the finished runs alone (what jobs/polaris_scaling.pbs does after each run)
    ptyhpc("scaling", "--collect", *[run["file"] for run in runs], "-o", tmp_path / "again")
    again = json.loads((tmp_path / "again" / "scaling.json").read_text())["runs"]
    assert [(a["ranks"], a["seconds_per_epoch"], a["efficiency"]) for a in again] == \
        [(a["ranks"], a["seconds_per_epoch"], a["efficiency"]) for a in runs]
