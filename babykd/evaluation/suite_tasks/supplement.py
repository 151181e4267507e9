"""The BLiMP supplement: minimal pairs as BLiMP, one UID per file."""

from babykd.evaluation.suite_tasks import SuiteTask
from babykd.evaluation.suite_tasks.blimp import decode_pair

TASK = SuiteTask(
    name="blimp_supplement", column=1, full_folder="full_eval/supplement_filtered",
    fast_folder="fast_eval/supplement_fast", scoring="accuracy", decode=decode_pair,
    submission_key="blimp_supplement", legacy_folder="supplement_filtered", aliases=("supplement",), chance=0.5,
)
