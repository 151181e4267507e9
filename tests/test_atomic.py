"""Atomic writes: readers see the old or the whole new content; a failed write leaves nothing."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
from pathlib import Path
from typing import BinaryIO, Iterator

import pytest
from transformers import PreTrainedTokenizerBase

from babykd import evaluate
from babykd.run import atomic
from babykd.run.atomic import atomic_directory, atomic_write_bytes, atomic_write_json, remove_leftovers
from babykd.errors import UserError
from test_evaluation_cli import data_dir, save_model, tokenizer  # noqa: F401  (fixtures: a tiny model and its data)


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


class FullDisk:
    """An open file on a disk with room for half of what is written: the write then fails as the kernel's does."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def __enter__(self) -> "FullDisk":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.handle.close()

    def write(self, data: bytes) -> int:
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fill_the_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every atomic write from now on runs out of space half-way."""
    real_fdopen = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))


def test_a_full_disk_is_one_clear_error_and_keeps_the_file_written_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "eval" / "results.json"
    path.parent.mkdir()
    path.write_text('{"score": 0.5}\n')
    fill_the_disk(monkeypatch)
    with pytest.raises(UserError) as error:
        atomic_write_json(path, {"score": 0.75, "tasks": list(range(100))})
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "disk is full" in message and "ENOSPC" in message, message
    assert "\n" not in message and isinstance(error.value, OSError) and error.value.errno == errno.ENOSPC
    assert path.read_text() == '{"score": 0.5}\n'
    assert os.listdir(path.parent) == ["results.json"]  # the half-written temporary file is gone


def test_a_full_disk_ends_the_evaluation_command_with_one_line(  # noqa: F811
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = save_model(tmp_path / "model", tokenizer, seed=0)
    argv = [str(model), "--tasks", "blimp_filtered", "--data-dir", str(data_dir), "--no-progress", "--device", "cpu"]
    evaluate.main(argv)
    written = {path: path.read_bytes() for path in (model / "eval").rglob("*") if path.is_file()}
    assert model / "eval" / "results.json" in written
    fill_the_disk(monkeypatch)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(argv)
    message = str(exit_.value)
    assert message.startswith("error: ") and "disk is full" in message and "\n" not in message, message
    assert any(message.startswith(f"error: {path}: ") for path in written), message  # the file it was writing
    assert "Traceback" not in capsys.readouterr().err
    assert {path: path.read_bytes() for path in (model / "eval").rglob("*") if path.is_file()} == written
