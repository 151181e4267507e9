"""Per-task predictions and the leaderboard submission file of the 2025 pipeline.

The official pipeline writes one ``predictions.json`` per task and revision,
then ``collate_preds.py`` gathers the final model's predictions and the fast
evaluation's metrics of every intermediate checkpoint into
``all_full_preds_and_fast_scores_<backend>.json``: the file uploaded to the
leaderboard. We keep the same two levels:

* ``MODEL_DIR/eval/predictions/<revision>/<key>.json`` -- the task's
  ``predictions.json`` content (``<key>`` is the submission key: ``blimp``,
  ``ewok``, ``wug_adj``, ...; ``<revision>`` is ``main`` for the final model);
* `collate` -- the submission file, with the keys the official collate step
  writes. Unlike the official script it does not refuse a partial file: it
  writes what exists and returns what is missing, which the caller reports.

Fast metrics follow ``get_revision_fast_eval_metrics``: per subtask accuracy as
a fraction, Spearman's rho per WUG task, and ``{"spr", "rt"}`` for reading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from babykd.atomic import atomic_write_json
from babykd.evaluation.report import read_results
from babykd.rules import REVISIONS_DIR, TRACKS, revision_name

BACKEND = "causal"


def track_revisions(track: str) -> tuple[str, ...]:
    """The revisions a track's fast evaluation and AoA expect (collate_preds.py): strict-small 19, strict 28."""
    return tuple(map(revision_name, TRACKS[track].checkpoint_words))


#: Keys of the final model's predictions in the submission file (strict / strict-small tracks).
FULL_KEYS: tuple[str, ...] = (
    "blimp", "blimp_supplement", "ewok", "entity_tracking", "wug_adj", "wug_past", "comps", "reading", "aoa", "glue",
)
#: Keys of ``fast_eval_results``: our fast result name -> submission key.
FAST_KEYS: dict[str, str] = {
    "blimp_filtered_fast": "blimp",
    "blimp_supplement_fast": "blimp_supplement",
    "ewok_filtered_fast": "ewok",
    "entity_tracking_fast": "entity_tracking",
    "wug_adj_nominalization_fast": "wug_adj",
    "wug_past_tense_fast": "wug_past",
    "reading_fast": "reading",
}
SUBMISSION_FILE = f"all_full_preds_and_fast_scores_{BACKEND}.json"


def predictions_path(eval_dir: str | os.PathLike, revision: str | None, key: str) -> Path:
    return Path(eval_dir) / "predictions" / (revision or "main") / f"{key}.json"


def write_predictions(eval_dir: str | os.PathLike, revision: str | None, key: str, predictions: dict) -> Path:
    path = predictions_path(eval_dir, revision, key)
    atomic_write_json(path, predictions)
    return path


def fast_metrics(entry: dict[str, Any]) -> Any:
    """One task's fast metrics as the collate step computes them from the predictions."""
    if entry["metric"] == "r2_gain":
        return {"spr": entry["self_paced_reading"], "rt": entry["eye_tracking"]}
    if entry["metric"] == "spearman":
        return {uid: sub["spearman"] for uid, sub in entry["subtasks"].items()}
    return {uid: sub["acc"] for uid, sub in entry["subtasks"].items()}


def collate(
    eval_dir: str | os.PathLike, revision_results: dict[str, dict[str, Any]], track: str = "strict-small"
) -> tuple[Path, list[str]]:
    """Write the submission file; returns (its path, what is missing from a complete one).

    `revision_results` maps revision name -> its results record (fast scores).
    """
    eval_dir = Path(eval_dir)
    out: dict[str, Any] = {}
    missing = []
    for key in FULL_KEYS:
        path = predictions_path(eval_dir, None, key)
        if path.is_file():
            out[key] = json.loads(path.read_text(encoding="utf-8"))
        else:
            missing.append(f"{key} (final model: {path})")
    fast: dict[str, list[Any]] = {key: [] for key in FAST_KEYS.values()}
    for revision in track_revisions(track):
        tasks = revision_results.get(revision, {}).get("tasks", {})
        for name, key in FAST_KEYS.items():
            if name in tasks:
                fast[key].append(fast_metrics(tasks[name]))
            else:
                missing.append(f"{key} fast ({revision})")
    out["fast_eval_results"] = fast
    path = eval_dir / SUBMISSION_FILE
    atomic_write_json(path, out)
    return path, missing


def collate_submission(eval_dir: str | os.PathLike, track: str = "strict-small") -> tuple[Path, list[str]]:
    """The submission file from the final model's predictions and every revision's fast results."""
    eval_dir = Path(eval_dir)
    paths = sorted((eval_dir / REVISIONS_DIR).glob("*/results.json"))
    revisions = {path.parent.name: read_results(path) for path in paths}
    return collate(eval_dir, revisions, track)
