"""EWoK (filtered): two targets after one context; only the target's tokens are scored."""

from typing import Any

from babykd.evaluation import ranking
from babykd.evaluation.suite_tasks import SuiteTask, stem


def decode_context_pair(where: str, record: dict[str, Any]) -> ranking.Candidates:
    """UID: the Domain (the official files have one per file, named so)."""
    context, targets = record["Context1"], (record["Target1"], record["Target2"])
    return ranking.Candidates(
        record.get("Domain", stem(where)), tuple(f"{context} {t}" for t in targets), tuple(f" {t}" for t in targets)
    )


#: Domain -> items: what the official collate step asserts (the released files' counts).
ITEMS: dict[str, int] = {
    "agent-properties": 2210, "material-dynamics": 770, "material-properties": 170, "physical-dynamics": 120,
    "physical-interactions": 556, "physical-relations": 818, "quantitative-properties": 314,
    "social-interactions": 294, "social-properties": 328, "social-relations": 1548, "spatial-relations": 490,
}

TASK = SuiteTask(
    name="ewok_filtered", column=2, full_folder="full_eval/ewok_filtered", fast_folder="fast_eval/ewok_fast",
    scoring="accuracy", decode=decode_context_pair, submission_key="ewok", legacy_folder="ewok_filtered",
    aliases=("ewok",), chance=0.5,
    items=ITEMS, fast_subtasks=frozenset(ITEMS),
)
