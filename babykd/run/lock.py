"""Exclusive locks: one run per run folder, one builder per data-cache folder, and `file_lock`, the one
flock primitive every lock of the project (the results store's unit and results locks too) is held with.

Why `fcntl.flock`: the kernel releases it when the holder dies (SIGKILL, OOM, a node
reboot of a local disk), so there is no stale lock file to clean up by hand, and a
second process learns at once that the folder is in use. The lock file stays in
the folder for good (deleting it would let two processes lock two different
files); after taking the lock the holder writes its host, pid and start time into
it so a refused process can say who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator, TextIO

from babykd.run.atomic import remove_leftovers
from babykd.errors import UserError

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
#: The data-cache folder's lock (see babykd.data.pipeline).
CACHE_LOCK_FILE = ".cache.lock"


class FolderInUseError(UserError, RuntimeError):
    """Another live process holds the folder's lock; the message names it (host, pid, start time)."""


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, waiting: Callable[[str], None] | None = None) -> Iterator[TextIO]:
    """Hold the exclusive flock of `path` (created, with its folder) for the block; yields the open lock file.

    When another process holds it, `waiting` is called first with what that holder wrote into the file ("" if
    nothing): to say so, or to raise and refuse instead of waiting. Closing the file releases the lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                handle.seek(0)
                waiting(handle.read().strip())
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield handle


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, *, wait: bool = False, purpose: str = "a run",
                lock_file: str = LOCK_FILE) -> Iterator[Path]:
    """Hold the exclusive lock of `folder` (created if missing) for the block.

    `wait=False` refuses at once with :class:`FolderInUseError` (two runs writing one
    run folder is always a mistake); `wait=True` blocks until the holder is done
    (two jobs building the same token cache: the second then reuses it). On
    taking the lock, temporary files that an interrupted writer left in the folder
    are removed: while we hold the lock nobody else can be writing them. Locks of
    different jobs use different `lock_file` names, so a cache folder that is also
    a run folder does not deadlock the run that holds both.
    """
    folder = Path(folder)

    def refuse_or_wait(holder: str) -> None:
        holder = holder or "another process"
        if not wait:
            raise FolderInUseError(
                f"{folder} is in use by {purpose} ({holder}); wait for it to finish, "
                "or write to another folder (e.g. --set output.name=...)"
            ) from None
        logger.info("waiting for %s (%s) to release %s", purpose, holder, folder)

    with file_lock(folder / lock_file, refuse_or_wait) as handle:
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        handle.write(f"host {socket.gethostname()}, pid {os.getpid()}, started {started}\n")
        handle.flush()
        remove_leftovers(folder)
        yield folder
