"""The PBS job script and the GPU-affinity wrapper follow ALCF's Polaris conventions."""
import os
import pathlib
import re
import subprocess

import pytest

JOBS = pathlib.Path(__file__).resolve().parents[1] / "jobs"


@pytest.mark.parametrize("name", ["polaris.pbs", "polaris_scaling.pbs", "affinity.sh"])
def test_scripts_parse(name):
    assert subprocess.run(["bash", "-n", str(JOBS / name)]).returncode == 0


def test_polaris_pbs_conventions():
    text = (JOBS / "polaris.pbs").read_text()
    for pattern in (r"#PBS -l select=\d+:system=polaris", r"#PBS -l place=scatter", r"#PBS -l walltime=\d\d:\d\d:\d\d",
                    r"#PBS -l filesystems=home:eagle", r"#PBS -q \w+", r"#PBS -r y",
                    r"module use /soft/modulefiles", r"module load conda", r"export TMPDIR=/tmp",
                    r"export MPICH_GPU_SUPPORT_ENABLED=1", r"--ppn \"?\$\{?NRANKS_PER_NODE", r"--depth",
                    r"--cpu-bind depth", r"affinity\.sh\" python -m ptyhpc reconstruct", r"--device gpu",
                    r"--checkpoint-every", r"--resume \"\$\{CHECKPOINT\}\""):
        assert re.search(pattern, text), pattern


def test_polaris_scaling_pbs_conventions():
    text = (JOBS / "polaris_scaling.pbs").read_text()
    for pattern in (r"#PBS -l select=\d+:system=polaris", r"#PBS -l place=scatter", r"#PBS -l filesystems=home:eagle",
                    r"#PBS -l walltime=\d\d:\d\d:\d\d", r"#PBS -q debug-scaling", r"export TMPDIR=/tmp",
                    r"export MPICH_GPU_SUPPORT_ENABLED=1", r"for \(\(n = 1; n <= NNODES; n \*= 2\)\)",
                    r"--hostfile", r"--cpu-bind depth", r"affinity\.sh\" python -m ptyhpc reconstruct",
                    r"python -m ptyhpc scaling --collect"):
        assert re.search(pattern, text), pattern


@pytest.mark.parametrize("local_rank,gpu", [(0, 3), (1, 2), (2, 1), (3, 0), (4, 3), (7, 0)])
def test_affinity_wrapper_maps_local_rank_to_gpu(local_rank, gpu):
    env = dict(os.environ, PMI_LOCAL_RANK=str(local_rank))
    out = subprocess.run(["bash", str(JOBS / "affinity.sh"), "bash", "-c", "echo $CUDA_VISIBLE_DEVICES"],
                         capture_output=True, text=True, env=env).stdout.strip()
    assert out == str(gpu)
