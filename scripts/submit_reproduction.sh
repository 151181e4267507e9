#!/bin/bash
# Submit the whole reproduction to SLURM in one command, each stage waiting for the one before
# with --dependency=afterok (a failed stage cancels what depends on it):
#
#   1. data      train_baselines.slurm --prepare-data: tokenizer and token caches, once
#   2. pretrain  train_baselines.slurm as an array: the 7 recipes of config/runs/pretrain/
#                (teachers GPT2-705M, Llama-360M; baselines, two of them DistilledGPT's teachers)
#   3. students  distill-BabyLlama1-58M-strict.sh, distill-DistilledGPT-44M-strict.sh,
#                dkds_noaux-PalenkaLlama1-58M-strict.sh
#   4. eval      eval-all_baselines.slurm as an array over the 10 runs (BLiMP, supplement, EWoK)
#   with --grid, after 2:  grid.slurm (the 25-point alpha/beta grid), then
#                          train_gridsearch_finalist.slurm (the best point, seeds 1 and 2)
#
# Usage: scripts/submit_reproduction.sh [--grid] [--dry-run] [--set KEY=VALUE ...]
#   --set      overrides for every training job, e.g. --set training.epochs=1
#   --dry-run  print the sbatch commands instead of submitting (job ids shown as <stage>)
# Environment (see scripts/common.sh): BABYKD_MODELS (runs, default models/), BABYKD_CORPUS,
# BABYKD_EVAL_DATA, BABYKD_PYTHON; and
#   BABYKD_SBATCH_ARGS  sbatch options for every job, e.g. "--partition=gpu --account=abc123"
#   BABYKD_LOGS         job logs (default $BABYKD_MODELS/logs)
# SBATCH_* variables work as for any sbatch. Jobs skip finished runs and resume interrupted
# ones, so running this again after a failure only redoes what is missing.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

grid=0 dry_run=0
while (($#)) && [[ $1 != --set ]]; do
    case $1 in
        --grid) grid=1 ;;
        --dry-run) dry_run=1 ;;
        *) babykd_die "unknown option $1; usage: submit_reproduction.sh [--grid] [--dry-run] [--set KEY=VALUE ...]" ;;
    esac
    shift
done
sets=("$@")
babykd_absolute_paths BABYKD_CORPUS BABYKD_EVAL_DATA
babykd_submit_setup "$dry_run"

pretrain=()
for config in "$BABYKD_REPO"/config/runs/pretrain/*.yaml; do pretrain+=("$(basename "$config" .yaml)"); done
students=(BabyLlama1-58M-strict:distill-BabyLlama1-58M-strict.sh
          DistilledGPT-44M-strict:distill-DistilledGPT-44M-strict.sh
          PalenkaLlama1-58M-strict-L0.1-H0.5:dkds_noaux-PalenkaLlama1-58M-strict.sh)

data=$(babykd_submit data "" "" train_baselines.slurm --prepare-data "${sets[@]}")
teachers=$(babykd_submit pretrain "$data" "0-$((${#pretrain[@]} - 1))" train_baselines.slurm "${pretrain[@]}" "${sets[@]}")
trained=$teachers
runs=("${pretrain[@]}")
for student in "${students[@]}"; do
    trained+=:$(babykd_submit "${student%%:*}" "$teachers" "" "${student#*:}" "${sets[@]}")
    runs+=("${student%%:*}")
done
evaluation=$(babykd_submit eval "$trained" "0-$((${#runs[@]} - 1))" eval-all_baselines.slurm "${runs[@]}")
summary="data $data -> pretrain $teachers -> students ${trained#*:} -> eval $evaluation"
if ((grid)); then
    grid_file=$BABYKD_REPO/config/grid/palenka-L-H.yaml
    size=$("$BABYKD_PYTHON" -m babykd.grid list "$grid_file" | wc -l)
    points=$(babykd_submit grid "$teachers" "0-$((size - 1))" grid.slurm "$grid_file" "${sets[@]}")
    summary+="; grid $points -> finalist $(babykd_submit finalist "$points" "" train_gridsearch_finalist.slurm "${sets[@]}")"
fi
babykd_log "submitted: $summary (runs in $BABYKD_MODELS, logs in $_BABYKD_LOGS)"
