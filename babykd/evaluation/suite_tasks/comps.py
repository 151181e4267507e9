"""COMPS: a property phrase after an acceptable and an unacceptable prefix (the 2025 hidden task)."""

from typing import Any

from babykd.evaluation import ranking
from babykd.evaluation.suite_tasks import SuiteTask, stem


def decode(where: str, record: dict[str, Any]) -> ranking.Candidates:
    phrase = record["property_phrase"]
    sentences = (f"{record['prefix_acceptable']} {phrase}", f"{record['prefix_unacceptable']} {phrase}")
    return ranking.Candidates(stem(where), sentences, (phrase, phrase))


TASK = SuiteTask(
    name="comps", column=6, full_folder="full_eval/comps", fast_folder=None, scoring="accuracy", decode=decode,
    submission_key="comps", chance=0.5,
)
