"""``ptyhpc submit --site <globus-compute profile>``: from a workstation to Polaris through Globus Compute.

The workstation hands the reconstruction to a Globus Compute endpoint on a Polaris login node, which provisions
nodes from the queues with Parsl's PBSProProvider and runs it as an ``MPIFunction``: the same ``mpiexec`` line
``jobs/polaris.pbs`` runs, sized by ``resource_specification`` (num_nodes, ranks_per_node). Two endpoint forms:

- ``endpoint_kind = "facility"``: ALCF's multi-user endpoint; the job's shape travels with every submission as
  the ``user_endpoint_config`` (account, queue, walltime, nodes, scheduler options, worker_init), which the
  endpoint's template renders.
- ``endpoint_kind = "own"``: the user's endpoint, configured once from the YAML that ``ptyhpc endpoint-config
  --site NAME`` prints (a ``GlobusMPIEngine`` over a ``PBSProProvider`` with the MPI launcher).

The SDK's ``Executor`` is used directly rather than Parsl's ``GlobusComputeExecutor``: the workstation then needs
only ``globus-compute-sdk`` (its version must match the endpoint's within the SDK's compatibility window, the
known pitfall), not a Parsl of the endpoint's version. Paths are on the site's filesystem (Eagle), or
``--stage`` copies the input there and the results back with Globus Transfer (``launch/transfer.py``).

**Progress.** The task writes its progress to ``OUT.log`` beside the result. The endpoint that runs it has one
worker per batch job, busy with the reconstruction, so the log is read through a second, light endpoint on a
login node (``progress_endpoint_id``; ``ptyhpc endpoint-config --progress`` prints its configuration: a thread
pool, no batch job), which sees the same filesystem: every ``PROGRESS_POLL`` seconds a small function
(:func:`read_from`) returns what the log gained since the last look, and its complete lines are shown here. Without one, the log's path is
printed and, on failure, the task's last lines of stderr.

What runs here: the configurations are loaded by globus-compute-endpoint's own loader, and the functions ptyhpc
submits are run locally as an endpoint runs them (``MPIFunction.__call__`` with ``$PARSL_MPI_PREFIX``, the
small functions called), concurrently, the progress polled while the reconstruction runs. What has not run:
the submission to the real service and a real endpoint (no network to it from here).
"""
from __future__ import annotations

import json
import os
import posixpath
import sys
from concurrent.futures import wait

from .sites import Site
from .submit import Tail

ENGINE = "GlobusMPIEngine"
PROGRESS_POLL = 10.0
"""Seconds between looks at the running task's log (each is one small task on the progress endpoint)."""
CHUNK = 1 << 16
"""Most bytes of the log one look returns."""
FAILURE_LINES = 20
"""Lines of the task's stderr shown when it failed and no progress endpoint showed them already."""


def resource_specification(site: Site, nodes: int, ranks_per_node: int) -> dict:
    """The ``resource_specification`` that sizes the MPIFunction's ``$PARSL_MPI_PREFIX`` (as ``ptyhpc submit``'s
    Parsl route sizes its MPI task)."""
    from .submit import resources

    return resources(site, nodes, ranks_per_node)


def mpi_function(line: str, log: str):
    """The task: the ranks' command (after the endpoint's ``$PARSL_MPI_PREFIX``), its progress (stderr) into
    ``log`` and its stdout beside it (``.stdout``). Both are named: left unnamed, the SDK writes them as
    ``<hash>.<random>.stdout/.stderr`` into whatever directory the worker runs in."""
    from globus_compute_sdk import MPIFunction

    return MPIFunction(line, stdout=os.path.splitext(log)[0] + ".stdout", stderr=log)


def _scheduler_options(site: Site) -> str:
    lines = [f"#PBS -l filesystems={site.filesystems}" if site.filesystems else "",
             f"#PBS -l place={site.place}" if site.place else "", site.scheduler_options.strip()]
    return "\n".join(filter(None, lines))


def user_endpoint_config(site: Site, nodes: int) -> dict:
    """The variables a facility (multi-user) endpoint's template renders into one user endpoint."""
    return {"account": site.account, "queue": site.queue, "walltime": site.walltime, "nodes_per_block": nodes,
            "select_options": site.select_options, "cpus_per_node": site.cpus_per_node,
            "scheduler_options": _scheduler_options(site), "worker_init": site.worker_init.strip()}


def endpoint_config(site: Site, nodes: int) -> str:
    """The YAML of the user's own endpoint (``~/.globus_compute/NAME/config.yaml``) for ``site``."""
    provider = {"type": "PBSProProvider", "account": site.account, "queue": site.queue,
                "walltime": site.walltime, "nodes_per_block": nodes, "init_blocks": 0, "min_blocks": 0,
                "max_blocks": 1, "select_options": site.select_options, "cpus_per_node": site.cpus_per_node,
                "scheduler_options": _scheduler_options(site), "worker_init": site.worker_init.strip(),
                "launcher": {"type": "SimpleLauncher"}}
    engine = {"type": ENGINE, "mpi_launcher": "mpiexec", "max_workers_per_block": 1, "provider": provider}
    if site.address_interface:
        engine["address"] = {"type": "address_by_interface", "ifname": site.address_interface}
    return _yaml({"display_name": f"ptyhpc-{site.name}", "engine": engine})


def _yaml(document: dict) -> str:
    """YAML with multi-line strings (worker_init) as literal blocks, as one writes them by hand."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(str, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v,
                                                                style="|" if "\n" in v else None))
    return yaml.dump(document, Dumper=Dumper, sort_keys=False)


def progress_endpoint_config(site: Site) -> str:
    """The YAML of the progress endpoint (``progress_endpoint_id``): a thread pool on the login node, no batch
    job, the same environment as the runs (``worker_init`` becomes its ``endpoint_setup``)."""
    return _yaml({"display_name": f"ptyhpc-{site.name}-progress", "endpoint_setup": site.worker_init.strip(),
                  "engine": {"type": "ThreadPoolEngine", "max_workers": 2}})


def read_from(path: str, offset: int, limit: int):
    """Runs on an endpoint: (the size of file ``path``, at most ``limit`` bytes of it from ``offset``); (0, b"")
    when there is none. Self-contained (its imports inside), as Globus Compute ships a function's source."""
    import os

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            f.seek(offset)
            return size, f.read(max(0, min(limit, size - offset)))
    except FileNotFoundError:
        return 0, b""


def run_command(argv: list):
    """Runs on an endpoint: (exit code, stdout, stderr) of ``argv`` (no shell, no files left behind, unlike a
    ShellFunction without named output files). Self-contained, as :func:`read_from`."""
    import subprocess

    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


class Session:
    """The site's endpoints as the workstation uses them: MPI tasks on the main endpoint, small functions on the
    progress endpoint (or, without one, on the main endpoint as a 1-node, 1-rank task)."""

    def __init__(self, site: Site, nodes: int):
        if not site.endpoint_id:
            raise ValueError(f"site {site.name}: a globus-compute site needs endpoint_id")
        try:
            from globus_compute_sdk import Executor
        except ImportError:
            raise ValueError("Globus Compute needs its SDK: pip install 'ptyhpc[globus]'") from None
        config = user_endpoint_config(site, nodes) if site.endpoint_kind == "facility" else None
        self.site, self.main = site, Executor(endpoint_id=site.endpoint_id, user_endpoint_config=config)
        self.side = Executor(endpoint_id=site.progress_endpoint_id) if site.progress_endpoint_id else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for ex in filter(None, (self.main, self.side)):
            ex.shutdown(wait=False, cancel_futures=True)
        return False

    def mpi(self, line: str, log: str, nodes: int, ranks_per_node: int):
        """Submit ``$PARSL_MPI_PREFIX line`` on ``nodes`` x ``ranks_per_node`` ranks; its Future."""
        self.main.resource_specification = resource_specification(self.site, nodes, ranks_per_node)
        return self.main.submit(mpi_function(line, log))

    def call(self, fn, *args):
        """``fn(*args)`` on the site (a small, self-contained function); its result."""
        if self.side:
            return self.side.submit(fn, *args).result()
        self.main.resource_specification = {"num_nodes": 1, "ranks_per_node": 1}
        return self.main.submit(fn, *args).result()


class Progress(Tail):
    """The complete lines a file on the site gained since the last look, through ``Session.call``."""

    def __init__(self, session: Session, path: str, stream):
        super().__init__(path, stream, read=self._remote)
        self.session = session
        self.offset = self.size = session.call(read_from, path, 0, 0)[0]
        """Bytes already there before the run (a log is appended to), then bytes read."""

    def _remote(self, offset):
        self.size, chunk = self.session.call(read_from, self.path, offset, CHUNK)
        return chunk


def run(session: Session, line: str, log: str, nodes: int, ranks_per_node: int, stream) -> int:
    """One MPI task, its log's lines streamed to ``stream`` while it runs (with a progress endpoint); its exit
    code (1 when the task itself failed: the endpoint's error is shown)."""
    future = session.mpi(line, log, nodes, ranks_per_node)
    tail = Progress(session, log, stream) if session.side else None
    while not future.done():
        wait([future], timeout=PROGRESS_POLL)
        if tail and not future.done():
            tail()
    try:
        result = future.result()
    except Exception as e:  # the endpoint, the batch job or the worker failed: no exit code of the task
        stream.write(f"ptyhpc submit: the task did not run: {type(e).__name__}: {e}\n")
        return 1
    if tail:
        tail()
        while tail.offset < tail.size:  # the rest of the log (more than one look's worth)
            tail()
        tail(final=True)
    if result.returncode and not tail:
        last = result.stderr.splitlines()[-FAILURE_LINES:]
        stream.write("".join(f"  | {x}\n" for x in last))
    return result.returncode


def submit(site: Site, input_path, output, args=(), nodes: int = 1, ranks_per_node: int | None = None,
           stage: bool = False, dry_run: bool = False, stream=sys.stderr) -> int:
    """One reconstruction through the site's endpoint (with ``stage``: the input sent there and the results
    fetched with Globus Transfer); returns its exit code."""
    from . import transfer
    from .submit import reconstruct_line

    rpn = ranks_per_node or site.ranks_per_node
    plan = None
    if stage:
        transfer.check(site)
        plan = transfer.Plan(site, os.path.abspath(input_path), os.path.abspath(output),
                             preview="--no-preview" not in args)
        input_path, output = plan.remote_input, plan.remote_output
    output = os.path.abspath(output)
    log = os.path.splitext(output)[0] + ".log"
    line = reconstruct_line(site, input_path, output, args)
    spec = resource_specification(site, nodes, rpn)
    if dry_run:
        kind = ("user_endpoint_config (rendered by the facility endpoint's template):\n"
                f"{user_endpoint_config(site, nodes)}" if site.endpoint_kind == "facility" else
                f"endpoint config (ptyhpc endpoint-config --site {site.name}):\n{endpoint_config(site, nodes)}")
        print(f"# site {site.name}: Globus Compute endpoint {site.endpoint_id or '<endpoint_id>'}\n# {kind}\n"
              f"# resource_specification {spec}\n# MPIFunction: $PARSL_MPI_PREFIX {line} (stderr to {log})")
        if plan:
            for what, doc in (("before", plan.inbound()), ("after", plan.outbound())):
                items = ", ".join(f"{i['source_path']} -> {i['destination_path']}" for i in doc["DATA"])
                print(f"# Globus Transfer {what} the run, {doc['source_endpoint']} -> {doc['destination_endpoint']} "
                      f"(sync {transfer.SYNC}): {items}")
        return 0
    if plan and not os.path.isfile(plan.local_input):
        raise FileNotFoundError(f"{plan.local_input}: no such input")
    tc = transfer.client(site) if plan else None
    if plan:
        transfer.run(tc, plan.inbound(), "of the input", stream)
    where = "here" if site.progress_endpoint_id else f"in {log} (no progress_endpoint_id)"
    stream.write(f"ptyhpc submit: {nodes} node(s) x {rpn} rank(s) through Globus Compute endpoint "
                 f"{site.endpoint_id}; progress {where}\n")
    with Session(site, nodes) as session:
        code = run(session, line, log, nodes, rpn, stream)
    if plan and not code:
        transfer.run(tc, plan.outbound(), "of the results", stream)
        output, log = plan.local_output, os.path.splitext(plan.local_output)[0] + ".log"
    elif plan:  # the run's log, if it got as far as writing one; the run's error is what matters
        try:
            transfer.run(tc, plan.outbound(log_only=True), "of the log", stream)
            log = os.path.splitext(plan.local_output)[0] + ".log"
        except RuntimeError as e:
            stream.write(f"ptyhpc submit: the log stays on {site.name} ({e})\n")
    if code:
        stream.write(f"ptyhpc submit: the reconstruction failed (exit code {code}); its output is in {log}\n")
        return code
    preview = os.path.splitext(output)[0] + ".png"
    print(f"result: {output}" + (f"\npreview: {preview}" if "--no-preview" not in args else ""))
    return 0


def campaign(site: Site, inputs: dict, tasks, outputs, folder: str, mode: str, stream=sys.stderr) -> dict:
    """``ptyhpc scaling`` through the site's endpoint: the simulated ``inputs`` {path: simulate arguments}
    written there, the ``tasks`` [(name, nodes, ranks per node, line)] run one after the other (each run's log
    ``folder/NAME.log``), then ``ptyhpc scaling --collect`` there (``folder/scaling.json`` and ``.png``); returns
    the summary. Raises RuntimeError if a step fails."""
    python = site.python_command
    with Session(site, max(t[1] for t in tasks)) as session:
        def step(argv, what):
            code, out, err = session.call(run_command, argv)
            if code:
                raise RuntimeError(f"scaling on {site.name}: {what} failed (exit code {code}): "
                                   + " | ".join(err.strip().splitlines()[-FAILURE_LINES:]))
            return out

        step(["mkdir", "-p", folder], f"making {folder}")
        for path, words in inputs.items():
            step([python, "-m", "ptyhpc", "simulate", path, *words], f"simulating {path}")
        failed = []
        for name, nodes, rpn, line in tasks:
            stream.write(f"ptyhpc scaling: {name} ({nodes} node(s) x {rpn} rank(s))\n")
            if run(session, line, posixpath.join(folder, name + ".log"), nodes, rpn, stream):
                failed.append(name)
        if failed:
            raise RuntimeError(f"scaling runs failed: {', '.join(failed)} (their logs are in {folder} on {site.name})")
        step([python, "-m", "ptyhpc", "scaling", "--collect", *outputs, "--mode", mode, "-o", folder],
             "collecting the runs")
        summary = posixpath.join(folder, "scaling.json")
        size, text = session.call(read_from, summary, 0, 1 << 26)
        if not size:
            raise RuntimeError(f"scaling on {site.name}: {summary} was not written")
        return json.loads(text)
