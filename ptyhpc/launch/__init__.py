"""Launching reconstructions from a workstation onto a site through Parsl (``ptyhpc submit``, ``ptyhpc scaling``).

- ``sites``: TOML site profiles (``local``, ``slurm``, ``polaris`` shipped; the user's own override them).
- ``parsl_config``: one ``MPIExecutor`` per site (LocalProvider, SlurmProvider, PBSProProvider).
- ``submit``: one reconstruction as an MPI task, progress streamed back; ``--dry-run`` shows the batch script.
- ``scaling``: a campaign of runs summarised into JSON and PNG.
- ``ssh``: the ssh route from a workstation (no Parsl): stage, sbatch/qsub, follow the log, fetch; ``status``.

Parsl is imported only when a launch actually happens (``pip install ptyhpc[workflow]``).
"""
from .sites import Site, load_site

__all__ = ["Site", "load_site"]
