#!/usr/bin/env bash
# (Super)GLUE fine-tuning evaluation of a checkpoint (BabyLM 2025): BoolQ, MNLI, MRPC, MultiRC, QQP, RTE,
# WSC with the official hyperparameters; a GPU job at full size. Runs from any directory.
#
# Usage: scripts/eval-finetune.sh MODEL_DIR [TASK...] [extra args for `python -m babykd.evaluation.finetune`]
# Results: MODEL_DIR/eval/results.json (one entry per task) and MODEL_DIR/eval/predictions/main/glue.json
# (the official predictions, the submission file's "glue" part).
BABYKD_EVAL_MODULE=babykd.evaluation.finetune exec bash "$(dirname "${BASH_SOURCE[0]}")/eval-all.sh" "$@"
