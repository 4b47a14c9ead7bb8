"""Globus Compute, tested as far as it can be without the service: the endpoint configuration ptyhpc prints is
loaded by globus-compute-endpoint's own loader, and the MPIFunction ptyhpc submits, run as an endpoint runs it
($PARSL_MPI_PREFIX composed by Parsl from the resource specification, 2 ranks), gives the direct run's result.
The one stand-in: the SDK's Executor (the service boundary) is replaced by one that calls the function here."""
import dataclasses
import os
import shutil
import subprocess
import sys
from concurrent.futures import Future

import numpy as np
import pytest

pytest.importorskip("globus_compute_sdk")
pytest.importorskip("globus_compute_endpoint")
needs_mpiexec = pytest.mark.skipif(shutil.which("mpiexec") is None, reason="mpiexec not installed")
SMALL = ["--object-size", "96", "--probe-size", "32", "--positions", "30", "--probe-diameter", "12",
         "--aperture-radius", "4"]
ARGS = ["--algorithm", "dm", "--epochs", "5", "--no-preview"]


def _site(**changes):
    from ptyhpc.launch import load_site

    # this machine: CPU ranks, this interpreter, Hydra's mpiexec (no Cray --depth), the loopback interface
    return dataclasses.replace(load_site("polaris-globus"), device="cpu", python=sys.executable,
                               launcher_options="", address_interface="lo", **changes)


def test_endpoint_config_loads_with_the_endpoints_own_loader():
    from globus_compute_endpoint.endpoint.config.utils import load_config_yaml

    from ptyhpc.launch.globus import endpoint_config

    config = load_config_yaml(endpoint_config(_site(), 3))
    engine = config.engine
    try:
        assert type(engine).__name__ == "GlobusMPIEngine"
        ex = engine.executor
        assert type(ex).__name__ == "MPIExecutor" and ex.mpi_launcher == "mpiexec" and ex.address == "127.0.0.1"
        p = ex.provider
        assert type(p).__name__ == "PBSProProvider" and p.nodes_per_block == 3 and p.account == "MYPROJECT"
        assert p.select_options == "ngpus=4:system=polaris" and "#PBS -l filesystems=home:eagle" in p.scheduler_options
        assert "module load conda" in p.worker_init and "PTYHPC_GPU_ORDER=reverse" in p.worker_init
    finally:
        engine.shutdown()


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("globus")
    subprocess.run([sys.executable, "-m", "ptyhpc", "simulate", d / "s.cxi", *SMALL], check=True,
                   capture_output=True)
    r = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-m", "ptyhpc", "reconstruct", d / "s.cxi", "-o",
                        d / "direct.h5", *ARGS], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return d


class LocalExecutor:
    """The SDK's ``Executor`` as a worker of a GlobusMPIEngine meets it: ``resource_specification`` becomes
    ``$PARSL_MPI_PREFIX`` (Parsl's own composer) and the submitted function is called."""

    submitted = []

    def __init__(self, endpoint_id=None, user_endpoint_config=None, **kw):
        self.endpoint_id, self.user_endpoint_config, self.resource_specification = endpoint_id, user_endpoint_config, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args, **kwargs):
        from parsl.executors.high_throughput.mpi_prefix_composer import compose_all

        spec = {k: str(v) for k, v in self.resource_specification.items()}
        prefix = compose_all("mpiexec", spec, ["localhost"] * int(spec["num_nodes"]))["PARSL_MPI_PREFIX"]
        LocalExecutor.submitted.append((self.endpoint_id, self.user_endpoint_config, dict(spec), fn))
        old = os.environ.get("PARSL_MPI_PREFIX")
        os.environ["PARSL_MPI_PREFIX"] = prefix
        try:
            future = Future()
            future.set_result(fn(*args, **kwargs))
            return future
        finally:
            os.environ.pop("PARSL_MPI_PREFIX") if old is None else os.environ.__setitem__("PARSL_MPI_PREFIX", old)


@needs_mpiexec
@pytest.mark.parametrize("kind", ["own", "facility"])
def test_submit_through_the_sdk_boundary_equals_direct_mpiexec(sim, tmp_path, monkeypatch, kind):
    import globus_compute_sdk

    from ptyhpc.io.product import read_product
    from ptyhpc.launch import globus

    monkeypatch.setattr(globus_compute_sdk, "Executor", LocalExecutor)
    LocalExecutor.submitted.clear()
    out = tmp_path / "gc.h5"
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # where the worker runs: nothing may land there
    code = globus.submit(_site(endpoint_id="0123-uuid", endpoint_kind=kind), sim / "s.cxi", out,
                         [*ARGS, "--device", "cpu"], nodes=1, ranks_per_node=2)
    assert code == 0
    ((endpoint, user_config, spec, fn),) = LocalExecutor.submitted
    assert endpoint == "0123-uuid" and spec == {"num_nodes": "1", "ranks_per_node": "2"}
    assert type(fn).__name__ == "MPIFunction"
    assert (user_config is None) == (kind == "own")
    if kind == "facility":
        assert user_config["account"] == "MYPROJECT" and user_config["nodes_per_block"] == 1
    assert np.array_equal(read_product(out)["object"], read_product(sim / "direct.h5")["object"])  # bitwise
    assert "epoch    5/5" in (tmp_path / "gc.log").read_text()
    assert "wrote" in (tmp_path / "gc.stdout").read_text() and not list((tmp_path / "cwd").iterdir())


def test_dry_run_prints_the_endpoint_config_and_the_function(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ptyhpc", "submit", tmp_path / "s.cxi", "-o", tmp_path / "o.h5",
                        "--site", "polaris-globus", "--nodes", "2", "--dry-run", "--epochs", "9"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "type: GlobusMPIEngine" in r.stdout and "nodes_per_block: 2" in r.stdout
    assert "'num_nodes': 2, 'ranks_per_node': 4" in r.stdout
    assert "MPIFunction: $PARSL_MPI_PREFIX python -m ptyhpc reconstruct" in r.stdout and "--epochs 9" in r.stdout
