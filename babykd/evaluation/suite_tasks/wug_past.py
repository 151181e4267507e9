"""WUG past tense: as the adjective task, three forms per item."""

from babykd.evaluation.suite_tasks import SuiteTask
from babykd.evaluation.suite_tasks.wug_adj import decode_wug

TASK = SuiteTask(
    name="wug_past_tense", column=5, full_folder="full_eval/wug_past_tense", fast_folder="fast_eval/wug_past_tense",
    scoring="correlation", decode=decode_wug("wug_past"), submission_key="wug_past", aliases=("wug_past",), chance=0.0,
    items=50,
)
