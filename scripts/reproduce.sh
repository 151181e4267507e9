#!/usr/bin/env bash
# One command for the results table: tokenizer -> teachers -> baselines -> students -> evaluation
# -> RESULTS.md + .csv + figure. Usage: scripts/reproduce.sh [CORPUS] [--budget tiny|lease|cpu|fast|full] [--seeds N]
# [--smoke] (a budget's plan at the tiny budget's sizes, a CPU check). CORPUS defaults to
# ../shared/corpus/substitute_10M.zip. Rerunning continues where it stopped. On a GPU lease machine use
# benchmarks/gpu_lease.sh --reproduce OUT (it supplies the data from the carried pack).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.venv/bin/python"; [ -x "$PY" ] || PY=python3
exec "$PY" -m babykd.reproduce "$@"
