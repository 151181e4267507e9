"""The 2025 zero-shot tasks: one module per task, each defining ``TASK``, found by listing this package.

Why a registry: a task's facts (our name, the official names, the submission key, its folders in
the 2025 suite and the 2024 layout, whether it has a fast set, how a record is read and how the task
is scored, how many items the official collate step expects of it) used to live in a dozen tables
across five files, and forgetting one was silent. Now each is one `SuiteTask` in its own file; `suite`,
`--tasks`, collate, the check and the report derive their lists from `REGISTRY`. Adding a task is adding a file here (see `blimp.py`, 20 lines).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from babykd.evaluation import ranking

#: How a task's choices become its score: accuracy per UID, Spearman's rho with human ratios,
#: or the reading regressions (surprisal against reading times; `reading.py`).
Scoring = Literal["accuracy", "correlation", "reading"]
#: The predictions the official collate step asserts a submission holds of a task: subtask (lower case, as it
#: compares them) -> count, or one count for a task with a single subtask of whatever name.
Items = Mapping[str, int] | int


@dataclass(frozen=True)
class SuiteTask:
    """Everything the project knows about one 2025 zero-shot task."""

    name: str  # ours: results.json's key (fast results add "_fast") and --tasks' name
    column: int  # the leaderboard's order (the submission file's key order)
    full_folder: str  # inside the 2025 suite (zip or folder)
    fast_folder: str | None  # None: the pipeline has no fast variant
    scoring: Scoring
    #: One JSONL record -> its candidates (None for reading, which is a CSV). Args: file description, record.
    decode: Callable[[str, dict[str, Any]], ranking.Candidates] | None = None
    submission_key: str | None = None  # its key in the submission file; None: not part of a submission
    legacy_folder: str | None = None  # the full set's folder in the 2024 layout (--data-dir), read first
    aliases: tuple[str, ...] = field(default_factory=tuple)  # the official pipeline's names, accepted by --tasks
    #: The score of a model that knows nothing (two candidates: 0.5; a correlation: 0); None when it varies.
    chance: float | None = None
    #: Its final-model predictions in a submission (the released files' line counts); needed with a submission key.
    items: Items | None = field(default=None, hash=False)  # a dict: the spec stays hashable without it
    #: The subtasks each revision's fast metrics must name in a submission; None: not checked by name.
    fast_subtasks: frozenset[str] | None = None

    def __post_init__(self) -> None:
        # Why here: a submission task without counts would pass `--check` with any number of predictions.
        if self.submission_key is not None and self.items is None:
            raise ValueError(f"task {self.name!r}: a task with a submission key must declare its items")

    def folder(self, fast: bool) -> str:
        """Its folder inside the 2025 suite for the fast or the full sets (a full-only task: the full one)."""
        return self.fast_folder if fast and self.fast_folder else self.full_folder


def stem(where: str) -> str:
    """A data file's name without folder and suffix, from its description ("zip:path:line" or a path)."""
    return Path(where.rsplit(":", 1)[-1]).stem


def _discover() -> dict[str, SuiteTask]:
    tasks = [importlib.import_module(f"{__name__}.{info.name}").TASK for info in pkgutil.iter_modules(__path__)]
    names = [task.name for task in tasks]
    if len(set(names)) != len(names):
        raise RuntimeError(f"two task modules in {__name__} define the same task name: {sorted(names)}")
    return {task.name: task for task in sorted(tasks, key=lambda task: (task.column, task.name))}


#: Task name -> its spec, in the leaderboard's column order.
REGISTRY: dict[str, SuiteTask] = _discover()
