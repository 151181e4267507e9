"""The BabyLM 2025/2026 zero-shot suite: which data each task reads and how its score is formed.

Full sets of BLiMP, supplement and EWoK come from the 2024-layout folder
(`tasks.default_data_dir`, byte-identical to the 2025 release); everything
else, and the fast subsets (``--fast``), from the 2025 zip or folder
(`suite_data.SuiteData`). Task names are ours (results.json); each maps to the
key the official collate step writes into the submission file.

A task whose data is absent raises `MissingEvalData` naming the file; `--tasks
all` collects these and reports them by name next to the scores. A task the
model cannot score (an input longer than its position table, a choice the
tokenizer cannot encode) is an error of that task alone: `evaluate_suite`
scores the others (``keep_going``).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from babykd.evaluation import ranking, reading
from babykd.evaluation.scorer import split_sizes
from babykd.evaluation.suite_data import MissingEvalData, SuiteData
from babykd.evaluation.suite_tasks import REGISTRY, stem
from babykd.evaluation.tasks import TaskDataError, default_data_dir, flat_folder_hint, parse_json_object, subsample
from babykd.models import SUITE_LONGEST_INPUT, position_limit

#: Our task name -> the key of the official submission file (collate_preds.py); all derived from the registry.
SUBMISSION_KEYS: dict[str, str] = {t.name: t.submission_key for t in REGISTRY.values() if t.submission_key}
#: The official pipeline's task names (its README's commands) -> ours, accepted by ``--tasks``.
OFFICIAL_TASK_NAMES: dict[str, str] = {alias: t.name for t in REGISTRY.values() for alias in t.aliases}
#: The zero-shot tasks of the 2025 suite, in the leaderboard's column order.
SUITE_TASKS: tuple[str, ...] = tuple(REGISTRY)
#: Tasks the pipeline has no fast variant of.
FULL_ONLY: frozenset[str] = frozenset(t.name for t in REGISTRY.values() if t.fast_folder is None)
#: Entity-tracking splits, as the pipeline averages them.
ENTITY_SPLITS: tuple[str, ...] = ("regular", "ambiref", "move_contents")


@dataclass(frozen=True)
class Source:
    """Where a task's files are: a folder of the 2024 layout or a folder inside the 2025 suite."""

    fast: bool
    data_dir: Path | None
    suite: SuiteData | None
    #: Why `suite` is None (the path looked for), for the error of a task that needs it.
    suite_error: str = ""

    def folder(self, task: str) -> list[tuple[str, bytes]]:
        """(description, bytes) of every .jsonl file of `task` (a name or a user's folder), sorted by name."""
        if task not in REGISTRY:
            files = sorted(Path(task).glob("*.jsonl"))
            if not files:
                raise MissingEvalData(f"task {task!r}: no *.jsonl files in {task}")
            return [(str(f), f.read_bytes()) for f in files]
        spec = REGISTRY[task]
        rel = spec.folder(self.fast)
        if not self.fast and spec.legacy_folder is not None:
            root = self.data_dir or default_data_dir()
            folder = root / spec.legacy_folder
            files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
            if files:
                return [(str(f), f.read_bytes()) for f in files]
            if self.suite is None or not self.suite.list(rel):
                raise MissingEvalData(
                    f"task {task!r}: no *.jsonl files in {folder} (pass --data-dir)" + flat_folder_hint(root)
                )
        suite = self.require_suite()
        files = [p for p in suite.list(rel) if p.endswith(".jsonl")]
        if not files:
            raise MissingEvalData(f"task {task!r}: no {rel}/*.jsonl in {suite.source}")
        return [(suite.describe(p), suite.read_bytes(p)) for p in files]

    def reading_csv(self) -> tuple[str, bytes]:
        suite = self.require_suite()
        rel = f"{REGISTRY['reading'].folder(self.fast)}/reading_data.csv"
        return suite.describe(rel), suite.read_bytes(rel)

    def require_suite(self) -> SuiteData:
        if self.suite is None:
            raise MissingEvalData(self.suite_error or "no BabyLM 2025 evaluation data given (pass --suite-data)")
        return self.suite


def _records(where: str, data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(file:line, JSON object) of each item of a JSONL file; errors name the file and line."""
    out = []
    for lineno, line in enumerate(data.decode("utf-8").split("\n"), start=1):
        if line.strip():
            out.append((f"{where}:{lineno}", parse_json_object(line, f"{where}:{lineno}")))
    if not out:
        raise TaskDataError(f"{where}: no items")
    return out


def _decode(task: str, where: str, record: dict[str, Any]) -> ranking.Candidates:
    """One record -> Candidates, by the task's reader (the pipeline's read_files.py)."""
    if task not in REGISTRY:  # a user's folder: BLiMP-style pairs or EWoK-style items
        task = "blimp_filtered" if "sentence_good" in record else "ewok_filtered"
    return REGISTRY[task].decode(where, record)


def load_candidates(task: str, source: Source, max_items_per_subtask: int | None = None) -> tuple[list[ranking.Candidates], str]:
    """(items, sha256 of the files read) of a ranking task; subsets are evenly spaced per file."""
    located, sha = _located_candidates(task, source, max_items_per_subtask)
    return [item for _, item in located], sha


def _located_candidates(
    task: str, source: Source, max_items_per_subtask: int | None
) -> tuple[list[tuple[str, ranking.Candidates]], str]:
    """(file:line, item) of a ranking task, and the files' sha256 (`load_candidates`, with where each item is)."""
    located: list[tuple[str, ranking.Candidates]] = []
    files = source.folder(task)
    for where, data in files:
        decoded = []
        for line, record in _records(where, data):
            try:
                decoded.append((line, _decode(task, where, record)))
            except (KeyError, TypeError, ValueError) as exc:
                raise TaskDataError(f"{line}: {type(exc).__name__} {exc}") from None
        located.extend(subsample(decoded, max_items_per_subtask))
    return located, _files_digest(files)


def _files_digest(files: Sequence[tuple[str, bytes]]) -> str:
    """The sha256 a ranking task's entry records for its files (whatever subset of their items was scored)."""
    digest = hashlib.sha256()
    for where, data in files:
        digest.update(stem(where).encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def task_data_sha256(task: str, source: Source) -> str:
    """The data fingerprint `score_task` records for `task`, without scoring it (the results store compares them)."""
    if task in REGISTRY and REGISTRY[task].scoring == "reading":
        return hashlib.sha256(source.reading_csv()[1]).hexdigest()
    return _files_digest(source.folder(task))


class InputTooLong(ValueError):
    """A task holds an input longer than the model's position table; the message names file:line."""


def check_positions(model: torch.nn.Module, tokenizer: Any, located: Sequence[tuple[str, ranking.Candidates]]) -> None:
    """Refuse a task whose longest input exceeds a learned position table, before any forward pass.

    Why up front: past the table GPT-2 raises IndexError on CPU and a device-side assert on CUDA,
    which poisons the CUDA context, so every later task of the run would fail too.
    """
    config = getattr(model, "config", None)
    limit = position_limit(config) if config is not None else None
    if limit is None or not located:
        return
    items = [item for _, item in located]
    # The requests scoring runs (cached by `request_cache`, so scoring does not encode them again).
    requests = ranking.candidate_requests(tokenizer, items)
    groups = split_sizes(requests, [len(item.sentences) for item in items])
    longest = [max(len(r.tokens) - 1 for r in group) for group in groups]  # the input is tokens[:-1]
    over = [n for n in longest if n > limit]
    if over:
        where = located[int(np.argmax(longest))][0]
        raise InputTooLong(
            f"{where}: an input of {max(longest)} tokens exceeds the model's {limit} positions "
            f"({len(over)} of {len(located)} items do); a model needs model.max_position_embeddings >= "
            f"{SUITE_LONGEST_INPUT} for the whole 2025 suite"
        )


def _accuracy_entry(task: str, items: Sequence[ranking.Candidates], scores: list[np.ndarray]) -> tuple[dict[str, Any], dict]:
    chosen = ranking.choices(scores)
    by_uid = ranking.accuracy_by_uid(items, chosen)
    accs = {uid: e["acc"] for uid, e in by_uid.items()}
    entry: dict[str, Any] = {
        "metric": "accuracy",
        "score": float(np.mean(list(accs.values()))),
        "ties": int(sum(np.sum(s == s.max()) > 1 for s in scores)),
        "subtasks": by_uid,
    }
    if task == "entity_tracking":  # mean over numops within each split, then over splits (run.py)
        splits = {s: [a for uid, a in accs.items() if uid.startswith(s)] for s in ENTITY_SPLITS}
        split_means = {s: float(np.mean(v)) for s, v in splits.items() if v}
        entry["splits"] = split_means
        entry["score_mean_over_subtasks"] = entry["score"]  # what calculate_results_from_pred.py averages
        entry["score"] = float(np.mean(list(split_means.values())))
    return entry, ranking.predictions(items, chosen)


def score_task(
    task: str, model: torch.nn.Module, tokenizer: Any, source: Source, *, max_items_per_subtask: int | None = None, **kwargs: Any
) -> tuple[dict[str, Any], dict]:
    """(results entry, official predictions.json content) of one 2025 task."""
    if source.fast and task in FULL_ONLY:
        raise MissingEvalData(f"task {task!r} has no fast variant in the 2025 pipeline")
    scoring = REGISTRY[task].scoring if task in REGISTRY else "accuracy"
    if scoring == "reading":
        where, data = source.reading_csv()
        rows = reading.parse_reading_csv(data, where)
        pred, prev_pred = reading.score_reading(model, tokenizer, rows, **kwargs)
        entry = {"metric": "r2_gain", **reading.reading_scores(rows, pred, prev_pred), "n_items": len(rows)}
        entry["score"] = entry["eye_tracking"]
        return {**entry, "path": where, "data_sha256": hashlib.sha256(data).hexdigest()}, reading.reading_predictions(pred, prev_pred)
    located, sha = _located_candidates(task, source, max_items_per_subtask)
    check_positions(model, tokenizer, located)
    items = [item for _, item in located]
    scores = ranking.score_candidates(model, tokenizer, items, **kwargs)
    if scoring == "correlation":
        rho, prefs = ranking.wug_correlation(items, scores)
        entry: dict[str, Any] = {"metric": "spearman", "score": rho, "subtasks": {items[0].uid: {"spearman": rho, "n": len(items)}}}
        preds = ranking.predictions(items, ranking.choices(scores), prefs)
    else:
        entry, preds = _accuracy_entry(task, items, scores)
    entry.update(n_items=len(items), data_sha256=sha, max_items_per_subtask=max_items_per_subtask)
    return entry, preds


def result_name(task: str, fast: bool) -> str:
    """The results.json key (a user folder's name); fast scores are never mixed up with full ones."""
    name = task if task in REGISTRY else Path(task).resolve().name
    return f"{name}_fast" if fast else name


def evaluate_suite(
    model: torch.nn.Module,
    tokenizer: Any,
    tasks: Sequence[str],
    source: Source,
    *,
    max_items_per_subtask: int | None = None,
    dtype: str = "fp32",
    batch_tokens: int | None = None,
    progress: bool = True,
    keep_going: bool = False,
) -> tuple[dict[str, Any], dict[str, dict], dict[str, Exception]]:
    """Score `tasks`; returns (entries by result name, predictions by task, task -> why it was not scored).

    With `keep_going` a task that fails (missing data, an input too long for the model, a choice the
    tokenizer cannot encode, anything else) is recorded and the next one scored: one bad task never
    costs the scores of the others. Without it the first failure propagates.
    """
    entries, preds, failures = {}, {}, {}
    for task in tasks:
        start = time.perf_counter()
        try:
            entry, task_preds = score_task(
                task, model, tokenizer, source, max_items_per_subtask=max_items_per_subtask,
                dtype=dtype, batch_tokens=batch_tokens, progress=progress,
            )
        except Exception as exc:  # noqa: BLE001 -- recorded per task; the caller reports it
            if not keep_going:
                raise
            failures[task] = exc
            continue
        entry.update(protocol="2025", dtype=dtype, wall_time_s=round(time.perf_counter() - start, 3))
        entries[result_name(task, source.fast)] = entry
        preds[task] = task_preds
    return entries, preds, failures


def make_source(fast: bool, data_dir: str | os.PathLike | None, suite_data: str | os.PathLike | None) -> Source:
    """A `Source`. An absent DEFAULT 2025 suite is not an error here: only the tasks that need it fail."""
    data = Path(data_dir) if data_dir is not None else None
    try:
        return Source(fast, data, SuiteData(suite_data))
    except MissingEvalData as exc:
        if suite_data is not None:
            raise
        return Source(fast, data, None, str(exc))
