"""Built-in zero-shot evaluation, scored as the official BabyLM pipelines do (2025 protocol and 2024's).

* `tasks`      -- the 2024 task registry and JSONL reader;
* `scorer`     -- batched log-likelihoods, the 2024 harness's metrics, `evaluate_model`;
* `suite_data` -- the 2025 evaluation data, from the official zip or a folder;
* `ranking`    -- the 2025 completion-ranking rules (BLiMP, supplement, EWoK, entity tracking, WUG);
* `reading`    -- the 2025 reading task (surprisal, R^2-gain regressions); `stats` -- Spearman, OLS R^2;
* `suite`      -- which data each 2025 task reads and how its score is formed, `evaluate_suite`;
* `submission` -- official predictions files and the leaderboard submission file;
* `submission_check` -- validation of any submission file against the official counts (the tasks' own);
* `report`     -- results file, tables, heat-map and learning curves (`python -m babykd.evaluation.report`);
* `callback`   -- `EvaluationCallback` for the HF Trainer (2024 protocol, in memory).

The command line is `python -m babykd.evaluate MODEL_DIR`.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module that defines it. Imported on first use (PEP 562), so that
#: `python -m babykd.evaluate` and every submodule import pay only for what they use
#: (the Trainer callback pulls in transformers' training stack).
_EXPORTS = {
    "EvaluationCallback": "callback",
    "evaluate_model": "scorer",
    "score_items": "scorer",
    **dict.fromkeys(
        ("DEFAULT_TASKS", "TASK_FOLDERS", "Item", "Task", "TaskDataError", "load_task", "load_tasks"), "tasks"
    ),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
