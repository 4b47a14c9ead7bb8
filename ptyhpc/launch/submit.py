"""``ptyhpc submit``: one reconstruction as an MPI task of a Parsl ``MPIExecutor`` on a site (workstation, Slurm,
Polaris). Inputs and outputs are paths on a filesystem the compute nodes share with this machine (nothing is
staged). Progress (epoch, cost) is read from the task's stderr file as it grows and shown here."""
from __future__ import annotations

import os
import shlex
import sys
import time

from .parsl_config import executor, parsl_config
from .sites import Site

POLL = 0.3
"""Seconds between looks at the task's output."""
PREEMPTABLE_CHECKPOINTS = 10
"""On a preemptable queue: epochs between checkpoints, unless the command line says otherwise."""


def reconstruct_line(site: Site, input_path, output, args=()) -> str:
    """The command every rank runs (after ``$PARSL_MPI_PREFIX``): [wrapper] python -m ptyhpc reconstruct ..."""
    args = list(args)
    if "--device" not in args:
        args += ["--device", site.device]
    if site.preemptable:  # a retried task continues from the checkpoint its preempted attempt left
        args += ([] if "--checkpoint-every" in args else ["--checkpoint-every", str(PREEMPTABLE_CHECKPOINTS)])
        args += [] if "--resume" in args else ["--resume", "auto"]
    words = ([site.wrapper_path] if site.wrapper else []) + [site.python_command, "-m", "ptyhpc", "reconstruct",
                                                             os.path.abspath(input_path), "-o",
                                                             os.path.abspath(output), *args]
    return " ".join(shlex.quote(str(w)) for w in words)


def resources(site: Site, nodes: int, ranks_per_node: int) -> dict:
    """Parsl's ``parsl_resource_specification`` of one reconstruction."""
    spec = {"num_nodes": nodes, "ranks_per_node": ranks_per_node}
    if site.launcher_options:
        spec["launcher_options"] = site.launcher_options
    return spec


def mpi_line(site: Site, nodes: int, ranks_per_node: int, line: str, hosts=None) -> str:
    """The full line a task runs, with ``$PARSL_MPI_PREFIX`` expanded as Parsl expands it for ``hosts``."""
    from parsl.executors.high_throughput.mpi_prefix_composer import compose_all, validate_resource_spec

    spec = {k: str(v) for k, v in resources(site, nodes, ranks_per_node).items()}
    validate_resource_spec(spec)
    hosts = hosts or (["localhost"] * nodes if site.provider == "local" else [f"<node{i}>" for i in range(nodes)])
    return compose_all("mpiexec", spec, list(dict.fromkeys(hosts)))["PARSL_MPI_PREFIX"] + " " + line


def batch_script(site: Site, nodes: int, run_dir: str) -> tuple:
    """(provider, submit command, batch script): the site's Parsl provider and what it would run, captured from
    the provider itself: its submit() runs with the scheduler call intercepted. Local sites have no batch job
    (empty command and script)."""
    ex = executor(site, nodes, run_dir, resolve_address=False)
    provider = ex.provider
    if site.provider == "local":
        return provider, "", ""
    os.makedirs(run_dir, exist_ok=True)
    provider.script_dir = run_dir
    seen = {}

    def intercept(cmd, timeout=None):
        seen["cmd"] = cmd
        return 0, ("0.dry-run" if site.provider == "pbspro" else "Submitted batch job 0"), ""

    provider.execute_wait = intercept
    worker = ex.launch_cmd.replace("{", "<").replace("}", ">")  # filled in when Parsl starts its interchange
    provider.submit(worker, tasks_per_node=1, job_name="ptyhpc.dry-run")
    path = seen["cmd"].split()[-1]
    with open(path) as f:
        return provider, seen["cmd"], f.read()


def _app():
    from parsl import bash_app

    @bash_app
    def mpi_task(line, stdout=None, stderr=None, parsl_resource_specification=None):
        return f"$PARSL_MPI_PREFIX {line}"

    return mpi_task


class Tail:
    """Copy the complete lines appended to a file to a stream, without the command echo Parsl's bash apps put
    first (between '--> executable follows <--' and '--> end executable <--'). ``read(offset)``: the file's bytes
    from ``offset`` on, or None while there is no file (default: the file here; a remote one through Globus
    Compute in ``globus.Progress``)."""

    def __init__(self, path, stream, read=None):
        self.path, self.stream, self.offset, self.rest, self.echo = path, stream, 0, b"", False
        self.read = read or self._local

    def _local(self, offset):
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return None

    def __call__(self, final=False):
        chunk = self.read(self.offset)
        if chunk is None:
            return
        self.offset += len(chunk)
        lines = (self.rest + chunk).split(b"\n")
        self.rest = b"" if final else lines.pop()
        for line in lines:
            text = line.decode(errors="replace")
            if text.startswith("--> executable follows <--"):
                self.echo = True
            elif text.startswith("--> end executable <--"):
                self.echo = False
            elif not self.echo and (text or final is False):
                self.stream.write(text + "\n")
        self.stream.flush()


def run_tasks(site: Site, nodes: int, tasks, run_dir: str, stream=sys.stderr, echo=True) -> list[int]:
    """Run ``tasks`` [(name, nodes, ranks_per_node, line)] one after the other in one Parsl block of ``nodes``
    nodes; each task's stderr is streamed to ``stream`` while it runs. Returns the exit codes."""
    import parsl
    from parsl.app.errors import BashExitFailure

    os.makedirs(run_dir, exist_ok=True)
    codes = []
    with parsl.load(parsl_config(site, nodes, run_dir)):
        app = _app()
        for name, task_nodes, rpn, line in tasks:
            out, err = (os.path.join(run_dir, f"{name}.{s}") for s in ("stdout", "stderr"))
            for path in (out, err):
                if os.path.exists(path):
                    os.remove(path)
            future = app(line, stdout=out, stderr=err, parsl_resource_specification=resources(site, task_nodes, rpn))
            tail = Tail(err, stream) if echo else (lambda final=False: None)
            while not future.done():
                tail()
                time.sleep(POLL)
            tail(final=True)
            try:
                future.result()
                codes.append(0)
            except BashExitFailure as e:
                codes.append(e.exitcode or 1)
            except Exception as e:  # the batch job or the worker failed: no exit code from the task
                stream.write(f"ptyhpc submit: {name}: {type(e).__name__}: {e}\n")
                codes.append(1)
    return codes


def submit(site: Site, input_path, output, args=(), nodes: int = 1, ranks_per_node: int | None = None,
           dry_run: bool = False, stream=sys.stderr) -> int:
    """Run one reconstruction on ``site`` (see ``ptyhpc submit --help``). Returns the exit code."""
    rpn = ranks_per_node or site.ranks_per_node
    output = os.path.abspath(output)
    run_dir = os.path.join(os.path.dirname(output), "ptyhpc_runinfo")
    line = reconstruct_line(site, input_path, output, args)
    if dry_run:
        provider, cmd, script = batch_script(site, nodes, run_dir)
        if site.provider == "local":
            print(f"# site {site.name}: no batch job; Parsl starts a worker on this machine after:\n"
                  f"{provider.worker_init}")
        else:
            print(f"# site {site.name}: Parsl's {type(provider).__name__} would run\n{cmd}\n"
                  f"# with this batch script:\n{script}")
        print(f"# then the worker runs, on the job's nodes:\n{mpi_line(site, nodes, rpn, line)}")
        return 0
    if not os.path.exists(input_path):
        raise FileNotFoundError(f"{input_path}: no such input")
    stream.write(f"ptyhpc submit: {nodes} node(s) x {rpn} rank(s) on site {site.name} ({site.provider}); "
                 f"Parsl logs in {run_dir}\n")
    code = run_tasks(site, nodes, [("reconstruct", nodes, rpn, line)], run_dir, stream)[0]
    if code:
        log = os.path.join(run_dir, "reconstruct.stderr")
        if os.path.exists(log) and os.path.getsize(log):
            stream.write(f"ptyhpc submit: the reconstruction failed (exit code {code}); its output is in {log}\n")
        else:  # the batch job never ran the task: what went wrong is the provider's error, shown above
            stream.write(f"ptyhpc submit: no task ran: the {site.provider} batch job could not start (the provider's "
                         f"error is above; Parsl's logs are in {run_dir})\n")
        return code
    preview = os.path.splitext(output)[0] + ".png"
    print(f"result: {output}" + (f"\npreview: {preview}" if os.path.exists(preview) else ""))
    return 0
