"""Results of the non-zero-shot families (AoA, GLUE fine-tuning) into the model's ``eval/results.json``.

Why a helper: both families write the same kind of record as `babykd.evaluate`
(model path, weights fingerprint, provenance, task entries with
``score``/``stderr``) through `report.write_results`, so their entries merge
with the zero-shot ones of the same weights and show up in the same tables.
"""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Any, Iterator

import torch

from babykd.evaluation.submission import collate_submission
from babykd.evaluation.report import write_results
from babykd.provenance import provenance


def model_label(model_dir: Path) -> str:
    """The model name results files use: the resolved path of a local checkpoint (as `babykd.evaluate`)."""
    return str(Path(model_dir).resolve())


@contextlib.contextmanager
def results_lock(eval_dir: Path) -> Iterator[None]:
    """Hold ``eval_dir/.results.lock`` while reading and rewriting a file there.

    Why: the jobs of one run's submission chain (AoA, a GLUE array) finish at
    any time and each merges its entries into the same results and predictions
    files; unlocked, two read-merge-writes at once would lose one of them.
    """
    eval_dir.mkdir(parents=True, exist_ok=True)
    with (eval_dir / ".results.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def save_family_results(
    model_dir: Path, output: Path | None, tasks: dict[str, dict[str, Any]], wall_time_s: float, device: torch.device
) -> dict[str, Any]:
    """Merge `tasks` into `output` (default ``MODEL_DIR/eval/results.json``); returns what was written."""
    record = {
        "model": model_label(model_dir),
        "wall_time_s": round(wall_time_s, 3),
        "tasks": tasks,
        **provenance(torch_device=str(device)),
    }
    path = output or Path(model_dir) / "eval" / "results.json"
    with results_lock(path.parent):
        return write_results(path, record)


def refresh_submission(model_dir: Path) -> None:
    """Collate the submission file again, now that this family's predictions are in, and say what it lacks."""
    path, missing = collate_submission(Path(model_dir) / "eval")
    print(f"submission file: {path} ({len(missing)} parts missing for a complete upload)")
