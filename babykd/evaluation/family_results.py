"""Results of the non-zero-shot families (AoA, GLUE fine-tuning) into the model's ``eval/results.json``.

Why a helper: both families write the same kind of record as `babykd.evaluate`
(model path, weights fingerprint, provenance, task entries with
``score``/``stderr``) through `report.write_results`, so their entries merge
with the zero-shot ones of the same weights and show up in the same tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from babykd.evaluation import store
from babykd.evaluation.submission import collate_submission
from babykd.evaluation.report import write_results
from babykd.run.provenance import provenance


def save_family_results(
    model_dir: Path, output: Path | None, tasks: dict[str, dict[str, Any]], wall_time_s: float, device: torch.device,
    weights_sha256: str | None = None,
) -> dict[str, Any]:
    """Merge `tasks` into `output` (default ``MODEL_DIR/eval/results.json``); returns what was written.

    `weights_sha256`: the model's, when the caller has it already (else `write_results` hashes the weight files).
    """
    record = {
        "model": store.model_name(model_dir),
        "weights_sha256": weights_sha256,
        "wall_time_s": round(wall_time_s, 3),
        "tasks": tasks,
        **provenance(torch_device=str(device)),
    }
    path = output or Path(model_dir) / "eval" / "results.json"
    return write_results(path, record)  # under the eval folder's lock: AoA and GLUE jobs may finish together


def refresh_submission(model_dir: Path) -> None:
    """Collate the submission file again, now that this family's predictions are in, and say what it lacks."""
    path, missing = collate_submission(model_dir)
    print(f"submission file: {path} ({len(missing)} parts missing for a complete upload)")
