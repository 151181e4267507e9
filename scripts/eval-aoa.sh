#!/usr/bin/env bash
# Age-of-acquisition evaluation of a run (BabyLM 2025): surprisal of the CDI words at each of its
# revisions/chck_* checkpoints, sigmoid fits, Pearson r with children's AoA. Runs from any directory.
#
# Usage: scripts/eval-aoa.sh MODEL_DIR [extra args for `python -m babykd.evaluation.aoa`, e.g. --track strict]
# Results: MODEL_DIR/eval/results.json (task "aoa") and MODEL_DIR/eval/aoa/surprisal.json (official format).
set -euo pipefail
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: $0 MODEL_DIR [extra args for python -m babykd.evaluation.aoa]" >&2
  exit 2
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$REPO/.venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m babykd.evaluation.aoa "$@"
