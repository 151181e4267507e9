"""Atomic writes: readers see the old or the whole new content; a failed write leaves nothing."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
from pathlib import Path
from typing import Iterator

import pytest

from babykd import atomic
from babykd.atomic import atomic_directory, atomic_write_bytes, atomic_write_json, remove_leftovers


def test_failed_directory_write_leaves_no_trace(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "model.safetensors").write_bytes(b"partial")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []


def test_concurrent_writer_that_finished_first_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "tokenizer"
    with atomic_directory(target) as ours:
        (ours / "tokenizer.json").write_text("ours")
        # another job renames its complete directory into place after our existence check
        real_replace = os.replace

        def racing_replace(src: str, dst: str) -> None:
            if Path(dst) == target and not target.exists():
                target.mkdir()
                (target / "tokenizer.json").write_text("theirs")
            real_replace(src, dst)

        monkeypatch.setattr(atomic.os, "replace", racing_replace)
    assert (target / "tokenizer.json").read_text() == "theirs"
    assert sorted(os.listdir(tmp_path)) == ["tokenizer"]


def test_json_written_with_normal_permissions(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    atomic_write_json(path, {"score": 0.5})
    assert path.read_text().strip().startswith("{") and path.stat().st_mode & 0o044


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Make writes past `limit` bytes fail in this process as a full disk does (EFBIG instead of ENOSPC)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills us instead of failing the write
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_failed_write_names_the_file_and_the_cause(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "train-eos.bin"
    with pytest.raises(OSError) as error, file_size_limit(4096):
        atomic_write_bytes(target, b"x" * 16384)
    assert error.value.errno == errno.EFBIG and error.value.filename == str(target)
    assert str(target) in str(error.value) and "too large" in str(error.value)
    assert os.listdir(target.parent) == []  # no temporary file left behind


def test_leftovers_of_interrupted_writes_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".train-eos.bin.abc123.tmp").write_bytes(b"partial")
    (tmp_path / ".tokenizer.xyz.tmp").mkdir()
    (tmp_path / ".tokenizer.xyz.tmp" / "tokenizer.json").write_text("{")
    kept = [tmp_path / "train-eos.bin", tmp_path / ".lock", tmp_path / "notes.tmp"]
    for path in kept:
        path.write_bytes(b"")
    assert len(remove_leftovers(tmp_path)) == 2
    assert sorted(tmp_path.iterdir()) == sorted(kept)
