"""Atomic writes: readers see the old or the whole new content; a failed write leaves nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from babykd import atomic
from babykd.atomic import atomic_directory, atomic_write_json


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
