"""Validate a BabyLM 2025 submission file (``all_full_preds_and_fast_scores_*.json``), whoever wrote it.

Why our own check: the official collate step asserts its rules while it
gathers predictions, so a file written any other way (ours, a hand-merged one,
one damaged in transit) is never checked before upload. `check_submission`
applies the same rules to the finished file -- the keys, every task's item
count (each task's `items` in the registry, GLUE's `valid_items`, AoA's
`OFFICIAL_CONTEXTS`), the revisions of the AoA surprisals and of the
fast metrics -- plus what the leaderboard reads from each item: field types,
finite values in their ranges, and the AoA records' official form: six keys
each and, per revision, one (word, context) order, the CDI word list's where
the suite data is at hand (the collate step checks only counts, so surprisals
moved across words passed). It returns one line per problem (empty: the file
is complete).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from babykd.evaluation.aoa import CONTEXTS_FILE, OFFICIAL_CONTEXTS, load_aoa_data
from babykd.evaluation.glue_data import GLUE_TASKS
from babykd.evaluation.submission import FAST_KEYS, FULL_KEYS, track_revisions
from babykd.evaluation.suite_data import MissingEvalData, SuiteData
from babykd.evaluation.suite_tasks import REGISTRY, Items
from babykd.rules import revision_words

Problems = list[str]
#: (target word, context id) of one revision's AoA records, in the order they come.
AoAOrder = Sequence[tuple[str, int]]
#: The keys of an official surprisal record (``AoA_word/evaluation_functions.py``, ``analyze_steps``).
AOA_KEYS = frozenset({"step", "word_count", "target_word", "context_id", "context", "surprisal"})
#: The counts the official collate step asserts, from the tasks that own them: submission key -> items.
FULL_ITEMS: dict[str, Items] = {t.submission_key: t.items for t in REGISTRY.values() if t.submission_key}
#: (Super)GLUE: task -> predictions.
GLUE_ITEMS: dict[str, int] = {name: task.valid_items for name, task in GLUE_TASKS.items()}
#: The subtasks each revision's fast metrics must name: submission key -> subtasks.
FAST_SUBTASKS: dict[str, frozenset[str]] = {
    t.submission_key: t.fast_subtasks for t in REGISTRY.values() if t.submission_key and t.fast_subtasks
}


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


def _check_counts(where: str, rows_by_subtask: dict[str, list], expected: Items, problems: Problems) -> None:
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


def official_aoa_order(suite: str | os.PathLike | None = None) -> list[tuple[str, int]] | None:
    """The order the official AoA run writes each revision's records in, from the suite data (default: the
    default suite; None where it is absent): every context of each CDI word, in the word list's order."""
    try:
        data = load_aoa_data(SuiteData(suite))
    except MissingEvalData:
        return None
    return [(word, k) for word, contexts in zip(data.words, data.contexts) for k in range(len(contexts))]


def _official_record(record: Any, words_seen: dict[str, int]) -> bool:
    """One surprisal record as the official run writes it: its six keys, typed; the words seen of its step
    (a step of the track); a surprisal >= 0 or NaN (the official per-item code records NaN for a too-long context)."""
    if not isinstance(record, dict) or set(record) != AOA_KEYS:
        return False
    step, surprisal, context_id = record["step"], record["surprisal"], record["context_id"]
    return (isinstance(step, str) and isinstance(record["target_word"], str) and isinstance(record["context"], str)
            and isinstance(context_id, int) and not isinstance(context_id, bool)
            and (step not in words_seen or record["word_count"] == words_seen[step])
            and isinstance(surprisal, (int, float)) and (math.isnan(surprisal) or _finite(surprisal, 0.0)))


def _grouping_problem(order: AoAOrder) -> str | None:
    """Where `order` leaves the official layout: each word's records together, its context ids 0, 1, 2, ..."""
    seen: set[str] = set()
    previous, expected = None, 0
    for i, (word, context) in enumerate(order):
        if word != previous:
            if word in seen:
                return f"record {i}: word {word!r} again after other words"
            seen.add(word)
            previous, expected = word, 0
        if context != expected:
            return f"record {i}: {word!r} context {context}, expected context {expected}"
        expected += 1
    return None


def _order_problem(got: AoAOrder, want: AoAOrder, source: str) -> str:
    """The first place two different orders part."""
    if len(got) != len(want):
        return f"{len(got)} records where {source} has {len(want)}"
    i = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
    (word, context), (want_word, want_context) = got[i], want[i]
    return f"record {i}: {word!r} context {context} where {source} has {want_word!r} context {want_context}"


def _check_aoa_order(orders: dict[str, AoAOrder], official: AoAOrder | None, problems: Problems) -> None:
    """Every revision's records in one (word, context) order: the CDI list's when at hand, else the first's.

    The collate step counts records only, and the leaderboard pairs each surprisal with a word through its
    labels: surprisals moved across words would fit the children's curves to the wrong words unnoticed.
    """
    if not orders:
        return
    if official is None:
        name, reference = next(iter(orders.items()))
        source = f"revision {name}"
        if (problem := _grouping_problem(reference)) is not None:
            problems.append(f"aoa: {source}, {problem} (the official run writes each word's contexts in order)")
            return
    else:
        reference, source = official, f"the official CDI list ({CONTEXTS_FILE})"
    wrong = [name for name, order in orders.items() if list(order) != list(reference)]
    if wrong:
        more = f" (and {len(wrong) - 1} more revisions)" if len(wrong) > 1 else ""
        problems.append(f"aoa: revision {wrong[0]}, {_order_problem(orders[wrong[0]], reference, source)}{more}")


def _check_aoa(part: Any, revisions: tuple[str, ...], official: AoAOrder | None, problems: Problems) -> None:
    records = part.get("results") if isinstance(part, dict) else None
    if not isinstance(records, list):
        problems.append("aoa: no 'results' list of surprisal records")
        return
    words_seen = {name: revision_words(name) for name in revisions}
    orders: dict[str, list[tuple[str, int]]] = {}
    bad = 0
    for record in records:
        if not _official_record(record, words_seen):
            bad += 1
            continue
        orders.setdefault(record["step"], []).append((record["target_word"], record["context_id"]))
    if bad:
        problems.append(f"aoa: {bad} records not of the official form (keys {', '.join(sorted(AOA_KEYS))}; "
                        "word_count the revision's words seen; surprisal >= 0 or NaN)")
    for name in revisions:
        if name not in orders:
            problems.append(f"aoa: revision {name} missing")
        elif len(orders[name]) != OFFICIAL_CONTEXTS:
            problems.append(f"aoa: revision {name} has {len(orders[name])} records, expected {OFFICIAL_CONTEXTS}")
    extra = sorted(set(orders) - set(revisions))
    if extra:
        problems.append(f"aoa: revisions not in the track's list: {', '.join(extra)}")
    complete = {name: orders[name] for name in revisions if len(orders.get(name, ())) == OFFICIAL_CONTEXTS}
    _check_aoa_order(complete, official, problems)


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
    expected = FAST_SUBTASKS.get(key)
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


def check_submission(data: Any, track: str = "strict-small", aoa_order: AoAOrder | None = None) -> Problems:
    """Every problem of a parsed submission file for `track`, one line each (empty: complete and valid).

    `aoa_order` is `official_aoa_order`'s; without it the AoA revisions are only compared with each other.
    """
    if not isinstance(data, dict):
        return ["not a JSON object"]
    problems: Problems = []
    revisions = track_revisions(track)
    for key in (*FULL_KEYS, "fast_eval_results"):
        if key not in data:
            problems.append(f"{key}: missing")
    for key in sorted(set(data) - {*FULL_KEYS, "fast_eval_results"}):
        problems.append(f"{key}: unknown key")
    for key, expected in FULL_ITEMS.items():
        if key in data:
            rows = _predictions(key, data[key], problems)
            _check_counts(key, rows, expected, problems)
            _check_rows(key, rows, lambda row, key=key: _row_problem(key, row), problems)
    if "glue" in data:
        rows = _predictions("glue", data["glue"], problems)
        _check_counts("glue", rows, GLUE_ITEMS, problems)
        for task in set(rows) & set(GLUE_TASKS):
            _check_rows("glue", {task: rows[task]}, lambda row, task=task: _glue_row_problem(task, row), problems)
    if "aoa" in data:
        _check_aoa(data["aoa"], revisions, aoa_order, problems)
    if "fast_eval_results" in data:
        _check_fast(data["fast_eval_results"], revisions, problems)
    return problems


def check_file(
    path: str | os.PathLike, track: str = "strict-small", suite: str | os.PathLike | None = None
) -> Problems:
    """`check_submission` of a file, its AoA word order against `suite`'s CDI list (default: the default suite
    data, where it is at hand); an unreadable file is one problem (the caller names the file)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"not a readable JSON file ({exc})"]
    return check_submission(data, track, official_aoa_order(suite))
