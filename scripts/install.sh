#!/usr/bin/env bash
# Create .venv in the repository and install the pinned requirements plus this package (editable).
# Safe to run again: an existing .venv is reused and brought up to the pins.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
[ -x "$REPO/.venv/bin/python" ] || "$PYTHON" -m venv "$REPO/.venv"
"$REPO/.venv/bin/python" -m pip install -q --upgrade pip
"$REPO/.venv/bin/python" -m pip install -q -r "$REPO/requirements.txt" -e "$REPO"
echo "installed into $REPO/.venv"
