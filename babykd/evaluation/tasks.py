"""Zero-shot minimal-pair tasks: a registry of the BabyLM sets and a JSONL reader.

A task is a directory of JSONL files, one per subtask. Each line is one item
with a correct and a wrong choice, in one of the two layouts the official
BabyLM 2024 pipeline uses:

* BLiMP-style pairs ``{"sentence_good": ..., "sentence_bad": ...}``: empty context;
* EWoK-style ``{"Context1": ..., "Target1": ..., "Target2": ...}``: ``Target1``
  is correct given ``Context1``.

The three official sets are found by name under a data directory (their
folders are the task registry's `legacy_folder`s, `babykd.evaluation.suite_tasks`);
any other directory of such files is a user task. Bad input fails loudly with
the file and line, because a silently skipped line changes a published number.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from babykd import REPO_ROOT
from babykd.errors import UserError

#: The 2024 protocol's tasks, in the order the seeds' tables use (each one's folder: `legacy_folders`).
DEFAULT_TASKS: tuple[str, ...] = ("blimp_supplement", "blimp_filtered", "ewok_filtered")

#: JSON fields of the two item layouts: (context field or None, correct field, wrong field).
_LAYOUTS: tuple[tuple[str | None, str, str], ...] = (
    (None, "sentence_good", "sentence_bad"),
    ("Context1", "Target1", "Target2"),
)


def legacy_folders() -> dict[str, str]:
    """Official task name -> its folder under the evaluation data directory (BabyLM 2024 layout), from the registry.

    Imported when called, not with this module: the registry's task modules import the ranking rules, which
    import this module (through the scorer).
    """
    from babykd.evaluation.suite_tasks import REGISTRY

    return {t.name: t.legacy_folder for t in REGISTRY.values() if t.legacy_folder is not None}


def __getattr__(name: str) -> dict[str, str]:
    """``TASK_FOLDERS``, the name the commands and the config import: `legacy_folders` (PEP 562)."""
    if name == "TASK_FOLDERS":
        return legacy_folders()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TaskDataError(UserError, ValueError):
    """Evaluation data is missing or malformed; the message names the file (and line)."""


@dataclass(frozen=True)
class Item:
    """One minimal pair: `correct` should be more likely than `wrong` after `context`."""

    context: str
    correct: str
    wrong: str
    #: file:line the item was read from, for errors about it (not part of its identity).
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class Subtask:
    name: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Task:
    """A named set of subtasks; `sha256` covers every file read (even when subsampled)."""

    name: str
    path: Path
    subtasks: tuple[Subtask, ...]
    sha256: str
    max_items_per_subtask: int | None = None

    @property
    def n_items(self) -> int:
        return sum(len(sub.items) for sub in self.subtasks)


def default_data_dir() -> Path:
    """`$BABYKD_EVAL_DATA`, else the shared `evaluation_data/` beside the repository."""
    if os.environ.get("BABYKD_EVAL_DATA"):
        return Path(os.environ["BABYKD_EVAL_DATA"])
    shared = Path(os.environ.get("BABYKD_SHARED", REPO_ROOT.parent / "shared"))
    return shared / "evaluation_data"


def flat_folder_hint(root: Path) -> str:
    """For a --data-dir that holds JSONL files itself (e.g. the original 67-file BLiMP): how to score it."""
    if root.is_dir() and any(root.glob("*.jsonl")):
        return f"; {root} is a flat folder of JSONL files: score it as a task of its own with --tasks {root}"
    return ""


def resolve_task_dir(task: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> tuple[str, Path]:
    """(task name, directory) for an official task name or a user's directory path."""
    task, folders = str(task), legacy_folders()
    if task in folders:
        root = Path(data_dir) if data_dir is not None else default_data_dir()
        folder = root / folders[task]
        if not folder.is_dir():
            raise TaskDataError(
                f"task {task!r}: folder {folder} not found; pass --data-dir (or set BABYKD_EVAL_DATA) "
                f"to a directory holding {', '.join(sorted(set(folders.values())))}/" + flat_folder_hint(root)
            )
        return task, folder
    path = Path(task).expanduser()
    if path.is_dir():
        return path.resolve().name, path
    raise TaskDataError(
        f"unknown task {task!r}: not one of {', '.join(folders)} and not a directory of JSONL files"
    )


def parse_json_object(line: str, where: str) -> dict:
    """One JSONL line as a JSON object; errors name ``where`` (file and line)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TaskDataError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise TaskDataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def _parse_line(line: str, where: str, layout: tuple[str | None, str, str] | None) -> tuple[Item, tuple]:
    """Parse one JSONL line; the file's layout is fixed by its first item."""
    record = parse_json_object(line, where)
    if layout is None:
        layout = next((lay for lay in _LAYOUTS if lay[1] in record), None)
        if layout is None:
            raise TaskDataError(
                f"{where}: no item fields; expected sentence_good/sentence_bad or Context1/Target1/Target2"
            )
    values = []
    for key in layout:
        if key is None:
            values.append("")
            continue
        if key not in record:
            raise TaskDataError(f"{where}: missing field {key!r}")
        if not isinstance(record[key], str):
            raise TaskDataError(f"{where}: field {key!r} must be a string, got {type(record[key]).__name__}")
        values.append(record[key])
    return Item(*values, where=where), layout


def parse_subtask(path: Path, data: bytes) -> Subtask:
    """Parse the bytes of one JSONL file into a subtask named by the file stem."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaskDataError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    items: list[Item] = []
    layout = None
    # split("\n"), not splitlines(): a sentence may hold "\u2028" or other line breaks of its own.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            item, layout = _parse_line(line, f"{path}:{lineno}", layout)
            items.append(item)
    if not items:
        raise TaskDataError(f"{path}: no items")
    return Subtask(path.stem, tuple(items))


def subsample(items: Sequence[Item], limit: int | None) -> tuple[Item, ...]:
    """At most `limit` items, evenly spaced so every template of a subtask stays represented."""
    if limit is None or len(items) <= limit:
        return tuple(items)
    if limit < 1:
        raise ValueError(f"max_items_per_subtask must be positive, got {limit}")
    return tuple(items[i * len(items) // limit] for i in range(limit))


def load_task(
    task: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    max_items_per_subtask: int | None = None,
) -> Task:
    """Load an official task by name, or a user's directory of JSONL files."""
    name, folder = resolve_task_dir(task, data_dir)
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise TaskDataError(f"task {name!r}: no *.jsonl files in {folder}")
    digest = hashlib.sha256()
    subtasks = []
    for path in files:
        data = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(data).digest())
        sub = parse_subtask(path, data)
        subtasks.append(Subtask(sub.name, subsample(sub.items, max_items_per_subtask)))
    return Task(name, folder, tuple(subtasks), digest.hexdigest(), max_items_per_subtask)


def load_tasks(
    tasks: Iterable[str | os.PathLike | Task],
    data_dir: str | os.PathLike | None = None,
    max_items_per_subtask: int | None = None,
) -> list[Task]:
    """Load several tasks (already loaded `Task`s pass through); names must be unique."""
    loaded = [
        t if isinstance(t, Task) else load_task(t, data_dir, max_items_per_subtask) for t in tasks
    ]
    names = [t.name for t in loaded]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise TaskDataError(f"task names must be unique, got {', '.join(duplicated)} more than once")
    return loaded
