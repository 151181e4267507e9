#!/usr/bin/env bash
# Zero-shot evaluation of MODEL (a checkpoint dir or hub name) on BLiMP filtered, BLiMP supplement
# and EWoK filtered, scored as the official BabyLM 2025 pipeline does (--protocol 2024: the 2024
# lm-eval-harness arithmetic; eval-zero-shot.sh: the whole 2025 suite). Runs from any directory.
#
# Usage: scripts/eval-all.sh MODEL [extra args for `python -m babykd.evaluate`, e.g. --dtype bf16]
# Results: MODEL/eval/results.json (or --output), merged with tasks scored there before.
# eval-blimp.sh and eval-ewok.sh call this script with their --tasks appended; eval-aoa.sh and
# eval-finetune.sh call it with BABYKD_EVAL_MODULE set to their module.
set -euo pipefail
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: $0 MODEL [extra args for python -m ${BABYKD_EVAL_MODULE:-babykd.evaluate}]" >&2
  exit 2
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$REPO/.venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m "${BABYKD_EVAL_MODULE:-babykd.evaluate}" "$@"
