#!/usr/bin/env bash
# (Super)GLUE fine-tuning evaluation of a checkpoint (BabyLM 2025): BoolQ, MNLI, MRPC, MultiRC, QQP, RTE,
# WSC with the official hyperparameters; a GPU job at full size. Runs from any directory.
#
# Usage: scripts/eval-finetune.sh MODEL_DIR [TASK...] [extra args for `python -m babykd.evaluation.finetune`]
# Results: MODEL_DIR/eval/results.json (one entry per task) and MODEL_DIR/eval/finetune/TASK/predictions.json.
set -euo pipefail
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: $0 MODEL_DIR [TASK...] [extra args for python -m babykd.evaluation.finetune]" >&2
  exit 2
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$REPO/.venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m babykd.evaluation.finetune "$@"
