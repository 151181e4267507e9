"""COMPS: a property phrase after an acceptable and an unacceptable prefix (the 2025 hidden task)."""

from typing import Any

from babykd.evaluation import ranking
from babykd.evaluation.suite_tasks import SuiteTask, stem


def decode(where: str, record: dict[str, Any]) -> ranking.Candidates:
    phrase = record["property_phrase"]
    sentences = (f"{record['prefix_acceptable']} {phrase}", f"{record['prefix_unacceptable']} {phrase}")
    return ranking.Candidates(stem(where), sentences, (phrase, phrase))


#: Subtask -> items (the official collate step's; COMPS' data is not distributed with the 2025 zip).
ITEMS: dict[str, int] = {"base": 49340, "wugs": 13896, "wugs_dist_before": 13896, "wugs_dist_in_between": 13896}

TASK = SuiteTask(
    name="comps", column=6, full_folder="full_eval/comps", fast_folder=None, scoring="accuracy", decode=decode,
    submission_key="comps", chance=0.5,
    items=ITEMS,
)
