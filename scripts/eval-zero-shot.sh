#!/usr/bin/env bash
# The BabyLM 2025/2026 zero-shot suite of MODEL_DIR (BLiMP, supplement, EWoK, entity tracking, WUG x2,
# reading; COMPS when its data exists), scored as the official 2025 pipeline does. Runs from any directory.
#
# Usage: scripts/eval-zero-shot.sh MODEL_DIR [--fast] [--revision chck_7M] [extra args of python -m babykd.evaluate]
# Results: MODEL_DIR/eval/results.json (a revision's: MODEL_DIR/eval/revisions/REV/results.json), the official
# predictions under MODEL_DIR/eval/predictions/, and the submission file
# MODEL_DIR/eval/all_full_preds_and_fast_scores_causal.json. Tasks without data are named, not scored.
exec bash "$(dirname "${BASH_SOURCE[0]}")/eval-all.sh" "$@" --tasks all
