"""Per-task predictions and the leaderboard submission file of the 2025 pipeline.

The official pipeline writes one ``predictions.json`` per task and revision,
then ``collate_preds.py`` gathers the final model's predictions and the fast
evaluation's metrics of every intermediate checkpoint into
``all_full_preds_and_fast_scores_<backend>.json``: the file uploaded to the
leaderboard. We keep the same two levels:

* ``MODEL_DIR/eval/predictions/<revision>/<key>.json`` -- the task's
  ``predictions.json`` content (``<key>`` is the submission key: ``blimp``,
  ``ewok``, ``wug_adj``, ...; ``<revision>`` is ``main`` for the final model),
  stamped with the weights and setup that produced it (`store` owns the layout);
* `collate_submission` -- the submission file, with the keys the official collate step
  writes, from what the store accepts for the model's current weights. Unlike the
  official script it does not refuse a partial file: it writes what exists and
  returns what is missing, which the caller reports.

Fast metrics follow ``get_revision_fast_eval_metrics``: per subtask accuracy as
a fraction, Spearman's rho per WUG task, and ``{"spr", "rt"}`` for reading.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from babykd.run.atomic import atomic_write_json
from babykd.evaluation import store
from babykd.evaluation.glue_data import GLUE_TASKS
from babykd.evaluation.report import weights_fingerprint
from babykd.evaluation.suite import result_name
from babykd.evaluation.suite_tasks import REGISTRY
from babykd.rules import TRACKS, revision_name

BACKEND = "causal"


def track_revisions(track: str) -> tuple[str, ...]:
    """The revisions a track's fast evaluation and AoA expect (collate_preds.py): strict-small 19, strict 28."""
    return tuple(map(revision_name, TRACKS[track].checkpoint_words))


#: Keys of the final model's predictions in the submission file (strict / strict-small tracks), in its order:
#: the zero-shot tasks' (the registry's), then the two families of their own.
FULL_KEYS: tuple[str, ...] = (*(t.submission_key for t in REGISTRY.values() if t.submission_key), "aoa", "glue")
#: Keys of ``fast_eval_results``: our fast result name -> submission key.
FAST_KEYS: dict[str, str] = {
    result_name(t.name, fast=True): t.submission_key for t in REGISTRY.values() if t.submission_key and t.fast_folder
}
SUBMISSION_FILE = f"all_full_preds_and_fast_scores_{BACKEND}.json"


def fast_metrics(entry: dict[str, Any]) -> Any:
    """One task's fast metrics as the collate step computes them from the predictions."""
    if entry["metric"] == "r2_gain":
        return {"spr": entry["self_paced_reading"], "rt": entry["eye_tracking"]}
    if entry["metric"] == "spearman":
        return {uid: sub["spearman"] for uid, sub in entry["subtasks"].items()}
    return {uid: sub["acc"] for uid, sub in entry["subtasks"].items()}


def final_part(eval_folder: Path, key: str, weights: dict[str, str | None]) -> Any:
    """The submission part `key` of the final model, read through the store (which refuses other weights' files).

    `weights`: "model" -> the final model's weights_sha256, "aoa" -> the track's revisions' (what AoA belongs to),
    computed once per collate (each is a hash of whole weight files). GLUE is one stamped file per task.
    """
    owner = weights["aoa"] if key == "aoa" else weights["model"]
    if key != "glue":
        return store.read_predictions(eval_folder, None, key, owner)
    glue = {}
    for task in GLUE_TASKS:
        with contextlib.suppress(FileNotFoundError):  # a task not fine-tuned yet: the checker names it
            glue[task] = store.read_predictions(eval_folder, None, f"glue/{task}", owner)
    if not glue:
        raise FileNotFoundError(store.predictions_path(eval_folder, None, "glue/<task>"))
    return dict(sorted(glue.items()))  # the order the official collate step merges the tasks in


def collate_submission(
    run_dir: str | os.PathLike, track: str = "strict-small", eval_folder: str | os.PathLike | None = None,
    destination: str | os.PathLike | None = None,
) -> tuple[Path, list[str]]:
    """Write the submission file; returns (its path, what is missing from a complete one).

    Only what the results store accepts goes in: the final model's stamped predictions of its current
    weights scored the official way, and each track revision's fast entries of that revision's weights.
    Every file it refuses is named on stderr in one line with the reason (and counts as missing).
    The file goes to `destination` when given (export), else into the eval folder.
    """
    run_dir = Path(run_dir)
    eval_folder = Path(eval_folder) if eval_folder is not None else store.eval_dir(run_dir)
    out: dict[str, Any] = {}
    missing, refused = [], []
    weights = {"model": weights_fingerprint(run_dir), "aoa": store.revisions_sha256(run_dir, track_revisions(track))}
    for key in FULL_KEYS:
        try:
            out[key] = final_part(eval_folder, key, weights)
        except FileNotFoundError:
            missing.append(f"{key} (final model: {store.predictions_path(eval_folder, None, key)})")
        except store.NotForSubmission as exc:
            refused.append(str(exc))
            missing.append(f"{key} (final model: refused, see above)")
    fast: dict[str, list[Any]] = {key: [] for key in FAST_KEYS.values()}
    for revision in track_revisions(track):
        tasks, why = store.official_fast_tasks(run_dir, revision)
        refused.extend(why)
        for name, key in FAST_KEYS.items():
            if name in tasks:
                fast[key].append(fast_metrics(tasks[name]))
            else:
                missing.append(f"{key} fast ({revision})")
    out["fast_eval_results"] = fast
    for line in refused:
        print(f"collate: refused {line}", file=sys.stderr)
    path = Path(destination) if destination is not None else eval_folder / SUBMISSION_FILE
    atomic_write_json(path, out)
    return path, missing
