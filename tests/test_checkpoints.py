"""Checkpoint rotation: the newest complete checkpoint survives until a newer one is complete.

HF rotates (`save_total_limit`) inside its own save, before our completion
marker is written; with a limit of 1 a kill in that window used to leave no
resumable checkpoint at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from babykd import trainer as trainer_module
from babykd.run.checkpoints import COMPLETE_MARKER, last_complete_checkpoint
from babykd.training import is_finished, run_training

LLAMA = "config/runs/tiny/pretrain-tiny-llama.yaml"


class KilledBeforeMarker(Exception):
    """Stands for a SIGKILL between HF's save of a checkpoint and our completion marker."""


def test_kill_before_the_completion_marker_keeps_the_previous_checkpoint(tiny_config, monkeypatch) -> None:
    config = tiny_config(LLAMA, "rotation-window", "training.max_steps=6", "training.save_steps=2",
                         "training.save_total_limit=1")
    checkpoints = config.output.run_dir / "checkpoints"
    write = trainer_module.atomic_write_text

    def dies_at_step_4(path: Path, text: str) -> None:
        if Path(path).name == COMPLETE_MARKER and Path(path).parent.name == "checkpoint-4":
            raise KilledBeforeMarker
        write(path, text)

    monkeypatch.setattr(trainer_module, "atomic_write_text", dies_at_step_4)
    with pytest.raises(KilledBeforeMarker):
        run_training(config)
    assert (checkpoints / "checkpoint-4").is_dir(), "HF's part of the save ran"
    last = last_complete_checkpoint(checkpoints)
    assert last is not None and Path(last).name == "checkpoint-2"

    monkeypatch.undo()
    resumed = run_training(config, resume=True)
    assert is_finished(resumed.run_dir)
    # rotation still applies, once the newer checkpoint is complete (the stale checkpoint-4 included)
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-6"]
