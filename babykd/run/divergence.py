"""Stop a run whose loss or weights stop being finite, before a checkpoint or the final model keeps them.

Why: a NaN loss poisons every later step, yet the Trainer keeps going and the run
would end "finished" with an all-NaN model and rotate the last good checkpoints
away. The checks cost no extra GPU synchronisation: the logged loss and gradient
norm are already host numbers (HF synchronises at logging steps), and the weights
are checked only at steps that save a checkpoint. A stopped run leaves why and at which
step in its folder (:data:`STOPPED_FILE`), so a summary of many runs says it diverged
rather than that it is still to be run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from babykd.run.atomic import atomic_write_json
from babykd.errors import UserError

#: Logged numbers that are NaN/inf only when training has diverged.
WATCHED_LOGS = ("loss", "grad_norm", "train_loss")
#: Left in the run folder by a run the guard stopped: {"step", "reason"}; removed when the run starts again.
STOPPED_FILE = "stopped.json"


class NonFiniteError(UserError, RuntimeError):
    """Training produced NaN/inf; the run stopped without saving the damaged state."""


def all_finite(parameters: Iterable[torch.Tensor]) -> bool:
    """Whether every value of every tensor is finite (one device sync for all of them)."""
    flags = [torch.isfinite(p.detach()).all() for p in parameters]
    return bool(torch.stack(flags).all()) if flags else True


def record_stop(run_dir: Path, step: int, reason: str) -> None:
    """Leave in `run_dir` that the run stopped at `step` because `reason` (see :data:`STOPPED_FILE`)."""
    atomic_write_json(run_dir / STOPPED_FILE, {"step": step, "reason": reason})


def read_stop(run_dir: Path) -> dict[str, Any] | None:
    """Why and at which step the run in `run_dir` was stopped, or None when it was not."""
    path = run_dir / STOPPED_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


class DivergenceGuard(TrainerCallback):
    """Raise :class:`NonFiniteError` at the first non-finite logged loss or gradient norm,
    and before a checkpoint of non-finite weights is written; the main process records the stop
    in `run_dir`. `describe_last_checkpoint` says where the last good checkpoint is (called only
    when the error is raised)."""

    def __init__(self, run_dir: Path, describe_last_checkpoint: Callable[[], str]) -> None:
        self.run_dir = run_dir
        self.describe_last_checkpoint = describe_last_checkpoint

    def stop(self, what: str, state: TrainerState) -> None:
        """Record and raise the error for `what` went wrong at the state's step."""
        if state.is_world_process_zero:
            record_stop(self.run_dir, state.global_step, what)
        raise NonFiniteError(
            f"{what} at step {state.global_step}: training stopped, nothing of this run after the last checkpoint "
            f"is saved ({self.describe_last_checkpoint()}); lower training.lr or check the data"
        )

    def check_final_weights(self, model: torch.nn.Module, state: TrainerState) -> None:
        """Stop a run whose weights diverged after its last logged loss, before they are saved as its model."""
        if not all_finite(model.parameters()):
            self.stop("the final weights became NaN/inf", state)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        for key in WATCHED_LOGS:
            value = (logs or {}).get(key)
            if isinstance(value, float) and not math.isfinite(value):
                self.stop(f"the training {key} became {value}", state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    model: torch.nn.Module | None = None, **kwargs: Any) -> None:
        # Added after every callback that may ask for a save (preemption), so `should_save` is final here.
        if control.should_save and model is not None and not all_finite(model.parameters()):
            self.stop("the weights became NaN/inf", state)
