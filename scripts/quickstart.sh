#!/usr/bin/env bash
# The README's first command: install, then run the whole pipeline on the built-in default
# (generated corpus -> tokenizer -> two tiny teachers -> distilled students -> evaluation -> table).
# Extra arguments go to the demo, e.g. `bash scripts/quickstart.sh --real` for the BabyLM recipe.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/install.sh"
exec "$REPO/.venv/bin/python" -m babykd.demo "$@"
