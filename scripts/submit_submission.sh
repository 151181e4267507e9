#!/bin/bash
# Submit the BabyLM 2025/2026 submission of finished runs to SLURM as one chain per run, with
# eval-submission.slurm (`python -m babykd.submission RUN --stage STAGE`):
#
#   fast     an array over the run's revisions/chck_* (the fast suite of each)
#   full     the final model's full zero-shot suite
#   aoa      age of acquisition over the revisions
#   glue     an array over the GLUE tasks whose data is here (GPU)
#   collate  collate and validate the submission file, --dependency=afterok on all of the above
# The first four start together: full, AoA and the GLUE tasks merge into the same <run>/eval/results.json,
# each under <run>/eval/.results.lock (report.write_results), so none waits for another.
#
# Usage: scripts/submit_submission.sh [--dry-run] RUN... [ARGS]
#   RUN      run names in $BABYKD_MODELS or run directories
#   ARGS     options for every stage of babykd.submission (--dtype bf16, --epochs 1, --max-train-examples 64, ...)
#   --dry-run  print the sbatch commands instead of submitting (job ids shown as <stage>)
# Environment: as submit_reproduction.sh (BABYKD_MODELS, BABYKD_EVAL_DATA, BABYKD_EVAL_DATA_2025,
# BABYKD_SBATCH_ARGS, BABYKD_LOGS, SBATCH_*). Every unit done already is skipped, so running this
# again after a failure only redoes what is missing.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

dry_run=0
[[ ${1:-} != --dry-run ]] || { dry_run=1; shift; }
babykd_split_items "$@"
((${#BABYKD_ITEMS[@]})) || babykd_die "usage: submit_submission.sh [--dry-run] RUN... [ARGS]"
babykd_absolute_paths BABYKD_EVAL_DATA BABYKD_EVAL_DATA_2025
babykd_submit_setup "$dry_run"

# array_of STAGE: "0-(N-1)" for the N units of STAGE in $units ("STAGE NAME" lines), "" when it has none.
array_of() {
    local n
    n=$(grep -c "^$1 " <<<"$units") || true
    ((n == 0)) || echo "0-$((n - 1))"
}

# stage STAGE DEPENDENCY_IDS ARRAY: submit one stage of $run.
stage() { babykd_submit "$1-$(basename "$run")" "$2" "$3" eval-submission.slurm "$run" --stage "$1" "${BABYKD_OPTIONS[@]}"; }

for name in "${BABYKD_ITEMS[@]}"; do
    run=$name
    [[ -d $run ]] || run=$BABYKD_MODELS/$name
    [[ -f $run/config.json ]] || babykd_die "no trained model at $run (train '$name' first)"
    run=$(realpath "$run")
    units=$("$BABYKD_PYTHON" -m babykd.submission "$run" --list fast glue "${BABYKD_OPTIONS[@]}") || exit 2
    revisions=$(array_of fast)
    fast=$([[ -z $revisions ]] || stage fast "" "$revisions")
    full=$(stage full "" "")
    aoa=$(stage aoa "" "")
    glue_tasks=$(array_of glue)
    glue=$([[ -z $glue_tasks ]] || stage glue "" "$glue_tasks")
    after=$full:$aoa${fast:+:$fast}${glue:+:$glue}
    collate=$(stage collate "$after" "")
    babykd_log "submitted $run: fast ${fast:-none} (${revisions:-no revisions}), full $full, aoa $aoa, glue ${glue:-none} (${glue_tasks:-no tasks}) side by side; collate $collate after all (logs in $_BABYKD_LOGS)"
done
