"""Staging with Globus Transfer for ``globus-compute`` sites (``ptyhpc submit --site NAME --stage``).

A beamline's files are not on Polaris' filesystems. Before the run the input goes from the workstation's collection
(``local_collection``: Globus Connect Personal or the beamline's Globus Connect Server) to ``stage_dir`` on the
site's collection (``collection``, e.g. Eagle); after it the product, its PNG preview and the run's log come back
beside the output path the user named. Each transfer is one task, ``sync_level = "checksum"`` (a file already
there with the same checksum is not sent again, so a resubmitted scan costs nothing) with checksums verified,
waited for and checked: anything but SUCCEEDED is an error naming the task.

A collection shows a folder of its filesystem at its root: ``collection_root`` / ``local_collection_root`` say
which ('' = the filesystem's root, the paths are the same). Log-in: the Globus Compute SDK's app (one log-in for
Compute and Transfer; a service identity through ``GLOBUS_COMPUTE_CLIENT_ID``/``_SECRET`` works the same), with
the ``data_access`` consent a mapped Globus Connect Server collection needs (``collection_data_access``).

What runs here: the transfer documents are globus-sdk's own ``TransferData``; tests hand them to a stand-in for
``TransferClient`` (the service boundary) that copies what they name. What has not run: a transfer through the
Globus service (no network to it from here).
"""
from __future__ import annotations

import os
import posixpath
import sys
import time
from dataclasses import dataclass

from .sites import Site

WAIT_S = 60
"""Seconds of one ``task_wait`` call (progress is reported between calls)."""
POLL_S = 5
"""Seconds between the service's looks at the task inside ``task_wait``."""
SYNC = "checksum"
"""Transfer's sync level: a file already at the destination with the same checksum is not sent again."""
TIMEOUT_S = 6 * 3600
"""A transfer still not done after this is given up (and cancelled)."""


def collection_path(path: str, root: str) -> str:
    """``path`` (absolute, on a filesystem) as the collection whose root shows folder ``root`` names it."""
    path = posixpath.normpath(path)
    if not root or root == "/":
        return path
    root = posixpath.normpath(root)
    if path != root and not path.startswith(root + "/"):
        raise ValueError(f"{path}: outside the collection's root folder {root}")
    return "/" + posixpath.relpath(path, root).lstrip(".")


@dataclass(frozen=True)
class Plan:
    """Where one staged run's files are: on the workstation and on the site (its filesystem's paths)."""

    site: Site
    local_input: str
    local_output: str
    preview: bool
    """Fetch the PNG preview too (the run writes one)."""

    @property
    def remote_input(self) -> str:
        return posixpath.join(self.site.stage_dir, os.path.basename(self.local_input))

    @property
    def remote_output(self) -> str:
        return posixpath.join(self.site.stage_dir, os.path.basename(self.local_output))

    def _fetched(self):
        stem, local = posixpath.splitext(self.remote_output)[0], os.path.splitext(self.local_output)[0]
        pairs = [(self.remote_output, self.local_output), (stem + ".log", local + ".log")]
        return pairs + ([(stem + ".png", local + ".png")] if self.preview else [])

    def inbound(self):
        """The input's transfer document (workstation -> site)."""
        return document(self.site.local_collection, self.site.collection,
                        [(collection_path(os.path.abspath(self.local_input), self.site.local_collection_root),
                          collection_path(self.remote_input, self.site.collection_root))],
                        "ptyhpc: " + os.path.basename(self.local_input) + " to " + self.site.name)

    def outbound(self, log_only: bool = False):
        """The results' transfer document (site -> workstation): product, log, preview (the log alone after a
        failed run)."""
        pairs = self._fetched()[1:2] if log_only else self._fetched()
        return document(self.site.collection, self.site.local_collection,
                        [(collection_path(a, self.site.collection_root),
                          collection_path(os.path.abspath(b), self.site.local_collection_root)) for a, b in pairs],
                        "ptyhpc: " + os.path.basename(self.local_output) + " from " + self.site.name)


def check(site: Site) -> None:
    """A staging site names both collections and the folder; ValueError otherwise."""
    missing = [k for k in ("collection", "local_collection", "stage_dir") if not getattr(site, k)]
    if missing:
        raise ValueError(f"site {site.name} ({site.source}): --stage with Globus Transfer needs {', '.join(missing)} "
                         "in [site]")
    for key in ("stage_dir", "collection_root", "local_collection_root"):
        if getattr(site, key) and not posixpath.isabs(getattr(site, key)):
            raise ValueError(f"site {site.name} ({site.source}): {key} must be an absolute path, not "
                             f"{getattr(site, key)!r}")


def document(source: str, destination: str, pairs, label: str):
    """globus-sdk's ``TransferData`` for (source path, destination path) pairs: checksum sync, verified."""
    from globus_sdk import TransferData

    data = TransferData(source_endpoint=source, destination_endpoint=destination, label=label[:128],
                        sync_level=SYNC, verify_checksum=True)
    for a, b in pairs:
        data.add_item(a, b)
    return data


def client(site: Site):
    """A ``TransferClient`` logged in through the Globus Compute SDK's app (logs in when it must)."""
    from globus_compute_sdk.sdk.auth.globus_app import get_globus_app
    from globus_sdk import TransferClient

    tc = TransferClient(app=get_globus_app())
    if site.collection_data_access:
        tc.add_app_data_access_scope([site.collection])
    return tc


def run(tc, data, what: str, stream=sys.stderr) -> None:
    """Submit one transfer and wait for it; RuntimeError unless it SUCCEEDED."""
    task = tc.submit_transfer(data)["task_id"]
    stream.write(f"ptyhpc submit: Globus Transfer {what}: task {task}\n")
    start = time.monotonic()
    while not tc.task_wait(task, timeout=WAIT_S, polling_interval=POLL_S):
        info = tc.get_task(task)
        stream.write(f"ptyhpc submit: Globus Transfer {what}: {info['status']}, {info.get('bytes_transferred', 0)} "
                     f"bytes, {info.get('nice_status') or ''}\n")
        if time.monotonic() - start > TIMEOUT_S:
            tc.cancel_task(task)
            raise RuntimeError(f"Globus Transfer {what} (task {task}): not done after {TIMEOUT_S} s, cancelled")
    info = tc.get_task(task)
    if info["status"] != "SUCCEEDED":
        raise RuntimeError(f"Globus Transfer {what} (task {task}): {info['status']}"
                           + (f" ({info['nice_status']})" if info.get("nice_status") else ""))
    stream.write(f"ptyhpc submit: Globus Transfer {what}: done, {info.get('files_transferred', 0)} file(s) sent, "
                 f"{info.get('files_skipped', 0)} unchanged\n")
