"""Entity tracking: which option continues a long shared prefix; UID = split + number of operations."""

from typing import Any

from babykd.evaluation import ranking
from babykd.evaluation.suite_tasks import SuiteTask, stem


def decode(where: str, record: dict[str, Any]) -> ranking.Candidates:
    prefix, options = record["input_prefix"], tuple(record["options"])
    return ranking.Candidates(f"{stem(where)}_{record['numops']}_ops", tuple(prefix + o for o in options), options)


#: <split>_<numops>_ops -> items: what the official collate step asserts (the released files' counts).
ITEMS: dict[str, int] = {
    "regular_0_ops": 606, "regular_1_ops": 607, "regular_2_ops": 606, "regular_3_ops": 606, "regular_4_ops": 568,
    "regular_5_ops": 159, "ambiref_0_ops": 607, "ambiref_1_ops": 607, "ambiref_2_ops": 604, "ambiref_3_ops": 604,
    "ambiref_4_ops": 615, "ambiref_5_ops": 187, "move_contents_0_ops": 605, "move_contents_1_ops": 606,
    "move_contents_2_ops": 605, "move_contents_3_ops": 606, "move_contents_4_ops": 529, "move_contents_5_ops": 156,
}

TASK = SuiteTask(
    name="entity_tracking", column=3, full_folder="full_eval/entity_tracking",
    fast_folder="fast_eval/entity_tracking_fast", scoring="accuracy", decode=decode, submission_key="entity_tracking",
    items=ITEMS, fast_subtasks=frozenset(k for k in ITEMS if k.startswith("regular_")),  # the fast set: regular only
)
