"""BLiMP (filtered): minimal pairs, the grammatical sentence scored against the other as a whole."""

from typing import Any

from babykd.evaluation import ranking
from babykd.evaluation.suite_tasks import SuiteTask, stem


def decode_pair(where: str, record: dict[str, Any]) -> ranking.Candidates:
    """A BLiMP-style record: both whole sentences; UID from the record (BLiMP) or the file (supplement)."""
    good, bad = record["sentence_good"], record["sentence_bad"]
    uid = record["UID"] if "field" in record else stem(where)
    return ranking.Candidates(uid, (good, bad), (good, bad))


TASK = SuiteTask(
    name="blimp_filtered", column=0, full_folder="full_eval/blimp_filtered", fast_folder="fast_eval/blimp_fast",
    scoring="accuracy", decode=decode_pair, submission_key="blimp", legacy_folder="blimp_filtered",
    aliases=("blimp",), chance=0.5,
)
