"""Stop a run whose loss or weights stop being finite, before a checkpoint or the final model keeps them.

Why: a NaN loss poisons every later step, yet the Trainer keeps going and the run
would end "finished" with an all-NaN model and rotate the last good checkpoints
away. The checks cost no extra GPU synchronisation: the logged loss and gradient
norm are already host numbers (HF synchronises at logging steps), and the weights
are checked only at steps that save a checkpoint.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from babykd.errors import UserError

#: Logged numbers that are NaN/inf only when training has diverged.
WATCHED_LOGS = ("loss", "grad_norm", "train_loss")


class NonFiniteError(UserError, RuntimeError):
    """Training produced NaN/inf; the run stopped without saving the damaged state."""


def all_finite(parameters: Iterable[torch.Tensor]) -> bool:
    """Whether every value of every tensor is finite (one device sync for all of them)."""
    flags = [torch.isfinite(p.detach()).all() for p in parameters]
    return bool(torch.stack(flags).all()) if flags else True


class DivergenceGuard(TrainerCallback):
    """Raise :class:`NonFiniteError` at the first non-finite logged loss or gradient norm,
    and before a checkpoint of non-finite weights is written. `describe_last_checkpoint` says
    where the last good checkpoint is (called only when the error is raised)."""

    def __init__(self, describe_last_checkpoint: Callable[[], str]) -> None:
        self.describe_last_checkpoint = describe_last_checkpoint

    def stop(self, what: str, step: int) -> None:
        """Raise the error for `what` went wrong at `step`."""
        raise NonFiniteError(
            f"{what} at step {step}: training stopped, nothing of this run after the last checkpoint "
            f"is saved ({self.describe_last_checkpoint()}); lower training.lr or check the data"
        )

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        for key in WATCHED_LOGS:
            value = (logs or {}).get(key)
            if isinstance(value, float) and not math.isfinite(value):
                self.stop(f"the training {key} became {value}", state.global_step)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    model: torch.nn.Module | None = None, **kwargs: Any) -> None:
        # Added after every callback that may ask for a save (preemption), so `should_save` is final here.
        if control.should_save and model is not None and not all_finite(model.parameters()):
            self.stop("the weights became NaN/inf", state.global_step)
