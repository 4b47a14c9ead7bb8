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
known pitfall), not a Parsl of the endpoint's version. Paths are on the site's filesystem (Eagle): stage them
there first (``ptyhpc submit --site <ssh profile> --stage`` or Globus Transfer). The task writes its progress to
``OUT.log`` beside the result; that file is where to watch it.

What runs here: the configuration is loaded by globus-compute-endpoint's own loader, and the function ptyhpc
submits is run locally as an endpoint runs it (``MPIFunction.__call__`` with ``$PARSL_MPI_PREFIX``). What has not
run: the submission to the real service and a real endpoint (no network to it from here).
"""
from __future__ import annotations

import os
import sys

from .sites import Site

ENGINE = "GlobusMPIEngine"


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
    import yaml

    provider = {"type": "PBSProProvider", "account": site.account, "queue": site.queue,
                "walltime": site.walltime, "nodes_per_block": nodes, "init_blocks": 0, "min_blocks": 0,
                "max_blocks": 1, "select_options": site.select_options, "cpus_per_node": site.cpus_per_node,
                "scheduler_options": _scheduler_options(site), "worker_init": site.worker_init.strip(),
                "launcher": {"type": "SimpleLauncher"}}
    engine = {"type": ENGINE, "mpi_launcher": "mpiexec", "max_workers_per_block": 1, "provider": provider}
    if site.address_interface:
        engine["address"] = {"type": "address_by_interface", "ifname": site.address_interface}
    return yaml.safe_dump({"display_name": f"ptyhpc-{site.name}", "engine": engine}, sort_keys=False)


def submit(site: Site, input_path, output, args=(), nodes: int = 1, ranks_per_node: int | None = None,
           dry_run: bool = False, stream=sys.stderr) -> int:
    """One reconstruction through the site's endpoint; returns its exit code."""
    from .submit import reconstruct_line

    rpn = ranks_per_node or site.ranks_per_node
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
        return 0
    if not site.endpoint_id:
        raise ValueError(f"site {site.name}: a globus-compute site needs endpoint_id")
    try:
        from globus_compute_sdk import Executor
    except ImportError:
        raise ValueError("Globus Compute needs its SDK: pip install 'ptyhpc[globus]'") from None
    config = user_endpoint_config(site, nodes) if site.endpoint_kind == "facility" else None
    stream.write(f"ptyhpc submit: {nodes} node(s) x {rpn} rank(s) through Globus Compute endpoint "
                 f"{site.endpoint_id}; progress in {log}\n")
    with Executor(endpoint_id=site.endpoint_id, user_endpoint_config=config) as ex:
        ex.resource_specification = spec
        result = ex.submit(mpi_function(line, log)).result()
    if result.returncode:
        stream.write(f"ptyhpc submit: the reconstruction failed (exit code {result.returncode}); its output is "
                     f"in {log}\n")
        return result.returncode
    print(f"result: {output}")
    return 0
