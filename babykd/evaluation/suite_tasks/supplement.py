"""The BLiMP supplement: minimal pairs as BLiMP, one UID per file."""

from babykd.evaluation.suite_tasks import SuiteTask
from babykd.evaluation.suite_tasks.blimp import decode_pair

#: Subtask -> items: what the official collate step asserts (the released files' counts).
ITEMS: dict[str, int] = {
    "hypernym": 842, "qa_congruence_easy": 64, "qa_congruence_tricky": 165, "subject_aux_inversion": 3867,
    "turn_taking": 280,
}

TASK = SuiteTask(
    name="blimp_supplement", column=1, full_folder="full_eval/supplement_filtered",
    fast_folder="fast_eval/supplement_fast", scoring="accuracy", decode=decode_pair,
    submission_key="blimp_supplement", legacy_folder="supplement_filtered", aliases=("supplement",), chance=0.5,
    items=ITEMS, fast_subtasks=frozenset(ITEMS),
)
