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
    """The SDK's ``Executor`` as the workers of an endpoint meet it, one per endpoint: each submitted function
    runs at once in a thread of its own (a progress endpoint's task runs while the reconstruction does); an
    MPIFunction gets ``$PARSL_MPI_PREFIX`` from ``resource_specification`` (Parsl's own composer)."""

    submitted = []
    """(endpoint id, user_endpoint_config, resource specification, function, start time, Future) of every task."""

    def __init__(self, endpoint_id=None, user_endpoint_config=None, **kw):
        self.endpoint_id, self.user_endpoint_config, self.resource_specification = endpoint_id, user_endpoint_config, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def shutdown(self, wait=True, cancel_futures=False):
        pass

    def submit(self, fn, *args, **kwargs):
        import threading
        import time

        from globus_compute_sdk import MPIFunction
        from parsl.executors.high_throughput.mpi_prefix_composer import compose_all

        spec = {k: str(v) for k, v in self.resource_specification.items()}
        if isinstance(fn, MPIFunction):
            os.environ["PARSL_MPI_PREFIX"] = compose_all("mpiexec", spec, ["localhost"] * int(spec["num_nodes"]))[
                "PARSL_MPI_PREFIX"]  # read by the task's shell; tasks here run one MPIFunction at a time
        future = Future()
        LocalExecutor.submitted.append((self.endpoint_id, self.user_endpoint_config, dict(spec), fn,
                                        time.monotonic(), future))

        def call():
            try:
                result = fn(*args, **kwargs)
                future.finished_at = time.monotonic()
                future.set_result(result)
            except BaseException as e:
                future.set_exception(e)

        threading.Thread(target=call, daemon=True).start()
        return future


class Recorder:
    """A stream that keeps each line with the time it was written."""

    def __init__(self):
        import time

        self.lines, self.clock, self.partial = [], time.monotonic, ""

    def write(self, text):
        self.partial += text
        *done, self.partial = self.partial.split("\n")
        self.lines += [(self.clock(), x) for x in done]

    def flush(self):
        pass

    def text(self):
        return "\n".join(x for _, x in self.lines)


@pytest.fixture
def gc(monkeypatch, tmp_path_factory):
    """The SDK's Executor replaced by LocalExecutor (the one stand-in), its record cleared; the tasks run in an
    empty folder, which must stay empty (a task must not leave files where the worker runs)."""
    import globus_compute_sdk

    from ptyhpc.launch import globus

    monkeypatch.setattr(globus_compute_sdk, "Executor", LocalExecutor)
    monkeypatch.setattr(globus, "PROGRESS_POLL", 0.2)
    monkeypatch.setenv("PARSL_MPI_PREFIX", "")  # restored when the test ends
    worker = tmp_path_factory.mktemp("worker")
    monkeypatch.chdir(worker)
    LocalExecutor.submitted.clear()
    yield LocalExecutor.submitted
    assert not list(worker.iterdir()), sorted(p.name for p in worker.iterdir())


@needs_mpiexec
@pytest.mark.parametrize("kind", ["own", "facility"])
def test_submit_through_the_sdk_boundary_equals_direct_mpiexec(sim, tmp_path, monkeypatch, kind, gc):
    from ptyhpc.io.product import read_product
    from ptyhpc.launch import globus

    out = tmp_path / "gc.h5"
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # where the worker runs: nothing may land there
    code = globus.submit(_site(endpoint_id="0123-uuid", endpoint_kind=kind), sim / "s.cxi", out,
                         [*ARGS, "--device", "cpu"], nodes=1, ranks_per_node=2)
    assert code == 0
    ((endpoint, user_config, spec, fn, _, _),) = gc
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


def test_progress_endpoint_config_loads_with_the_endpoints_own_loader():
    from globus_compute_endpoint.endpoint.config.utils import load_config_yaml

    from ptyhpc.launch.globus import progress_endpoint_config

    config = load_config_yaml(progress_endpoint_config(_site()))
    try:
        assert type(config.engine).__name__ == "ThreadPoolEngine"
        assert "module load conda" in config.endpoint_setup
    finally:
        config.engine.shutdown()


@needs_mpiexec
def test_progress_streams_while_the_run_runs_and_a_failure_returns_its_error(sim, tmp_path, gc):
    from ptyhpc.io.product import read_product
    from ptyhpc.launch import globus

    site = _site(endpoint_id="main-uuid", progress_endpoint_id="login-uuid")
    (tmp_path / "p.log").write_text("an earlier run's line\n")  # a log is appended to: only the new lines show
    stream = Recorder()
    args = ["--algorithm", "dm", "--epochs", "150", "--no-preview", "--device", "cpu"]
    assert globus.submit(site, sim / "s.cxi", tmp_path / "p.h5", args, ranks_per_node=2, stream=stream) == 0
    main = [t for t in gc if t[0] == "main-uuid"]
    polls = [t for t in gc if t[0] == "login-uuid"]
    assert len(main) == 1 and type(main[0][3]).__name__ == "MPIFunction"
    assert polls and all(t[3] is globus.read_from for t in polls)
    epochs = [(when, x) for when, x in stream.lines if x.lstrip().startswith("epoch")]
    assert len(epochs) >= 2 and "epoch  150/150" in epochs[-1][1]
    assert epochs[0][0] < main[0][5].finished_at  # the first epochs arrived here while the task still ran
    shown = [x for _, x in stream.lines if not x.startswith("ptyhpc submit:")]
    assert shown == (tmp_path / "p.log").read_text().splitlines()[1:]  # every new line of the log, once, in order
    assert read_product(tmp_path / "p.h5")["attrs"]["epochs"] == 150

    gc.clear()
    stream = Recorder()
    code = globus.submit(site, sim / "missing.cxi", tmp_path / "f.h5", args, ranks_per_node=2, stream=stream)
    assert code != 0 and "missing.cxi" in stream.text() and "the reconstruction failed" in stream.text()
    assert not (tmp_path / "f.h5").exists()
    gc.clear()  # without a progress endpoint the task's last lines of stderr are shown
    stream = Recorder()
    code = globus.submit(_site(endpoint_id="main-uuid"), sim / "missing.cxi", tmp_path / "f.h5", args,
                         ranks_per_node=2, stream=stream)
    assert code != 0 and "  | " in stream.text() and "missing.cxi" in stream.text()
    assert {t[0] for t in gc} == {"main-uuid"}


class LocalTransfer:
    """Globus Transfer's ``TransferClient`` (the service boundary) as the service acts on a transfer document:
    each collection is a folder here; every item is copied unless the same bytes are there (sync level 3, the
    API's "checksum", as globus-sdk writes it)."""

    def __init__(self, collections, fail=False):
        self.collections, self.fail, self.documents, self.tasks = collections, fail, [], {}

    def submit_transfer(self, data):
        import hashlib

        doc = dict(data)
        self.documents.append(doc)
        task, sent, skipped = f"task-{len(self.documents)}", 0, 0
        if not self.fail:
            for item in doc["DATA"]:
                src = os.path.join(self.collections[doc["source_endpoint"]], item["source_path"].lstrip("/"))
                dst = os.path.join(self.collections[doc["destination_endpoint"]], item["destination_path"].lstrip("/"))
                digest = [hashlib.md5(open(p, "rb").read()).digest() if os.path.exists(p) else None
                          for p in (src, dst)]
                if doc["sync_level"] == 3 and digest[0] == digest[1]:
                    skipped += 1
                    continue
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copyfile(src, dst)
                sent += 1
        self.tasks[task] = {"status": "FAILED" if self.fail else "SUCCEEDED", "files_transferred": sent,
                            "files_skipped": skipped, "nice_status": "PERMISSION_DENIED" if self.fail else None}
        return {"task_id": task}

    def task_wait(self, task, timeout=10, polling_interval=10):
        return True

    def get_task(self, task):
        return self.tasks[task]


@needs_mpiexec
def test_stage_with_globus_transfer_returns_the_direct_result(sim, tmp_path, monkeypatch, gc):
    from ptyhpc.io.product import read_product
    from ptyhpc.launch import globus, transfer

    workstation, eagle = tmp_path / "beamline", tmp_path / "eagle"
    workstation.mkdir()
    eagle.mkdir()
    shutil.copy(sim / "s.cxi", workstation / "scan.cxi")
    site = _site(endpoint_id="main-uuid", collection="eagle-uuid", collection_root=str(eagle),
                 stage_dir=str(eagle / "proj" / "ptyhpc"), local_collection="ws-uuid")
    service = LocalTransfer({"eagle-uuid": str(eagle), "ws-uuid": "/"})
    monkeypatch.setattr(transfer, "client", lambda s: service)
    out = workstation / "scan_rec.h5"
    stream = Recorder()
    assert globus.submit(site, workstation / "scan.cxi", out, [*ARGS[:-1], "--device", "cpu"],
                         ranks_per_node=2, stage=True, stream=stream) == 0
    assert np.array_equal(read_product(out)["object"], read_product(sim / "direct.h5")["object"])  # bitwise
    assert (workstation / "scan_rec.png").stat().st_size > 0 and "epoch    5/5" in (workstation / "scan_rec.log").read_text()
    inbound, outbound = service.documents
    assert inbound["source_endpoint"] == "ws-uuid" and inbound["destination_endpoint"] == "eagle-uuid"
    assert [i["destination_path"] for i in inbound["DATA"]] == ["/proj/ptyhpc/scan.cxi"]  # under the root
    assert inbound["sync_level"] == 3 and inbound["verify_checksum"] is True
    assert {i["source_path"] for i in outbound["DATA"]} == {f"/proj/ptyhpc/scan_rec.{e}" for e in ("h5", "log", "png")}
    (line,) = [t[3].cmd for t in gc]
    assert str(eagle / "proj" / "ptyhpc" / "scan.cxi") in line and str(workstation) not in line  # ran on the site's copy
    # again: the input is there with the same checksum and is not sent again
    assert globus.submit(site, workstation / "scan.cxi", out, [*ARGS, "--device", "cpu"], ranks_per_node=2,
                         stage=True, stream=Recorder()) == 0
    assert service.tasks["task-3"]["files_skipped"] == 1 and service.tasks["task-3"]["files_transferred"] == 0
    # a run that fails: its error comes back in its log
    (workstation / "bad_rec.log").unlink(missing_ok=True)
    stream = Recorder()
    code = globus.submit(site, workstation / "scan.cxi", workstation / "bad_rec.h5", ["--epochs", "-3"],
                         ranks_per_node=2, stage=True, stream=stream)
    assert code != 0 and "the reconstruction failed" in stream.text()
    assert "epochs" in (workstation / "bad_rec.log").read_text() and not (workstation / "bad_rec.h5").exists()
    # a transfer that fails stops the submission with the task's status, before anything runs
    gc.clear()
    monkeypatch.setattr(transfer, "client", lambda s: LocalTransfer({}, fail=True))
    with pytest.raises(RuntimeError, match="task-1.*FAILED.*PERMISSION_DENIED"):
        globus.submit(site, workstation / "scan.cxi", out, ARGS, ranks_per_node=2, stage=True, stream=Recorder())
    assert not gc


def test_stage_dry_run_names_both_transfers(tmp_path):
    site = tmp_path / "g.toml"
    site.write_text('[site]\nprovider = "globus-compute"\ncollection = "E"\nlocal_collection = "W"\n'
                    'collection_root = "/eagle"\nstage_dir = "/eagle/P/x"\n')
    r = subprocess.run([sys.executable, "-m", "ptyhpc", "submit", tmp_path / "s.cxi", "-o", tmp_path / "o.h5",
                        "--site", site, "--stage", "--dry-run"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"W -> E (sync checksum): {tmp_path}/s.cxi -> /P/x/s.cxi" in r.stdout
    assert "/P/x/o.h5 -> " + str(tmp_path / "o.h5") in r.stdout and "reconstruct /eagle/P/x/s.cxi -o /eagle/P/x/o.h5" in r.stdout


@needs_mpiexec
def test_scaling_through_globus_compute(sim, tmp_path, gc):
    from ptyhpc.io.product import read_product
    from ptyhpc.launch import scaling

    site = _site(endpoint_id="main-uuid", progress_endpoint_id="login-uuid")
    folder = str(tmp_path / "eagle" / "scaling")
    summary, path, png = scaling.campaign(site, str(sim / "s.cxi"), folder, [1], [1, 2], "strong",
                                          [*ARGS, "--device", "cpu"], stream=Recorder())
    assert [r["ranks"] for r in summary["runs"]] == [1, 2] and summary["runs"][0]["efficiency"] == 1.0
    assert path == folder + "/scaling.json" and os.path.getsize(png) > 0
    assert np.array_equal(read_product(os.path.join(folder, "run_n1_r2.h5"))["object"],
                          read_product(sim / "direct.h5")["object"])  # the 2-rank run is the direct run
    assert [t[2] for t in gc if type(t[3]).__name__ == "MPIFunction"] == [
        {"num_nodes": "1", "ranks_per_node": "1"}, {"num_nodes": "1", "ranks_per_node": "2"}]
    # weak scaling: the sets are simulated on the site
    summary, _, _ = scaling.campaign(site, None, folder + "_weak", [1], [1, 2], "weak", [*ARGS, "--device", "cpu"],
                                     positions_per_rank=20, stream=Recorder())
    assert [r["ranks"] for r in summary["runs"]] == [1, 2]
    assert os.path.exists(folder + "_weak/weak_2.cxi")
