#!/usr/bin/env bash
# One command for the results table: tokenizer -> teachers -> baselines -> students -> evaluation
# -> RESULTS.md + figure. Usage: scripts/reproduce.sh [CORPUS] [--budget tiny|fast|full] [--seeds N]
# CORPUS defaults to ../shared/corpus/substitute_10M.zip. Rerunning continues where it stopped.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.venv/bin/python"; [ -x "$PY" ] || PY=python3
exec "$PY" -m babykd.reproduce "$@"
