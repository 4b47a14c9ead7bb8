"""Parsl configurations, one factory per kind of site: an ``MPIExecutor`` whose block is the batch job (or the
workstation) and whose tasks start ``mpiexec`` over that block's nodes (``$PARSL_MPI_PREFIX``)."""
from __future__ import annotations

import os
import shlex
import sys

from .sites import PREEMPTION_RETRIES, Site


def executor(site: Site, nodes: int, run_dir: str, resolve_address: bool = True):
    """The ``MPIExecutor`` for ``site`` with blocks of ``nodes`` nodes (one block: one batch job).
    ``resolve_address=False`` (a dry run) leaves the interchange address unresolved."""
    from parsl.executors import MPIExecutor
    from parsl.launchers import SimpleLauncher

    worker_init = site.worker_init.strip()
    if not site.python:
        # this interpreter's environment on the nodes too (shared filesystem): Parsl's worker scripts and ptyhpc
        bindir = os.path.dirname(sys.executable)
        worker_init = "\n".join(filter(None, [f"export PATH={shlex.quote(bindir)}:$PATH", worker_init]))
    if site.provider == "local":
        from parsl.providers import LocalProvider

        # MPIExecutor takes its node list from the scheduler; on a workstation a PBS-style node file of
        # localhost lines stands in for one (measured: ../shared/platform.md)
        os.makedirs(run_dir, exist_ok=True)
        nodefile = os.path.join(run_dir, "nodefile")
        with open(nodefile, "w") as f:
            f.write("localhost\n" * nodes)
        provider = LocalProvider(nodes_per_block=nodes, init_blocks=1, min_blocks=0, max_blocks=1,
                                 launcher=SimpleLauncher(),
                                 worker_init="\n".join(filter(None, [f"export PBS_NODEFILE={nodefile}", worker_init])))
    elif site.provider == "slurm":
        from parsl.providers import SlurmProvider

        provider = SlurmProvider(partition=site.partition or None, account=site.account or None,
                                 nodes_per_block=nodes, cores_per_node=site.cores_per_node or None,
                                 init_blocks=1, min_blocks=0, max_blocks=1, walltime=site.walltime,
                                 scheduler_options=site.scheduler_options, worker_init=worker_init,
                                 exclusive=site.exclusive, launcher=SimpleLauncher())
    else:
        from parsl.providers import PBSProProvider

        lines = [f"#PBS -l filesystems={site.filesystems}" if site.filesystems else "",
                 f"#PBS -l place={site.place}" if site.place else "", site.scheduler_options.strip()]
        provider = PBSProProvider(account=site.account or None, queue=site.queue or None, walltime=site.walltime,
                                  scheduler_options="\n".join(filter(None, lines)),
                                  select_options=site.select_options, cpus_per_node=site.cpus_per_node,
                                  worker_init=worker_init, nodes_per_block=nodes, init_blocks=1, min_blocks=0,
                                  max_blocks=1, launcher=SimpleLauncher())
    if site.provider == "local":
        address = "127.0.0.1"  # the workers run on this machine
    elif site.address_interface and resolve_address:
        from parsl.addresses import address_by_interface

        try:
            address = address_by_interface(site.address_interface)
        except OSError as e:
            raise ValueError(f"site {site.name}: address_interface {site.address_interface!r} is not a network "
                             f"interface of this machine ({e}); leave it empty for Parsl's default (the "
                             "workers try every address of this machine)") from None
    else:
        address = None  # Parsl's default: the workers try every address of this machine
    return MPIExecutor(label=f"ptyhpc-{site.name}", provider=provider, address=address, mpi_launcher="mpiexec",
                       max_workers_per_block=1, heartbeat_period=5, heartbeat_threshold=60)


def parsl_config(site: Site, nodes: int, run_dir: str):
    """A ``parsl.Config`` running tasks on ``site`` in one block of ``nodes`` nodes; logs go to ``run_dir``."""
    from parsl.config import Config

    bindir = os.path.dirname(sys.executable)  # Parsl starts interchange.py from PATH
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")

    return Config(executors=[executor(site, nodes, run_dir)], run_dir=run_dir, strategy_period=0.5,
                  initialize_logging=True, retries=PREEMPTION_RETRIES if site.preemptable else 0)
