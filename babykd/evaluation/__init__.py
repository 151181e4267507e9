"""Built-in zero-shot evaluation: BLiMP, BLiMP supplement and EWoK scored as the official BabyLM 2024 pipeline does.

* `tasks`    -- the task registry and JSONL reader;
* `scorer`   -- batched log-likelihoods, the harness's metrics, `evaluate_model`;
* `report`   -- results file, tables and figure (`python -m babykd.evaluation.report`);
* `callback` -- `EvaluationCallback` for the HF Trainer.

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
