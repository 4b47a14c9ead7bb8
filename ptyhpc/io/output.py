"""Where results go: checked before any computing, never onto a file the run reads.

``check_outputs`` runs before the first epoch, so a wrong output location costs seconds, not a cluster
allocation: every path a run will write (the product, its PNG preview, its checkpoint) must lie in an existing,
writable directory, must not be a directory, and must not be (``os.path.samefile``: through a symbolic or a hard
link too) any file the run reads. The product itself is written to ``OUT.partial`` and renamed
(``io.product.write_product``), so a crash never leaves half a result under the real name.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

from .dataset import InputError


@contextmanager
def atomic(path, rank: int = 0):
    """``with atomic(path, rank) as tmp:`` write ``tmp`` (``path.partial``); rank 0 renames it to ``path`` when
    the block ends normally, and whichever rank stops with an exception removes it: no half-written file survives,
    and an existing ``path`` is replaced only by a complete one."""
    tmp = f"{path}.partial"
    try:
        yield tmp
        if rank == 0:
            os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def same_file(a, b) -> bool:
    """True when paths ``a`` and ``b`` both exist and are one file (one inode: symbolic and hard links too)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (yet)
        return False


def check_outputs(outputs, inputs, probe_writable: bool = True, may_replace=()) -> None:
    """Refuse, with one :class:`InputError` naming the path and the option, an output location that cannot work.

    outputs : [(option, path)] every file the run may write, e.g. ``[("-o", "r.h5"), ("preview", "r.png")]``
    inputs : [(option, path)] every file the run reads (None entries are skipped)
    probe_writable : create and delete a temporary file in each output's directory (one rank is enough: the
        others see the same filesystem); a read-only filesystem or a permission problem shows up here, which
        ``os.access`` misses for root
    may_replace : (output option, input option) pairs that are allowed to name one file (a new checkpoint
        replacing the one the run resumed from)
    """
    for option, out in outputs:
        out = os.fspath(out)
        if os.path.isdir(out):
            raise InputError(out, option, "is a directory: give the name of the file to write, e.g. "
                                          f"{os.path.join(out, 'result.h5')}")
        parent = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(parent):
            raise InputError(out, option, f"the directory {parent} does not exist")
        for in_option, path in inputs:
            if path is not None and (option, in_option) not in may_replace and same_file(out, path):
                raise InputError(out, option, f"is the file given as {in_option} ({path}): writing the result "
                                              "would replace it; choose another output name")
        if probe_writable:
            try:
                fd, probe = tempfile.mkstemp(dir=parent, prefix=".ptyhpc-write-test-")
                os.close(fd)
                os.remove(probe)
            except OSError as e:
                raise InputError(out, option, f"cannot write in {parent} ({e.strerror})") from None
