#!/usr/bin/env bash
# BLiMP filtered + BLiMP supplement of MODEL. Usage: scripts/eval-blimp.sh MODEL [extra args of eval-all.sh]
exec bash "$(dirname "${BASH_SOURCE[0]}")/eval-all.sh" "$@" --tasks blimp_filtered blimp_supplement
