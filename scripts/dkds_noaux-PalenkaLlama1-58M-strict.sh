#!/bin/bash
# PalenkaLlama: deeply-supervised KD without auxiliary classifiers (CE + 0.1 KL + 0.5 hidden MSE).
# Recipe: config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml;
# teachers: $BABYKD_MODELS/{Llama-360M-strict,GPT2-705M-strict}
# (train them first: scripts/train_baselines.slurm Llama-360M-strict GPT2-705M-strict).
# Resumes from the newest checkpoint; a finished run is skipped. Runs from any directory:
#
#   sbatch scripts/dkds_noaux-PalenkaLlama1-58M-strict.sh [--set KEY=VALUE ...]
#   sbatch --dependency=afterok:TEACHERS_JOB scripts/dkds_noaux-PalenkaLlama1-58M-strict.sh
#   sbatch --gres=gpu:2 scripts/dkds_noaux-PalenkaLlama1-58M-strict.sh   # 2 GPUs (torchrun)
#   sbatch --nodes=2 --gres=gpu:4 scripts/dkds_noaux-PalenkaLlama1-58M-strict.sh  # srun + torchrun
#   bash scripts/dkds_noaux-PalenkaLlama1-58M-strict.sh                  # here, without SLURM
#
# Output: $BABYKD_MODELS/PalenkaLlama1-58M-strict-L0.1-H0.5/. Resources are defaults: sbatch
# options (or SBATCH_* variables) override them. Environment: scripts/common.sh.
#SBATCH --job-name=babykd-palenka
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

babykd_train dskd_noaux.py "$BABYKD_REPO/config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml" "$@"
