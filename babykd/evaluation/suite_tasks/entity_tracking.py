"""Entity tracking: which option continues a long shared prefix; UID = split + number of operations."""

from typing import Any

from babykd.evaluation import ranking
from babykd.evaluation.suite_tasks import SuiteTask, stem


def decode(where: str, record: dict[str, Any]) -> ranking.Candidates:
    prefix, options = record["input_prefix"], tuple(record["options"])
    return ranking.Candidates(f"{stem(where)}_{record['numops']}_ops", tuple(prefix + o for o in options), options)


TASK = SuiteTask(
    name="entity_tracking", column=3, full_folder="full_eval/entity_tracking",
    fast_folder="fast_eval/entity_tracking_fast", scoring="accuracy", decode=decode, submission_key="entity_tracking",
)
