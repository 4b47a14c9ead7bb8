"""Site profiles: where and how a reconstruction is launched, in a TOML file the user edits once.

``load_site(name)`` looks for ``NAME.toml`` in ``$PTYHPC_SITES``, then ``~/.config/ptyhpc/sites/``, then the
profiles shipped with ptyhpc (``local``, ``slurm``, ``polaris``); a path to a ``.toml`` file works too. The file
has one ``[site]`` table whose keys are the fields of ``Site``.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
from dataclasses import dataclass

from ..config import tomllib

SHIPPED = pathlib.Path(__file__).with_name("sites")
PROVIDERS = ("local", "slurm", "pbspro", "ssh", "globus-compute")
PREEMPTION_RETRIES = 3
"""How often Parsl resubmits a reconstruction killed with its batch job on a preemptable queue."""
CHECKOUT = pathlib.Path(__file__).resolve().parents[2]
"""The ptyhpc checkout (holds jobs/) when ptyhpc runs from one."""


@dataclass(frozen=True)
class Site:
    name: str
    provider: str
    """'local' (LocalProvider), 'slurm' (SlurmProvider), 'pbspro' (PBSProProvider), or 'ssh' (no Parsl: the job
    script goes to ``host`` over ssh and into its scheduler, see ``launch/ssh.py``)."""
    account: str = ""
    queue: str = ""
    """PBS queue."""
    partition: str = ""
    """Slurm partition."""
    walltime: str = "00:30:00"
    filesystems: str = ""
    """PBS ``-l filesystems=`` (Polaris requires it)."""
    place: str = ""
    """PBS ``-l place=``."""
    select_options: str = ""
    """Appended to PBS ``-l select=N:ncpus=C`` (Polaris: ``ngpus=4:system=polaris``)."""
    cpus_per_node: int = 1
    cores_per_node: int = 0
    exclusive: bool = False
    ranks_per_node: int = 1
    device: str = "cpu"
    scheduler_options: str = ""
    """Extra scheduler lines (``#PBS ...`` / ``#SBATCH ...``)."""
    worker_init: str = ""
    """Shell lines run in the batch job before the Parsl worker starts (modules, environment)."""
    python: str = ""
    """Python on the compute nodes; '' = this interpreter (a shared filesystem)."""
    launcher_options: str = ""
    """Appended to ``mpiexec -n R -ppn M -hosts H``."""
    wrapper: str = ""
    """A program every rank starts through (GPU affinity); relative paths are taken from the ptyhpc checkout."""
    host: str = ""
    """ssh sites: the login node (or an alias of ~/.ssh/config)."""
    user: str = ""
    """ssh sites: the user there ('' = ssh's default)."""
    port: int = 0
    """ssh sites: the port (0 = ssh's default)."""
    control_path: str = ""
    """ssh sites: the master connection's socket ('' = ~/.ssh/ptyhpc-%r@%h:%p); open it once with ssh -MNf."""
    ssh_options: str = ""
    """ssh sites: more ssh options (e.g. ``-i KEY``)."""
    remote_dir: str = ""
    """ssh sites: absolute folder on the site for the runs (staged inputs, job scripts, logs, results)."""
    scheduler: str = "slurm"
    """ssh sites: 'slurm' (sbatch, scontrol) or 'pbs' (qsub, qstat)."""
    endpoint_id: str = ""
    """globus-compute sites: the endpoint's UUID."""
    endpoint_kind: str = "own"
    """globus-compute sites: 'own' (the user's endpoint, configured from ``ptyhpc endpoint-config``) or 'facility'
    (a multi-user endpoint such as ALCF's: the job's shape travels as ``user_endpoint_config``)."""
    progress_endpoint_id: str = ""
    """globus-compute sites: an endpoint on a login node of the site (``ptyhpc endpoint-config --progress``: a
    thread pool, no batch job) through which the run's log is read while it runs, and the small steps of a
    scaling campaign run; '' = none (the log stays on the site; the small steps take a compute node)."""
    collection: str = ""
    """globus-compute sites, ``--stage``: the site's Globus collection (UUID), e.g. Eagle's."""
    collection_root: str = ""
    """The folder of the site's filesystem that ``collection`` shows at its root ('' = the filesystem's root)."""
    collection_data_access: bool = True
    """``collection`` is a mapped Globus Connect Server collection, which needs the data_access consent (a guest
    collection does not)."""
    stage_dir: str = ""
    """globus-compute sites, ``--stage``: the folder on the site's filesystem for staged inputs and results."""
    local_collection: str = ""
    """globus-compute sites, ``--stage``: the workstation's collection (Globus Connect Personal or the
    beamline's Globus Connect Server), UUID."""
    local_collection_root: str = ""
    """The workstation folder that ``local_collection`` shows at its root ('' = the filesystem's root)."""
    source: str = ""
    """The profile file this site was read from (set by ``load_site``)."""
    address_interface: str = ""
    """Network interface the workers reach this machine on (Polaris: ``hsn0``, the Slingshot network that
    globus-compute and ALCF use since ``bond0`` stopped carrying worker traffic); '' = Parsl's default (the
    workers try every address of this machine). A ``local`` site always uses 127.0.0.1."""

    @property
    def preemptable(self) -> bool:
        """A queue whose jobs can be killed for others (Polaris' ``preemptable``): Parsl retries the task
        (``PREEMPTION_RETRIES``) and the reconstruction resumes from its checkpoint (``--resume auto``)."""
        return self.queue == "preemptable"

    @property
    def python_command(self) -> str:
        return self.python or sys.executable

    @property
    def wrapper_path(self) -> str:
        if not self.wrapper or os.path.isabs(self.wrapper):
            return self.wrapper
        return str(CHECKOUT / self.wrapper)


def site_file(name: str) -> pathlib.Path:
    """The TOML file for ``name`` (a path, or a profile name looked up as described in the module docstring)."""
    if name.endswith(".toml"):
        return pathlib.Path(name)
    folders = [os.environ.get("PTYHPC_SITES", ""), os.path.expanduser("~/.config/ptyhpc/sites"), str(SHIPPED)]
    for folder in filter(None, folders):
        path = pathlib.Path(folder) / f"{name}.toml"
        if path.is_file():
            return path
    raise ValueError(f"site {name!r}: no {name}.toml in {', '.join(filter(None, folders))}")


def load_site(name: str, **overrides) -> Site:
    """The ``Site`` of profile ``name``, with ``overrides`` (those not None) applied."""
    path = site_file(name)
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f).get("site", {})
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: cannot read the site profile ({e})") from None
    known = {f.name for f in dataclasses.fields(Site)} - {"source"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"{path}: [site]: unknown setting(s) {unknown}; known: {sorted(known - {'name'})}")
    table.update({k: v for k, v in overrides.items() if v is not None})
    table.setdefault("name", path.stem)
    table["source"] = str(path.resolve())
    if table.get("provider") not in PROVIDERS:
        raise ValueError(f"{path}: [site]: provider must be one of {PROVIDERS}, not {table.get('provider')!r}")
    if table.get("scheduler", "slurm") not in ("slurm", "pbs"):
        raise ValueError(f"{path}: [site]: scheduler must be 'slurm' or 'pbs', not {table.get('scheduler')!r}")
    return Site(**table)
