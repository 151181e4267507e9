"""Zero-shot scores during training, logged through the trainer (so TensorBoard shows them).

The tasks are read (and subsampled) once, when the callback is built; each
scoring then costs a few batched forward passes. Scores go through
``trainer.log`` under ``eval_<task>`` keys, which the TensorBoard callback
shows as ``eval/<task>``. HF callbacks are not handed the trainer, so give it
with ``trainer=`` or :meth:`EvaluationCallback.attach`::

    EvaluationCallback(tokenizer, ["blimp_filtered"], every_n_steps=500).attach(trainer)
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from babykd.evaluation.scorer import evaluate_model
from babykd.trainer import own_precision
from babykd.evaluation.tasks import Task, load_tasks


class EvaluationCallback(TrainerCallback):
    """Score the model every `every_n_steps` optimizer steps, at epoch ends, and/or with `trainer.evaluate`."""

    def __init__(
        self,
        tokenizer: Any,
        tasks: Sequence[str | os.PathLike | Task] = ("blimp_filtered",),
        data_dir: str | os.PathLike | None = None,
        *,
        every_n_steps: int | None = None,
        each_epoch: bool = True,
        with_trainer_evaluate: bool = False,
        max_items_per_subtask: int | None = 200,
        dtype: str = "fp32",
        batch_tokens: int | None = None,
        trainer: Any = None,
    ) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be positive or None, got {every_n_steps}")
        self.tokenizer = tokenizer
        self.tasks = load_tasks(tasks, data_dir, max_items_per_subtask)
        self.every_n_steps = every_n_steps
        self.each_epoch = each_epoch
        self.with_trainer_evaluate = with_trainer_evaluate
        self.dtype = dtype
        self.batch_tokens = batch_tokens
        self.trainer = trainer
        #: Every scoring so far: {"step": ..., "eval_<task>": score, "eval_<task>_stderr": ...}.
        self.history: list[dict[str, float]] = []
        self._last_step: int | None = None

    def attach(self, trainer: Any) -> "EvaluationCallback":
        """Register with `trainer` and log through it."""
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self.trainer is None:
            raise RuntimeError(
                "EvaluationCallback logs through the trainer: pass trainer= or call callback.attach(trainer)"
            )

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self.every_n_steps and state.global_step % self.every_n_steps == 0:
            self._score(state, kwargs["model"])

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self.each_epoch:
            self._score(state, kwargs["model"])

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self.with_trainer_evaluate:
            self._score(state, kwargs["model"])

    def _score(self, state: TrainerState, model: Any) -> None:
        """Score once per optimizer step (two events at one step do not score twice), on rank 0 only."""
        if state.global_step == self._last_step or not state.is_world_process_zero:
            return
        self._last_step = state.global_step
        with own_precision(model):  # in self.dtype, not in the training's bf16 autocast
            results = evaluate_model(
                model, self.tokenizer, self.tasks, dtype=self.dtype, batch_tokens=self.batch_tokens, progress=False
            )
        metrics: dict[str, float] = {}
        for name, entry in results["tasks"].items():
            metrics[f"eval_{name}"] = entry["score"]
            if entry["stderr"] is not None:
                metrics[f"eval_{name}_stderr"] = entry["stderr"]
        self.history.append({"step": state.global_step, **metrics})
        self.trainer.log(dict(metrics))
