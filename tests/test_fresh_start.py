"""A fresh start (`--fresh`) checks at once what its clean-up will remove, instead of failing after the set-up."""

from __future__ import annotations

import shutil
import time

import pytest

from babykd import training
from babykd.run.start import RunFolderError
from babykd.training import PROVENANCE_FILE, run_training

LLAMA = "config/runs/tiny/pretrain-tiny-llama.yaml"


def test_a_fresh_start_over_a_symlinked_revisions_folder_is_refused_before_any_work(tiny_config, tmp_path,
                                                                                     monkeypatch):
    config = tiny_config(LLAMA, "linked", "training.max_steps=2", "training.save_steps=1")
    run_dir = run_training(config).run_dir
    elsewhere = tmp_path / "another-runs-revisions"
    shutil.copytree(run_dir / "revisions", elsewhere) if (run_dir / "revisions").is_dir() else elsewhere.mkdir()
    (elsewhere / "chck_1M").mkdir(exist_ok=True)
    shutil.rmtree(run_dir / "revisions", ignore_errors=True)
    (run_dir / "revisions").symlink_to(elsewhere)
    before = sorted(p.name for p in elsewhere.iterdir())
    built = []
    monkeypatch.setattr(training, "load_data", lambda *a, **k: built.append(time.time()))  # the minutes of set-up
    with pytest.raises(RunFolderError, match=r"revisions is a symbolic link \(to .*another-runs-revisions\): "
                                             r"a fresh start deletes .*remove the link"):
        run_training(config, fresh=True)
    assert built == []  # refused before the data (and teachers, model) were built
    assert sorted(p.name for p in elsewhere.iterdir()) == before and (run_dir / PROVENANCE_FILE).is_file()
