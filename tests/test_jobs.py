"""The PBS job scripts follow ALCF's Polaris conventions; each rank picks the GPU nearest its cores in Python."""
import pathlib
import re
import subprocess

import pytest

JOBS = pathlib.Path(__file__).resolve().parents[1] / "jobs"


@pytest.mark.parametrize("name", ["polaris.pbs", "polaris_scaling.pbs"])
def test_scripts_parse(name):
    assert subprocess.run(["bash", "-n", str(JOBS / name)]).returncode == 0


ENVIRONMENT = (r"^#!/bin/bash -l\n", r"set \+u[^\n]*\nmodule use /soft/modulefiles\nmodule load conda\nconda activate base\n"
               r"source [^\n]*activate\"?\nset -u", r"export TMPDIR=/tmp", r"export MPICH_GPU_SUPPORT_ENABLED=1",
               r"export PTYHPC_GPU_ORDER=reverse", r"-A PROJECT is mandatory")
"""A login shell (modules), set -u relaxed around conda's activation, no wrapper script from a checkout."""


def test_polaris_pbs_conventions():
    text = (JOBS / "polaris.pbs").read_text()
    for pattern in ENVIRONMENT + (
            r"#PBS -l select=\d+:system=polaris", r"#PBS -l place=scatter", r"#PBS -l walltime=\d\d:\d\d:\d\d",
            r"#PBS -l filesystems=home:eagle", r"#PBS -q \w+", r"#PBS -r y", r"--ppn \"?\$\{?NRANKS_PER_NODE", r"--depth",
            r"--cpu-bind depth", r"OMP_NUM_THREADS=1 \\\n  python -m ptyhpc reconstruct", r"--device gpu",
            r"--checkpoint-every", r"--resume auto"):
        assert re.search(pattern, text), pattern
    assert "affinity" not in text


def test_polaris_scaling_pbs_conventions():
    text = (JOBS / "polaris_scaling.pbs").read_text()
    for pattern in ENVIRONMENT + (
            r"#PBS -l select=\d+:system=polaris", r"#PBS -l place=scatter", r"#PBS -l filesystems=home:eagle",
            r"#PBS -l walltime=\d\d:\d\d:\d\d", r"#PBS -q debug-scaling", r"for \(\(n = 1; n <= NNODES; n \*= 2\)\)",
            r"--hostfile", r"--cpu-bind depth", r"python -m ptyhpc reconstruct", r"python -m ptyhpc scaling --collect"):
        assert re.search(pattern, text), pattern
    assert "affinity" not in text


@pytest.mark.parametrize("local_rank,gpu", [(0, 3), (1, 2), (2, 1), (3, 0), (4, 3), (7, 0)])
def test_reversed_gpu_order_puts_each_rank_beside_its_gpu(local_rank, gpu):
    """Polaris: GPU 3 sits beside CPUs 0-7, so with --depth 8 --cpu-bind depth local rank 0 takes GPU 3."""
    from ptyhpc.backend import gpu_index

    assert gpu_index(local_rank, 4, order="reverse") == gpu
    assert gpu_index(local_rank, 4) == local_rank % 4
    assert gpu_index(local_rank, 1, visible="2", order="reverse") == 0  # a pinned device is device 0
