"""A run folder holds one run: concurrent runs are refused, a rerun changes nothing until it
really starts, a diverged run stops with its last good checkpoint and never looks finished, and
the entry points report bad input in one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from babykd import REPO_ROOT
from babykd.cli import train_main
from babykd.divergence import NonFiniteError
from babykd.run_lock import FolderInUseError, folder_lock
from babykd.trainer import COMPLETE_MARKER, last_complete_checkpoint
from babykd.training import PROVENANCE_FILE, is_finished, run_training

LLAMA = "config/runs/tiny/pretrain-tiny-llama.yaml"
SHORT = ("training.max_steps=4", "training.save_steps=2", "training.logging_steps=1")


def test_second_run_into_a_folder_is_refused_naming_the_holder(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(LLAMA, "busy", *SHORT)
    holder = subprocess.Popen(  # another job training into the same folder
        [sys.executable, "-c", "import sys, time; from babykd.run_lock import folder_lock\n"
         "with folder_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)", str(config.output.run_dir)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderInUseError) as refused:
            run_training(config)
        message = str(refused.value)
        assert str(config.output.run_dir) in message
        assert f"host {socket.gethostname()}, pid {holder.pid}, started 20" in message
        assert not (config.output.run_dir / "run_config.yaml").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # the OS drops the lock of a killed holder
        holder.wait()
    with folder_lock(config.output.run_dir):
        pass


class StopAtStep(TrainerCallback):
    """Fail the run at a given step (a crash, an OOM, a kill that is not a requeue signal)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise KeyboardInterrupt("killed")


def test_rerun_leaves_a_finished_run_untouched_until_it_really_starts(tiny_config, tmp_path: Path) -> None:
    first = run_training(tiny_config(LLAMA, "rerun", *SHORT))
    run_dir = first.run_dir
    before = {name: (run_dir / name).read_bytes() for name in ("run_config.yaml", PROVENANCE_FILE, "model.safetensors")}

    # a rerun with another config whose data check fails changes nothing: still finished, with its own config
    with pytest.raises(FileNotFoundError):
        run_training(tiny_config(LLAMA, "rerun", *SHORT, f"data.corpus={tmp_path / 'moved'}"))
    assert {name: (run_dir / name).read_bytes() for name in before} == before

    # a rerun that starts and dies: not finished, and the config on disk is the new run's
    changed = tiny_config(LLAMA, "rerun", *SHORT, "training.lr=1e-3")
    with pytest.raises(KeyboardInterrupt):
        run_training(changed, callbacks=[StopAtStep(3)])
    assert not is_finished(run_dir)
    assert "lr: 0.001" in (run_dir / "run_config.yaml").read_text()
    # only the new run's checkpoint is there to resume from, not the earlier run's checkpoint-4
    assert last_complete_checkpoint(run_dir / "checkpoints").endswith("checkpoint-2")
    assert not (run_dir / "checkpoints" / "checkpoint-4").exists()


class PoisonAtStep(TrainerCallback):
    """Put a NaN into the weights after a step's update, as a diverging optimiser does."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step == self.step:
            next(model.parameters()).data.fill_(float("nan"))


@pytest.mark.parametrize(("save_steps", "caught"), [(2, "the weights became NaN/inf at step 4"),
                                                    (1000, "the training loss became nan at step 4")])
def test_non_finite_training_stops_the_run_and_keeps_the_last_good_checkpoint(
    tiny_config, save_steps: int, caught: str
) -> None:
    config = tiny_config(LLAMA, f"diverged-{save_steps}", "training.max_steps=8", f"training.save_steps={save_steps}",
                         "training.logging_steps=1")
    with pytest.raises(NonFiniteError) as stopped:
        run_training(config, callbacks=[PoisonAtStep(3)])
    checkpoints = config.output.run_dir / "checkpoints"
    last = last_complete_checkpoint(checkpoints)
    assert str(stopped.value).startswith(caught)
    assert (f"--resume continues from {last}" if last else "no complete checkpoint yet") in str(stopped.value)
    # no checkpoint of the poisoned weights: the newest is the last good one (step 2), complete
    assert [p.name for p in checkpoints.glob("checkpoint-*")] == (["checkpoint-2"] if save_steps == 2 else [])
    assert not is_finished(config.output.run_dir) and not (config.output.run_dir / "model.safetensors").exists()
