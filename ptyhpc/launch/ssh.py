"""``ptyhpc submit --site <ssh profile>``: from a workstation to a cluster over one ssh master connection.

For users without a Globus Compute endpoint. The user opens one master connection once (ControlMaster: the
passcode or MFA code is typed there, once); every step then reuses it through ``ControlPath``, never asking for
anything (``BatchMode``): ``--stage`` copies the input to the site (rsync), the job script is written there and
submitted with ``sbatch`` (Slurm) or ``qsub`` (PBS), the scheduler is polled, the job's log is tailed so the
progress lines arrive while it runs, and the result and preview are copied back. What ptyhpc needs to find the
job again is kept in ``~/.cache/ptyhpc/jobs/JOB.json`` (or ``$PTYHPC_JOBS_DIR``): after a dropped connection,
``ptyhpc status JOB`` shows its state and fetches the result once it is there.

Tested end to end against a real sshd and a real Slurm on localhost; the PBS path is the same with ``qsub`` and
``qstat`` and has not run (no PBS here).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time

from .sites import Site

POLL = 1.0
"""Seconds between looks at the job (scheduler state and the new lines of its log)."""
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL",
        "DEADLINE", "F"}
"""Scheduler states after which the job will not run again (Slurm's words; PBS' ``F``)."""


class Lost(RuntimeError):
    """The ssh connection to the site broke (ssh's exit status 255)."""


class Connection:
    """Commands on ``site.host`` through the user's master connection (``site.control_path``)."""

    def __init__(self, site: Site):
        if not site.host:
            raise ValueError(f"site {site.name}: an ssh site needs host")
        self.site = site
        self.target = f"{site.user}@{site.host}" if site.user else site.host
        control = os.path.expanduser(site.control_path or "~/.ssh/ptyhpc-%r@%h:%p")
        self.common = ["-o", f"ControlPath={control}", *(["-p", str(site.port)] if site.port else []),
                       *shlex.split(site.ssh_options)]
        self.options = self.common + ["-o", "ControlMaster=no", "-o", "BatchMode=yes"]

    def master_hint(self) -> str:
        """The command that opens the master connection (the one place a passcode is typed)."""
        return " ".join(["ssh", "-MNf", "-o", "ControlMaster=yes", *map(shlex.quote, self.common), self.target])

    def check(self) -> None:
        """Refuse, with the command that opens it, when there is no master connection."""
        r = subprocess.run(["ssh", *self.options, "-O", "check", self.target], capture_output=True, text=True)
        if r.returncode != 0:
            raise ValueError(f"site {self.site.name}: no ssh master connection to {self.target} "
                             f"({r.stderr.strip() or 'ssh -O check failed'}); open one once (it asks for your "
                             f"passcode there): {self.master_hint()}")

    def run(self, command: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        """``command`` (a shell line) on the site; raises Lost when the connection broke."""
        r = subprocess.run(["ssh", *self.options, self.target, command], input=stdin, capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode == 255:
            raise Lost(r.stderr.strip() or "ssh exited with 255")
        return r

    def copy(self, source: str, target: str) -> None:
        """rsync ``source`` to ``target`` (one of them ``:path`` on the site), checksummed."""
        shell = " ".join(shlex.quote(w) for w in ["ssh", *self.options])
        fix = (lambda p: f"{self.target}{p}" if p.startswith(":") else p)
        r = subprocess.run(["rsync", "-a", "--checksum", "-e", shell, fix(source), fix(target)], capture_output=True,
                           text=True)
        if r.returncode != 0:
            if r.returncode == 255 or "connection" in r.stderr.lower():
                raise Lost(r.stderr.strip())
            raise ValueError(f"rsync {source} {target}: {r.stderr.strip()}")


def job_script(site: Site, run_dir: str, nodes: int, ranks_per_node: int, line: str) -> str:
    """The batch script of one reconstruction: the scheduler's header, the site's worker_init, then mpiexec."""
    log = f"{run_dir}/job.log"
    if site.scheduler == "pbs":
        header = ["#PBS -N ptyhpc", f"#PBS -l select={nodes}" + (f":{site.select_options}" if site.select_options
                                                                     else ""),
                  f"#PBS -l walltime={site.walltime}", "#PBS -j oe", f"#PBS -o {log}"]
        header += [f"#PBS -q {site.queue}"] * bool(site.queue) + [f"#PBS -A {site.account}"] * bool(site.account)
        header += [f"#PBS -l filesystems={site.filesystems}"] * bool(site.filesystems)
        header += [f"#PBS -l place={site.place}"] * bool(site.place)
    else:
        header = ["#SBATCH --job-name=ptyhpc", f"#SBATCH --nodes={nodes}", f"#SBATCH --ntasks-per-node={ranks_per_node}",
                  f"#SBATCH --time={site.walltime}", f"#SBATCH --output={log}"]
        header += [f"#SBATCH --partition={site.partition}"] * bool(site.partition)
        header += [f"#SBATCH --account={site.account}"] * bool(site.account)
    header += [site.scheduler_options.strip()] * bool(site.scheduler_options.strip())
    return "\n".join(["#!/bin/bash -l", *header, f"cd {shlex.quote(run_dir)}", "set +u",
                      site.worker_init.strip(), f"mpiexec -n {nodes * ranks_per_node} {site.launcher_options} {line}",
                      ""])


def _state_dir() -> str:
    return os.environ.get("PTYHPC_JOBS_DIR", os.path.expanduser("~/.cache/ptyhpc/jobs"))


def _scheduler_state(conn: Connection, job: dict) -> tuple[str, int | None]:
    """(state, exit code or None) of the job, from scontrol (Slurm) or qstat (PBS)."""
    if job["scheduler"] == "pbs":
        r = conn.run(f"qstat -fx {shlex.quote(job['job'])}")
        state = re.search(r"job_state = (\w+)", r.stdout)
        code = re.search(r"Exit_status = (-?\d+)", r.stdout)
        return (state.group(1) if state else "UNKNOWN"), (int(code.group(1)) if code else None)
    r = conn.run(f"scontrol show job -o {shlex.quote(job['job'])}")
    state = re.search(r"JobState=(\w+)", r.stdout)
    code = re.search(r"ExitCode=(\d+):(\d+)", r.stdout)
    exit_code = None if code is None else int(code.group(1)) or (128 + int(code.group(2)) if int(code.group(2)) else 0)
    return (state.group(1) if state else "UNKNOWN"), exit_code


def submit(site: Site, input_path, output, args=(), nodes: int = 1, ranks_per_node: int | None = None,
           stage: bool = False, dry_run: bool = False, stream=sys.stderr) -> int:
    """One reconstruction on an ssh site; returns its exit code (75 when the connection broke: the job goes on,
    ``ptyhpc status JOB`` finds it)."""
    from .submit import reconstruct_line

    rpn = ranks_per_node or site.ranks_per_node
    output = os.path.abspath(output)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if not os.path.isabs(site.remote_dir):
        raise ValueError(f"site {site.name}: remote_dir must be an absolute path on {site.host}, not "
                         f"{site.remote_dir!r}")
    run_dir = f"{site.remote_dir}/ptyhpc-{os.path.splitext(os.path.basename(output))[0]}-{stamp}"
    remote_in = f"{run_dir}/{os.path.basename(input_path)}" if stage else os.path.abspath(input_path)
    remote_out = f"{run_dir}/{os.path.basename(output)}" if stage else output
    line = reconstruct_line(site, remote_in, remote_out, args)
    script = job_script(site, run_dir, nodes, rpn, line)
    submit_cmd = "qsub" if site.scheduler == "pbs" else "sbatch --parsable"
    conn = Connection(site)
    if dry_run:
        print(f"# site {site.name}: over ssh to {conn.target}, in {run_dir}: {submit_cmd} job.sh\n{script}")
        return 0
    if stage and not os.path.exists(input_path):
        raise FileNotFoundError(f"{input_path}: no such input")
    conn.check()
    conn.run(f"mkdir -p {shlex.quote(run_dir)}")
    if stage:
        conn.copy(os.path.abspath(input_path), f":{run_dir}/")
    conn.run(f"cat > {shlex.quote(run_dir)}/job.sh", stdin=script)
    r = conn.run(f"cd {shlex.quote(run_dir)} && {submit_cmd} job.sh")
    if r.returncode != 0:
        raise ValueError(f"site {site.name}: {submit_cmd} failed: {r.stderr.strip() or r.stdout.strip()}")
    job = {"job": r.stdout.strip().split(";")[0], "site": site.name, "site_file": site.source, "host": conn.target,
           "scheduler": site.scheduler, "run_dir": run_dir, "remote_output": remote_out, "output": output,
           "stage": stage}
    os.makedirs(_state_dir(), exist_ok=True)
    with open(os.path.join(_state_dir(), f"{job['job']}.json"), "w") as f:
        json.dump(job, f)
    stream.write(f"ptyhpc submit: job {job['job']} on {conn.target} (site {site.name}), in {run_dir}\n")
    return follow(conn, job, stream)


def follow(conn: Connection, job: dict, stream=sys.stderr) -> int:
    """Relay the job's log as it grows until the job ends; then fetch the result. Returns the exit code."""
    offset, log = 0, f"{job['run_dir']}/job.log"
    try:
        while True:
            state, code = _scheduler_state(conn, job)
            r = conn.run(f"tail -c +{offset + 1} {shlex.quote(log)} 2>/dev/null")
            text = r.stdout
            complete = text[:text.rfind("\n") + 1] if state not in DONE else text
            if complete:
                stream.write(complete)
                stream.flush()
                offset += len(complete.encode())
            if state in DONE:
                break
            time.sleep(POLL)
        return finish(conn, job, state, code, stream)
    except Lost as e:
        stream.write(f"ptyhpc submit: lost the connection to {conn.target} ({e}); job {job['job']} goes on there. "
                     f"Reopen the master connection ({conn.master_hint()}), then `ptyhpc status {job['job']}` shows "
                     "its state and fetches the result\n")
        return 75


def finish(conn: Connection, job: dict, state: str, code, stream=sys.stderr) -> int:
    """After the job: the result back (with ``--stage``) and one closing line. Returns the exit code."""
    if state not in ("COMPLETED", "F") or code not in (0, None):
        stream.write(f"ptyhpc submit: job {job['job']} ended {state}" + (f" with exit code {code}" if code else "")
                     + f"; its log: {conn.target}:{job['run_dir']}/job.log\n")
        return code or 1
    if job["stage"]:
        base = os.path.splitext(job["remote_output"])[0]
        conn.copy(f":{job['remote_output']}", job["output"])
        if conn.run(f"test -f {shlex.quote(base)}.png").returncode == 0:
            conn.copy(f":{base}.png", os.path.splitext(job["output"])[0] + ".png")
    preview = os.path.splitext(job["output"])[0] + ".png"
    where = job["output"] if job["stage"] else f"{conn.target}:{job['remote_output']}"
    print(f"result: {where}" + (f"\npreview: {preview}" if job["stage"] and os.path.exists(preview) else ""))
    return 0


def status(job_id: str, stream=sys.stderr) -> int:
    """``ptyhpc status JOB``: the state of a job submitted over ssh; fetches its result once it is done."""
    from .sites import load_site

    path = os.path.join(_state_dir(), f"{job_id}.json")
    if not os.path.isfile(path):
        raise ValueError(f"job {job_id}: unknown here (no {path}); jobs submitted with --site <ssh profile> are kept "
                         f"in {_state_dir()}")
    with open(path) as f:
        job = json.load(f)
    conn = Connection(load_site(job["site_file"] or job["site"]))
    conn.check()
    try:
        state, code = _scheduler_state(conn, job)
        print(f"job {job['job']} on {job['host']}: {state}" + (f", exit code {code}" if code is not None else "")
              + f"; log {job['host']}:{job['run_dir']}/job.log")
        if state in DONE:
            return finish(conn, job, state, code, stream)
        return 0
    except Lost as e:
        raise ValueError(f"job {job_id}: lost the connection to {conn.target} ({e})") from None
