"""Words seen during training, and model revisions saved at word marks (``<run>/revisions/chck_*``).

Why a callback of its own: the challenge measures training by words seen, not
steps, and its age-of-acquisition evaluation reads checkpoints named by words
(``chck_1M`` ...). The count is exact: each chunk carries the number of words
that start in it (:mod:`babykd.data.words`); the collator sums them into one
host int per micro-batch, the trainer hands it to :meth:`WordsSeen.add`, and
each optimizer step closes a sum (all-reduced over processes on a CPU group,
:mod:`babykd.run.host_collective`), so the total is what the optimizer consumed,
across epochs, processes and resumes. Nothing is read from the device: a
revision is saved at the exact step without a host-device sync per step.

The running total and the marks already saved go into every checkpoint's
``trainer_state.json`` (HF's stateful-callback slot), and a resumed run starts
from them. A revision is saved at the first optimizer step at or past each
mark, before that step's resume checkpoint, so a checkpoint never claims a mark
whose folder is not on disk; a run resumed from an earlier checkpoint that
passes a mark again rewrites the same folder atomically (same step, same
weights), so no mark is skipped or duplicated.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ExportableState

from babykd.run.atomic import atomic_directory, atomic_write_json
from babykd.run.host_collective import host_all_reduce
from babykd.rules import REVISIONS_DIR, revision_name, revision_words

logger = logging.getLogger(__name__)

#: Written into each revision folder: its mark, the words actually seen and the step.
REVISION_INFO_FILE = "revision.json"


class WordsSeen(TrainerCallback, ExportableState):
    """Count words consumed by optimizer steps; save the student at each word mark."""

    def __init__(
        self,
        marks: Sequence[int] = (),
        revisions_dir: str | Path | None = None,
        total: int = 0,
        saved_marks: Sequence[int] = (),
    ) -> None:
        if marks and revisions_dir is None:
            raise ValueError("word marks need a revisions_dir to save into")
        self.marks = tuple(sorted(marks))
        self.revisions_dir = Path(revisions_dir) if revisions_dir is not None else None
        self.total = total
        self.saved_marks = set(saved_marks)
        self._pending: int | None = None

    # ------------------------------------------------------------------ counting

    def add(self, words: int) -> None:
        """Add one micro-batch's word count (a host int, from :class:`babykd.data.collator.FixedChunkCollator`)."""
        self._pending = (self._pending or 0) + int(words)

    def _close_step(self, args: TrainingArguments) -> None:
        if self._pending is None:
            return
        step_words, self._pending = self._pending, None
        if args.world_size > 1:  # each process saw its own part of the global batch
            (step_words,) = host_all_reduce([step_words])
        self.total += step_words

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._close_step(args)
        due = [m for m in self.marks if m <= self.total and m not in self.saved_marks]
        if due and state.is_world_process_zero:
            for mark in due:
                self._save_revision(mark, state.global_step, kwargs["model"], kwargs.get("processing_class"))
        self.saved_marks.update(due)

    def _save_revision(self, mark: int, step: int, model: Any, tokenizer: Any) -> None:
        assert self.revisions_dir is not None
        target = self.revisions_dir / revision_name(mark)
        with atomic_directory(target) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            atomic_write_json(tmp / REVISION_INFO_FILE, {"mark": mark, "words_seen": self.total, "step": step})
        logger.info("saved %s (%s words seen, step %d)", target, f"{self.total:,}", step)

    # ------------------------------------------------------------------ checkpoint state

    def state(self) -> dict[str, Any]:
        return {"args": {"total": self.total, "saved_marks": sorted(self.saved_marks)}, "attributes": {}}

    def resumed(self, saved_state: TrainerState | None) -> "WordsSeen":
        """Continue the count and the saved marks of a checkpoint's state (no-op without one)."""
        if saved_state is not None:
            saved = saved_state.stateful_callbacks.get(type(self).__name__, {}).get("args", {})
            self.total = int(saved.get("total", 0))
            self.saved_marks = set(saved.get("saved_marks", ()))
        return self


def saved_revisions(run_dir: str | Path) -> list[Path]:
    """The revision folders of a run, in order of words seen."""
    root = Path(run_dir) / REVISIONS_DIR
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        if child.is_dir() and child.name.startswith("chck_") and (child / REVISION_INFO_FILE).is_file():
            found.append((revision_words(child.name), child))
    return [path for _, path in sorted(found)]
