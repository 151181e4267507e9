"""The results store: the one owner of ``<model>/eval/`` and of "does this result belong to these weights?".

Why one module: every unit of a submission skips work it has done, collate and
export ship what was scored, and the report shows it. Each of them used to
decide "done" by a rule of its own (a revision's fingerprint, the final
model's, GLUE's epochs), so a retrained model could ship its predecessor's
predictions. Here every stored result entry and prediction file carries a
*stamp* -- the ``weights_sha256`` of the weights it was scored on and the
``setup`` it was scored with (the task data's sha256, fast/full, dtype,
subset sizes, GLUE's hyperparameters, and whether that is the official
protocol) -- and one function, `belongs`, answers for everyone: same weights,
same setup (data included). A file without a stamp was written by an earlier
version: it counts as not done and is re-scored, never reused, never a crash.

Layout (only this module builds these paths)::

    <model>/eval/results.json                       the final model's results (report.write_results merges)
    <model>/eval/revisions/<revision>/results.json  a revision's fast results
    <model>/eval/predictions/<revision>/<key>.json  a stamped predictions file (revision ``main``: final model)
    <model>/eval/predictions/main/glue/<task>.json  one GLUE task's stamped predictions
    <model>/eval/units/<stage>-<name>.lock          held while a submission unit runs (one runner per unit)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

from babykd.run.atomic import atomic_write_json
from babykd.run.lock import file_lock
from babykd.rules import FINAL_REVISION, REVISIONS_DIR, revision_words

FINAL = FINAL_REVISION  # the final model's "revision" in the predictions layout (the hub's default branch)
RESULTS_FILE = "results.json"


class NotForSubmission(ValueError):
    """A stored file that must not go into a submission; the message is one line naming the file and why."""


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """One results file; a clear error for anything that is not one."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable results JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("tasks"), dict):
        raise ValueError(f"{path}: not an evaluation results file (no 'tasks' mapping)")
    return record


#: Weight files whose content identifies a model's scores (not HF's training_args.bin).
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt")


def weights_fingerprint(model_dir: str | Path) -> str | None:
    """SHA-256 over the weight files' names and contents; None for a hub name."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return None
    files = sorted({f for pattern in WEIGHT_PATTERNS for f in model_dir.glob(pattern) if f.name != "training_args.bin"})
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def eval_dir(model_dir: str | os.PathLike) -> Path:
    return Path(model_dir) / "eval"


def model_name(model: str | os.PathLike) -> str:
    """The ``model`` field of results files: a local checkpoint's resolved path, else the hub name as given."""
    return str(Path(model).resolve()) if Path(model).is_dir() else str(model)


def results_path(model_dir: str | os.PathLike, revision: str | None = None) -> Path:
    """The results file of the final model (`revision` None) or of one revision's fast suite."""
    base = eval_dir(model_dir)
    return base / RESULTS_FILE if revision is None else base / REVISIONS_DIR / revision / RESULTS_FILE


def predictions_path(eval_folder: str | os.PathLike, revision: str | None, key: str) -> Path:
    """Where the stamped predictions of one submission key live (`key` 'glue/rte' for one GLUE task)."""
    return Path(eval_folder) / "predictions" / (revision or FINAL) / f"{key}.json"


def revision_model(run_dir: str | os.PathLike, revision: str | None) -> Path:
    """The weights folder a result of `revision` was scored on (the run itself for the final model)."""
    return Path(run_dir) if revision in (None, FINAL) else Path(run_dir) / REVISIONS_DIR / revision


def revisions_sha256(run_dir: str | os.PathLike, revisions: list[str] | tuple[str, ...]) -> str | None:
    """The weights of a set of revisions (what AoA is scored on): one digest over each revision's fingerprint."""
    digest = hashlib.sha256()
    for name in sorted(revisions, key=revision_words):
        fingerprint = weights_fingerprint(revision_model(run_dir, name))
        if fingerprint is None:
            return None
        digest.update(f"{name}\0{fingerprint}\0".encode())
    return digest.hexdigest()


def stamp(weights_sha256: str | None, setup: Mapping[str, Any]) -> dict[str, Any]:
    """The fields every stored entry and predictions file carries: whose weights, scored how."""
    return {"weights_sha256": weights_sha256, "setup": as_stored(setup)}


def as_stored(setup: Mapping[str, Any]) -> dict[str, Any]:
    """`setup` as it reads back from JSON (tuples become lists), so a fresh setup compares equal to a stored one."""
    return json.loads(json.dumps(dict(setup), sort_keys=True))


def belongs(stamped: Mapping[str, Any] | None, weights_sha256: str | None, setup: Mapping[str, Any]) -> bool:
    """THE rule: `stamped` was scored on these weights with this setup (same data, same protocol).

    An unstamped entry (an earlier version's file) or weights that cannot be fingerprinted never belong:
    the work is done again rather than trusted.
    """
    return not weights_problem(stamped, weights_sha256) and stamped.get("setup") == as_stored(setup)


def weights_problem(stamped: Any, weights_sha256: str | None) -> str:
    """Why `stamped` (an entry, a predictions file or a whole results record) is not of these weights ("" when it
    is): the weights half of `belongs`, which the report and the model card ask of a record (that has no setup)."""
    if not isinstance(stamped, Mapping) or "weights_sha256" not in stamped:
        return "written by an earlier version of babykd (no weights_sha256); score it again"
    if weights_sha256 is None or stamped["weights_sha256"] != weights_sha256:
        return (f"scored on other weights (weights_sha256 {str(stamped['weights_sha256'])[:12]}, "
                f"the model's is {str(weights_sha256)[:12]}); score it again")
    return ""


def read_record(path: Path) -> dict[str, Any] | None:
    """A results file, or None when there is none or it is damaged (then it is scored again)."""
    if not path.is_file():
        return None
    try:
        return read_results(path)
    except ValueError:
        return None


def entry_done(path: Path, name: str, weights_sha256: str | None, setup: Mapping[str, Any]) -> bool:
    """Whether results file `path` holds task `name` scored on these weights with this setup."""
    record = read_record(path)
    return belongs((record or {}).get("tasks", {}).get(name), weights_sha256, setup)


def write_predictions(eval_folder: str | os.PathLike, revision: str | None, key: str, predictions: Any,
                      weights_sha256: str | None, setup: Mapping[str, Any]) -> Path:
    """Store one task's official predictions with their stamp (atomically)."""
    path = predictions_path(eval_folder, revision, key)
    atomic_write_json(path, stamped_file(predictions, weights_sha256, setup, revision))
    return path


def stamped_file(predictions: Any, weights_sha256: str | None, setup: Mapping[str, Any],
                 revision: str | None = None) -> dict[str, Any]:
    """The content of a stored predictions file: the official predictions under their stamp."""
    return {**stamp(weights_sha256, setup), "revision": revision or FINAL, "predictions": predictions}


def unstamped(stored: Any) -> tuple[dict[str, Any] | None, Any]:
    """(the stamp, the official content) of a file `stamped_file` wrote; (None, it) for a plain official file."""
    if isinstance(stored, dict) and "predictions" in stored and "weights_sha256" in stored:
        return {k: stored.get(k) for k in ("weights_sha256", "setup")}, stored["predictions"]
    return None, stored


def read_predictions(eval_folder: str | os.PathLike, revision: str | None, key: str,
                     weights_sha256: str | None) -> Any:
    """The official predictions content at `key`, if they may go into a submission of these weights.

    Raises FileNotFoundError when there is no file, `NotForSubmission` (one line) when the file was
    written by an earlier version, belongs to other weights, or was not scored the official way.
    """
    path = predictions_path(eval_folder, revision, key)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, json.JSONDecodeError) as exc:
        raise NotForSubmission(f"{path}: not a readable predictions file ({exc}); score it again") from None
    why = refusal(stored if isinstance(stored, dict) and "predictions" in stored else None, weights_sha256)
    if why:
        raise NotForSubmission(f"{path}: {why}")
    return stored["predictions"]


def refusal(stamped: Mapping[str, Any] | None, weights_sha256: str | None) -> str:
    """Why a stored entry or file is not this model's official result ("" when it is)."""
    if not isinstance(stamped, Mapping) or "setup" not in stamped:
        return "written by an earlier version of babykd (no weights_sha256); score it again"
    if why := weights_problem(stamped, weights_sha256):
        return why
    if not stamped["setup"].get("official"):
        return f"not scored the official way ({describe_setup(stamped['setup'])}); not for a submission"
    return ""


def describe_setup(setup: Mapping[str, Any]) -> str:
    """The non-default parts of a setup, for a refusal line."""
    hidden = ("official", "data_sha256", "hyperparameters", "departures")
    shown = {**setup.get("departures", {}), **{k: v for k, v in setup.items() if k not in hidden and v is not None}}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "unofficial"


def official_fast_tasks(run_dir: str | os.PathLike, revision: str) -> tuple[dict[str, Any], list[str]]:
    """(a revision's fast entries that may go into a submission, one warning line per refused file or entry)."""
    path = results_path(run_dir, revision)
    if not path.is_file():  # not scored yet: missing, not refused
        return {}, []
    try:
        record = read_results(path)
    except ValueError as exc:
        return {}, [f"{exc}: ignored"]
    weights = weights_fingerprint(revision_model(run_dir, revision))
    kept, refused = {}, []
    for name, entry in record["tasks"].items():
        why = refusal(entry, weights)
        if why:
            refused.append(f"{path}: {name}: {why}")
        else:
            kept[name] = entry
    return kept, refused


def suite_setup(fast: bool, dtype: str, max_items_per_subtask: int | None, data_sha256: str) -> dict[str, Any]:
    """How a zero-shot task was scored; official when on every item (any dtype the user chose)."""
    return {"suite": "fast" if fast else "full", "dtype": dtype, "max_items_per_subtask": max_items_per_subtask,
            "data_sha256": data_sha256, "official": max_items_per_subtask is None}


def aoa_setup(revisions: list[str], dtype: str, max_words: int | None, data_sha256: str,
              official_revisions: bool) -> dict[str, Any]:
    """How AoA was scored: over which revisions (their weights are the stamp's), on which words."""
    return {"revisions": sorted(revisions, key=revision_words), "dtype": dtype, "max_words": max_words,
            "data_sha256": data_sha256, "official": max_words is None and official_revisions}


def glue_setup(hyperparameters: Mapping[str, Any], max_train_examples: int | None, max_valid_examples: int | None,
               data_sha256: str, official_hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """How one GLUE task was fine-tuned; official with the official hyperparameters on every example."""
    departures = {k: v for k, v in hyperparameters.items() if official_hyperparameters.get(k) != v}
    return {"hyperparameters": dict(hyperparameters), "max_train_examples": max_train_examples,
            "max_valid_examples": max_valid_examples, "data_sha256": data_sha256, "departures": departures,
            "official": not departures and max_train_examples is None and max_valid_examples is None}


@contextlib.contextmanager
def unit_lock(run_dir: str | os.PathLike, unit: str) -> Iterator[None]:
    """Hold the lock of one submission unit while it is checked and run (waiting, and saying so, if it is held).

    Why: two submissions started at once in one run would both score every unit (the files stay correct,
    the work doubles). The second waits for the first and then finds the unit done. `flock` is released
    by the kernel when its holder dies, so a killed job leaves no stale lock.
    """
    def say_so(_holder: str) -> None:
        print(f"{unit}: another submission is scoring this unit; waiting for it", file=sys.stderr, flush=True)

    with file_lock(eval_dir(run_dir) / "units" / f"{unit.replace('/', '_').replace(' ', '_')}.lock", say_so):
        yield
