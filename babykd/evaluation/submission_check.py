"""Validate a BabyLM 2025 submission file (``all_full_preds_and_fast_scores_*.json``), whoever wrote it.

Why our own check: the official collate step asserts its rules while it
gathers predictions, so a file written any other way (ours, a hand-merged one,
one damaged in transit) is never checked before upload. `check_submission`
applies the same rules to the finished file -- the keys, every task's item
count (`submission_sizes`), the revisions of the AoA surprisals and of the
fast metrics -- plus what the leaderboard reads from each item: field types,
finite values in their ranges. It returns one line per problem (empty: the
file is complete).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from babykd.evaluation import submission_sizes as sizes
from babykd.evaluation.glue_data import GLUE_TASKS
from babykd.evaluation.submission import FAST_KEYS, FULL_KEYS, track_revisions

Problems = list[str]


def _finite(value: Any, low: float = -math.inf, high: float = math.inf) -> bool:
    """A JSON number (not a bool), finite and in [low, high]."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and low <= value <= high


def _predictions(where: str, part: Any, problems: Problems) -> dict[str, list]:
    """{subtask: rows} of a ``{subtask: {"predictions": [...]}}`` part; shape problems are appended."""
    if not isinstance(part, dict) or not part:
        problems.append(f"{where}: expected a non-empty mapping subtask -> {{'predictions': [...]}}")
        return {}
    out = {}
    for subtask, body in part.items():
        rows = body.get("predictions") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            problems.append(f"{where}.{subtask}: no 'predictions' list")
            continue
        out[subtask] = rows
    return out


def _row_problem(key: str, row: Any) -> str | None:
    """What is wrong with one prediction row of a final-model part, or None."""
    if not isinstance(row, dict) or "id" not in row or "pred" not in row:
        return "not an object with 'id' and 'pred'"
    if key == "reading":  # prev_pred is NaN for a word without a previous item (the official file has these)
        prev = row.get("prev_pred")
        if not _finite(row["pred"], 0.0) or not (_finite(prev, 0.0) or (isinstance(prev, float) and math.isnan(prev))):
            return f"'pred' must be a finite surprisal >= 0 and 'prev_pred' one or NaN, got {row['pred']!r}/{prev!r}"
        return None
    if not isinstance(row["pred"], str):
        return f"'pred' must be the chosen completion (a string), got {row['pred']!r}"
    if key in ("wug_adj", "wug_past") and not _finite(row.get("prob"), 0.0, 1.0):
        return f"'prob' must be a finite probability, got {row.get('prob')!r}"
    return None


def _check_counts(
    where: str, rows_by_subtask: dict[str, list], expected: dict[str, int] | int, problems: Problems
) -> None:
    """Subtask names (lower case, as the collate step compares them) and each subtask's prediction count."""
    if isinstance(expected, int):
        if len(rows_by_subtask) != 1:
            problems.append(f"{where}: {len(rows_by_subtask)} subtasks, expected 1")
        wanted = {name: expected for name in rows_by_subtask}
    else:
        got = {name.lower() for name in rows_by_subtask}
        for kind, names in (("missing", sorted(set(expected) - got)), ("unknown", sorted(got - set(expected)))):
            if names:
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                problems.append(f"{where}: {len(names)} {kind} subtask(s) of {len(expected)}: {shown}")
        wanted = {name: expected[name.lower()] for name in rows_by_subtask if name.lower() in expected}
    for name, count in wanted.items():
        if len(rows_by_subtask[name]) != count:
            problems.append(f"{where}.{name}: {len(rows_by_subtask[name])} predictions, expected {count}")


def _check_rows(
    where: str, rows_by_subtask: dict[str, list], problem: Callable[[Any], str | None], problems: Problems
) -> None:
    """One line per subtask with bad rows: the first bad row and how many."""
    for name, rows in rows_by_subtask.items():
        bad = [(i, p) for i, row in enumerate(rows) if (p := problem(row)) is not None]
        if bad:
            i, p = bad[0]
            problems.append(f"{where}.{name}[{i}]: {p}" + (f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""))


def _glue_row_problem(task: str, row: Any) -> str | None:
    if not isinstance(row, dict) or not isinstance(row.get("id"), str):
        return "not an object with an 'id' string"
    pred = row.get("pred")
    if not isinstance(pred, int) or isinstance(pred, bool) or not 0 <= pred < GLUE_TASKS[task].num_labels:
        return f"'pred' must be a class index 0..{GLUE_TASKS[task].num_labels - 1}, got {pred!r}"
    return None


def _check_aoa(part: Any, revisions: tuple[str, ...], problems: Problems) -> None:
    records = part.get("results") if isinstance(part, dict) else None
    if not isinstance(records, list):
        problems.append("aoa: no 'results' list of surprisal records")
        return
    per_step: dict[Any, int] = {}
    bad = 0
    for record in records:
        if not isinstance(record, dict) or not {"step", "target_word", "surprisal"} <= set(record):
            bad += 1
            continue
        per_step[record["step"]] = per_step.get(record["step"], 0) + 1
        surprisal = record["surprisal"]  # NaN is allowed: the official per-item code records it for too-long contexts
        if not (isinstance(surprisal, (int, float)) and (math.isnan(surprisal) or _finite(surprisal, 0.0))):
            bad += 1
    if bad:
        problems.append(f"aoa: {bad} records without step/target_word or with a surprisal that is not >= 0 or NaN")
    for name in revisions:
        if name not in per_step:
            problems.append(f"aoa: revision {name} missing")
        elif per_step[name] != sizes.AOA_CONTEXTS:
            problems.append(f"aoa: revision {name} has {per_step[name]} records, expected {sizes.AOA_CONTEXTS}")
    extra = sorted(map(str, set(per_step) - set(revisions)))
    if extra:
        problems.append(f"aoa: revisions not in the track's list: {', '.join(extra)}")


def _fast_value_problem(key: str, value: Any) -> str | None:
    """What is wrong with one revision's fast metrics of `key`, or None."""
    if not isinstance(value, dict) or not value:
        return "not a mapping of metrics"
    if key == "reading":
        if set(value) != {"spr", "rt"} or not all(_finite(v, high=1.0) for v in value.values()):
            return f"expected finite R^2 gains 'spr' and 'rt' (<= 1), got {value}"
        return None
    low = -1.0 if key in ("wug_adj", "wug_past") else 0.0
    bad = {k: v for k, v in value.items() if not _finite(v, low, 1.0)}
    if bad:
        return f"values outside [{low:g}, 1] or not finite: {bad}"
    expected = sizes.FAST_SUBTASKS.get(key)
    if expected is not None and {k.lower() for k in value} != expected:
        return f"{len(value)} subtasks, expected {len(expected)}"
    return None


def _check_fast(part: Any, revisions: tuple[str, ...], problems: Problems) -> None:
    if not isinstance(part, dict):
        problems.append("fast_eval_results: not a mapping")
        return
    for key in FAST_KEYS.values():
        values = part.get(key)
        if not isinstance(values, list):
            problems.append(f"fast_eval_results.{key}: missing")
            continue
        if len(values) != len(revisions):
            problems.append(f"fast_eval_results.{key}: {len(values)} revisions, "
                            f"expected {len(revisions)} ({revisions[0]} .. {revisions[-1]})")
        # Entries are in the track's revision order; a list of another length cannot be matched to names.
        labels = revisions if len(values) == len(revisions) else [f"#{k}" for k in range(len(values))]
        for name, value in zip(labels, values):
            problem = _fast_value_problem(key, value)
            if problem:
                problems.append(f"fast_eval_results.{key}[{name}]: {problem}")


def check_submission(data: Any, track: str = "strict-small") -> Problems:
    """Every problem of a parsed submission file for `track`, one line each (empty: complete and valid)."""
    if not isinstance(data, dict):
        return ["not a JSON object"]
    problems: Problems = []
    revisions = track_revisions(track)
    for key in (*FULL_KEYS, "fast_eval_results"):
        if key not in data:
            problems.append(f"{key}: missing")
    for key in sorted(set(data) - {*FULL_KEYS, "fast_eval_results"}):
        problems.append(f"{key}: unknown key")
    for key, expected in sizes.FULL.items():
        if key in data:
            rows = _predictions(key, data[key], problems)
            _check_counts(key, rows, expected, problems)
            _check_rows(key, rows, lambda row, key=key: _row_problem(key, row), problems)
    if "glue" in data:
        rows = _predictions("glue", data["glue"], problems)
        _check_counts("glue", rows, sizes.GLUE, problems)
        for task in set(rows) & set(GLUE_TASKS):
            _check_rows("glue", {task: rows[task]}, lambda row, task=task: _glue_row_problem(task, row), problems)
    if "aoa" in data:
        _check_aoa(data["aoa"], revisions, problems)
    if "fast_eval_results" in data:
        _check_fast(data["fast_eval_results"], revisions, problems)
    return problems


def check_file(path: str | os.PathLike, track: str = "strict-small") -> Problems:
    """`check_submission` of a file; an unreadable file is one problem (the caller names the file)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"not a readable JSON file ({exc})"]
    return check_submission(data, track)
