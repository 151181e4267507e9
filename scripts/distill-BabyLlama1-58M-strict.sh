#!/bin/bash
# BabyLlama: Llama-360M + GPT2-705M -> Llama-58M (0.5 CE + 0.5 KL).
# Recipe: config/runs/distill/BabyLlama1-58M-strict.yaml;
# teachers: $BABYKD_MODELS/{Llama-360M-strict,GPT2-705M-strict}
# (train them first: scripts/train_baselines.slurm Llama-360M-strict GPT2-705M-strict).
# Resumes from the newest checkpoint; a finished run is skipped. Runs from any directory:
#
#   sbatch scripts/distill-BabyLlama1-58M-strict.sh [--set KEY=VALUE ...]
#   sbatch --dependency=afterok:TEACHERS_JOB scripts/distill-BabyLlama1-58M-strict.sh
#   sbatch --gres=gpu:2 scripts/distill-BabyLlama1-58M-strict.sh  # 2 GPUs (torchrun); --nodes=N: srun
#   bash scripts/distill-BabyLlama1-58M-strict.sh                 # here, without SLURM
#
# Output: $BABYKD_MODELS/BabyLlama1-58M-strict/. Resources are defaults: sbatch options
# (or SBATCH_* variables) override them. Environment: scripts/common.sh.
#SBATCH --job-name=babykd-babyllama
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out

# sbatch runs a spool copy of this file: find scripts/ from $BABYKD_REPO, this file's folder, or
# the script path sbatch recorded (scontrol's Command=, relative to the submit directory).
_here=${BABYKD_REPO:-$(dirname "$0")/..}/scripts
[[ -f $_here/common.sh ]] || _here=$(cd "${SLURM_SUBMIT_DIR:-.}" && cd "$(dirname "$(scontrol show job \
    "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' | head -n 1)")" && pwd)
source "$_here/common.sh" || exit 2

babykd_train distill.py "$BABYKD_REPO/config/runs/distill/BabyLlama1-58M-strict.yaml" "$@"
