"""Built-in zero-shot evaluation, scored as the official BabyLM pipelines do (2025 protocol and 2024's).

* `tasks`      -- the 2024 task registry and JSONL reader;
* `scorer`     -- batched log-likelihoods, the 2024 harness's metrics, `evaluate_model`;
* `suite_data` -- the 2025 evaluation data, from the official zip or a folder;
* `ranking`    -- the 2025 completion-ranking rules (BLiMP, supplement, EWoK, entity tracking, WUG);
* `reading`    -- the 2025 reading task (surprisal, R^2-gain regressions); `stats` -- Spearman, OLS R^2;
* `suite`      -- which data each 2025 task reads and how its score is formed, `evaluate_suite`;
* `submission` -- official predictions files and the leaderboard submission file;
* `report`     -- results file, tables, heat-map and learning curves (`python -m babykd.evaluation.report`);
* `callback`   -- `EvaluationCallback` for the HF Trainer (2024 protocol, in memory).

The command line is `python -m babykd.evaluate MODEL_DIR`.
"""

from babykd.evaluation.callback import EvaluationCallback
from babykd.evaluation.scorer import evaluate_model, score_items
from babykd.evaluation.tasks import DEFAULT_TASKS, TASK_FOLDERS, Item, Task, TaskDataError, load_task, load_tasks

__all__ = [
    "DEFAULT_TASKS",
    "EvaluationCallback",
    "TASK_FOLDERS",
    "Item",
    "Task",
    "TaskDataError",
    "evaluate_model",
    "load_task",
    "load_tasks",
    "score_items",
]
