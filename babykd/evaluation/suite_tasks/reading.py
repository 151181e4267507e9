"""Reading: surprisal against eye-tracking and self-paced reading times (a CSV; `evaluation/reading.py`)."""

from babykd.evaluation.suite_tasks import SuiteTask

TASK = SuiteTask(
    name="reading", column=7, full_folder="full_eval/reading", fast_folder="fast_eval/reading", scoring="reading",
    submission_key="reading",
    items=1726,
)
