"""Atomic file and directory writes.

A job killed by SLURM at any moment must never leave a half-written result or
checkpoint that later loads wrong: everything is written to a temporary name in
the same directory and renamed into place (rename is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from babykd.errors import DiskFullError

logger = logging.getLogger(__name__)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def normal_permissions(path: Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create 0600/0700; give results the permissions a plain write would."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        normal_permissions(Path(tmp), directory=False)
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if error.errno in DiskFullError.CAUSES:  # the one error a user fixes at once: their commands say it in a line
            raise DiskFullError(error.errno, error.strerror, str(path)) from error
        if error.filename is not None:
            raise
        # write() and fsync() failures (EIO, EFBIG) carry no file name: say which write failed.
        raise OSError(error.errno, error.strerror, str(path)) from error
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `path` only if the block succeeds.

    Used for checkpoints and tokenizers: a reader never sees a directory with
    only some of its files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    normal_permissions(tmp, directory=True)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp, path)
            except OSError:
                if not path.is_dir():
                    raise
                # A concurrent writer (another job on the same output root) finished first;
                # its directory is complete, so keep it and drop ours.
                shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_leftovers(directory: str | os.PathLike, prefix: str = "") -> list[Path]:
    """Delete the temporary files and folders that interrupted atomic writes of `directory/prefix*` left.

    Only safe while no other process can be writing them: callers hold the
    lock that covers them (see :mod:`babykd.run.lock`). Returns what was removed.
    """
    removed = sorted(Path(directory).glob(f".{glob.escape(prefix)}*.tmp"))
    for leftover in removed:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    if removed:
        logger.info("removed %d leftover temporary file(s) of interrupted writes in %s", len(removed), directory)
    return removed


#: How torch.save (PyTorchStreamWriter) and safetensors report a failed write: without the file or errno.
_WRITE_FAILURE = re.compile(r"inline_container\.cc|PytorchStreamWriter|file write failed|I/O error|os error \d+")
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


@contextlib.contextmanager
def write_failures_named(folder: str | os.PathLike) -> Iterator[None]:
    """Re-raise a failed write under `folder` as an OSError naming the folder, its free space and the cause.

    torch.save on a full disk raises "[enforce fail at inline_container.cc:672] . unexpected
    pos ..." and safetensors "I/O error: ...": neither names a file nor says "disk full".
    """
    try:
        yield
    except Exception as error:
        unnamed_disk_error = isinstance(error, OSError) and error.filename is None and error.errno in _DISK_ERRNOS
        if not (unnamed_disk_error or _WRITE_FAILURE.search(str(error))):
            raise
        free = shutil.disk_usage(folder).free / 2**30
        cause = str(error).strip().splitlines()[0]
        raise OSError(
            f"{folder}: writing failed with {free:.2f} GiB free on its disk (disk full, quota or size limit?): {cause}"
        ) from error
