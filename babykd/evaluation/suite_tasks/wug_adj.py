"""WUG adjective nominalization: the model's preference between two forms against the human ratio."""

from typing import Any

from babykd.evaluation import ranking
from babykd.evaluation.suite_tasks import SuiteTask


def decode_wug(uid: str):
    """A WUG record reader: tab-separated sentences, each scored whole, with the human ratio."""
    def decode(where: str, record: dict[str, Any]) -> ranking.Candidates:
        sentences = tuple(record["sentences"].split("\t"))
        return ranking.Candidates(uid, sentences, sentences, {"ratio": float(record["ratio"])})
    return decode


TASK = SuiteTask(
    name="wug_adj_nominalization", column=4, full_folder="full_eval/wug_adj_nominalization",
    fast_folder="fast_eval/wug_adj_nominalization", scoring="correlation", decode=decode_wug("wug_adj"),
    submission_key="wug_adj", aliases=("wug_adj",), chance=0.0,
    items=200,
)
