"""Exclusive locks on a folder: one run per run folder, one builder per data-cache folder.

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
from typing import Iterator

from babykd.atomic import remove_leftovers
from babykd.errors import UserError

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
#: The data-cache folder's lock (see babykd.data.pipeline).
CACHE_LOCK_FILE = ".cache.lock"


class FolderInUseError(UserError, RuntimeError):
    """Another live process holds the folder's lock; the message names it (host, pid, start time)."""


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
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / lock_file
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            if not wait:
                raise FolderInUseError(
                    f"{folder} is in use by {purpose} ({holder}); wait for it to finish, "
                    "or write to another folder (e.g. --set output.name=...)"
                ) from None
            logger.info("waiting for %s (%s) to release %s", purpose, holder, folder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        handle.write(f"host {socket.gethostname()}, pid {os.getpid()}, started {started}\n")
        handle.flush()
        remove_leftovers(folder)
        yield folder
    finally:
        handle.close()  # closing the descriptor releases the lock
