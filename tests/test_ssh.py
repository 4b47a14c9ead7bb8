"""The ssh route from a workstation, for real: OpenSSH's sshd on 127.0.0.1 (key login; scripts/sshd_local.sh)
and the Slurm that scripts/slurm_local.sh starts. ``ptyhpc submit --site <ssh profile> --stage`` copies the input
over, runs the job through sbatch, relays its progress while it runs and copies the result back."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from ptyhpc.io.product import read_product

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SSHD = os.environ.get("PTYHPC_SSHD_DIR", "/tmp/ptyhpc-sshd")
SMALL = ["--object-size", "96", "--probe-size", "32", "--positions", "30", "--probe-diameter", "12",
         "--aperture-radius", "4"]
ARGS = ["--algorithm", "dm", "--epochs", "5"]


def _ready():
    if shutil.which("sinfo") is None or b"idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"],
                                                                     capture_output=True).stdout:
        return "no idle Slurm node here (scripts/slurm_local.sh starts one, as root)"
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "sshd_local.sh")], capture_output=True, text=True)
    return None if "sshd: ready" in r.stdout else f"no sshd: {r.stdout.strip() or r.stderr.strip()}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    why = _ready()
    if why:
        pytest.skip(why)
    d = tmp_path_factory.mktemp("ssh")
    (d / "remote").mkdir()
    profile = d / "site.toml"
    opts = f"-i {SSHD}/client_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile={SSHD}/known_hosts"
    profile.write_text(f'[site]\nprovider = "ssh"\nhost = "127.0.0.1"\nuser = "root"\nport = 2222\n'
                       f'control_path = "{d}/cm"\nssh_options = "{opts}"\nremote_dir = "{d}/remote"\n'
                       f'scheduler = "slurm"\npartition = "debug"\nranks_per_node = 2\n')
    subprocess.run([sys.executable, "-m", "ptyhpc", "simulate", d / "s.cxi", *SMALL], check=True,
                   capture_output=True)
    direct = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-m", "ptyhpc", "reconstruct", d / "s.cxi",
                             "-o", d / "direct.h5", *ARGS, "--no-preview"], capture_output=True, text=True)
    assert direct.returncode == 0, direct.stderr
    master = ["ssh", "-o", f"ControlPath={d}/cm", "-p", "2222", *opts.split(), "root@127.0.0.1"]
    yield {"dir": d, "profile": profile, "master": master}
    subprocess.run(master[:1] + ["-O", "exit"] + master[1:], capture_output=True)


def _open(site):
    """Open the master connection unless it is open (the one step a user does by hand, passcode and all)."""
    if subprocess.run(site["master"][:1] + ["-O", "check"] + site["master"][1:], capture_output=True).returncode:
        subprocess.run(site["master"][:1] + ["-MNf", "-o", "ControlMaster=yes"] + site["master"][1:], check=True,
                       timeout=30)


def _drop(site):
    """The connection drops and cannot be made again without the user (as with a one-time passcode): the master
    goes, and so does the sshd listener (the running job is Slurm's, it goes on)."""
    subprocess.run(site["master"][:1] + ["-O", "exit"] + site["master"][1:], capture_output=True)
    with open(os.path.join(SSHD, "sshd.pid")) as f:
        os.kill(int(f.read()), 15)


def _env(site):
    return dict(os.environ, PTYHPC_JOBS_DIR=str(site["dir"] / "jobs"))


def _submit(site, *args):
    return subprocess.Popen([sys.executable, "-m", "ptyhpc", "submit", *map(str, args), "--site", site["profile"]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(site))


def test_without_a_master_connection_the_error_says_how_to_open_one(site):
    subprocess.run(site["master"][:1] + ["-O", "exit"] + site["master"][1:], capture_output=True)
    p = _submit(site, site["dir"] / "s.cxi", "-o", site["dir"] / "x.h5", "--stage", *ARGS)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "no ssh master connection to root@127.0.0.1" in err
    assert "ssh -MNf -o ControlMaster=yes" in err and "Traceback" not in err


def test_stage_run_equals_direct_mpiexec_with_progress_while_it_runs(site):
    _open(site)
    out = site["dir"] / "staged.h5"
    p = _submit(site, site["dir"] / "s.cxi", "-o", out, "--stage", *ARGS[:3], "300")
    early = None
    lines = []
    for line in p.stderr:
        lines.append(line)
        if early is None and line.startswith("epoch "):
            early = p.poll() is None  # a progress line while the job still runs
    stdout = p.stdout.read()
    assert p.wait(timeout=300) == 0, "".join(lines)
    assert early is True, "".join(lines)
    assert f"result: {out}" in stdout and (site["dir"] / "staged.png").exists()
    direct = read_product(site["dir"] / "direct.h5")
    # 300 DM epochs against the direct 5: compare with a 5-epoch staged run too
    out5 = site["dir"] / "staged5.h5"
    q = _submit(site, site["dir"] / "s.cxi", "-o", out5, "--stage", *ARGS, "--no-preview")
    q.communicate(timeout=300)
    assert q.returncode == 0
    assert np.array_equal(read_product(out5)["object"], direct["object"])  # bitwise
    assert np.array_equal(read_product(out5)["probe"], direct["probe"])


def test_a_failing_run_returns_its_error(site):
    _open(site)
    p = _submit(site, site["dir"] / "s_truth.h5", "-o", site["dir"] / "bad.h5", "--stage", *ARGS)
    _, err = p.communicate(timeout=300)
    assert p.returncode != 0
    assert "entry_1/data_1/data: missing" in err and "ended FAILED" in err
    assert not (site["dir"] / "bad.h5").exists()


def test_a_dropped_connection_leaves_the_job_discoverable(site):
    _open(site)
    p = _submit(site, site["dir"] / "s.cxi", "-o", site["dir"] / "long.h5", "--stage", "--algorithm", "dm",
                "--epochs", "200000", "--quiet")
    job = None
    t0 = time.monotonic()
    for line in p.stderr:
        if line.startswith("ptyhpc submit: job "):
            job = line.split()[3]
            break
        assert time.monotonic() - t0 < 120
    assert job
    time.sleep(2)
    _drop(site)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 75
    assert "lost the connection to root@127.0.0.1" in err and f"ptyhpc status {job}" in err
    assert "ready" in subprocess.run(["bash", os.path.join(ROOT, "scripts", "sshd_local.sh")], capture_output=True,
                                     text=True).stdout
    _open(site)
    r = subprocess.run([sys.executable, "-m", "ptyhpc", "status", job], capture_output=True, text=True,
                       env=_env(site), timeout=60)
    assert r.returncode == 0 and f"job {job} on root@127.0.0.1: RUNNING" in r.stdout, r.stdout + r.stderr
    subprocess.run(["scancel", job], check=True)
    for _ in range(100):
        r = subprocess.run([sys.executable, "-m", "ptyhpc", "status", job], capture_output=True, text=True,
                           env=_env(site), timeout=60)
        if "CANCELLED" in r.stdout:
            break
        time.sleep(0.2)
    assert "CANCELLED" in r.stdout and r.returncode != 0


def test_dry_run_prints_the_job_script(site):
    r = subprocess.run([sys.executable, "-m", "ptyhpc", "submit", site["dir"] / "s.cxi", "-o", "/tmp/o.h5",
                        "--site", site["profile"], "--stage", "--dry-run", "--nodes", "1", *ARGS],
                       capture_output=True, text=True)
    assert r.returncode == 0
    for text in ("#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=2", "#SBATCH --partition=debug",
                 "mpiexec -n 2", "python", "-m ptyhpc reconstruct", "--epochs 5", "sbatch --parsable job.sh"):
        assert text in r.stdout, text
