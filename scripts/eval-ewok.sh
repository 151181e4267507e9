#!/usr/bin/env bash
# EWoK filtered of MODEL. Usage: scripts/eval-ewok.sh MODEL [extra args of eval-all.sh]
exec bash "$(dirname "${BASH_SOURCE[0]}")/eval-all.sh" "$@" --tasks ewok_filtered
