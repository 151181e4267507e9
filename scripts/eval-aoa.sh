#!/usr/bin/env bash
# Age-of-acquisition evaluation of a run (BabyLM 2025): surprisal of the CDI words at each of its
# revisions/chck_* checkpoints, sigmoid fits, Pearson r with children's AoA. Runs from any directory.
#
# Usage: scripts/eval-aoa.sh MODEL_DIR [extra args for `python -m babykd.evaluation.aoa`, e.g. --track strict]
# Results: MODEL_DIR/eval/results.json (task "aoa") and MODEL_DIR/eval/predictions/main/aoa.json (the
# official surprisal.json, the submission file's "aoa" part).
BABYKD_EVAL_MODULE=babykd.evaluation.aoa exec bash "$(dirname "${BASH_SOURCE[0]}")/eval-all.sh" "$@"
