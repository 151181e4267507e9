# shellcheck shell=bash
# Shared by the batch scripts in this folder (sourced, never run): where the repository, the
# python and the outputs are, how one training is launched on 1 process, N GPUs of one node or
# several nodes, and the preemption protocol. Every script works under `sbatch` and under plain
# `bash` (then it runs on this machine, without requeueing).
#
# Environment (all optional; see scripts/README.md):
#   BABYKD_REPO       the repository (default: the folder above this file)
#   BABYKD_PYTHON     interpreter (default: $BABYKD_REPO/.venv/bin/python, else python3)
#   BABYKD_MODELS     output root of every run (default: $BABYKD_REPO/models); distillation recipes
#                     find their teachers there (`models/<teacher>` in a recipe -> $BABYKD_MODELS/<teacher>)
#   BABYKD_CORPUS     training corpus, zip or folder (default: the config's data.corpus,
#                     ../shared/corpus/substitute_10M.zip for the strict-small recipes)
#   BABYKD_EVAL_DATA  evaluation data folder (default: ../shared/evaluation_data; read by babykd.evaluate)
#   BABYKD_NPROC      training processes per node (default: $SLURM_GPUS_ON_NODE, else 1)
#   BABYKD_LAUNCHER   auto | python | torchrun | srun (default auto: srun + torchrun on several
#                     nodes, torchrun for several processes, else plain python)
#   MASTER_PORT       rendezvous port of multi-node runs (default: 20000 + job id modulo 20000)
#   OMP_NUM_THREADS   threads per process (default: the job's CPUs per task / processes, at least 1)

set -euo pipefail

BABYKD_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BABYKD_REPO
export PYTHONPATH="$BABYKD_REPO${PYTHONPATH:+:$PYTHONPATH}"
if [[ -z ${BABYKD_PYTHON:-} ]]; then
    BABYKD_PYTHON=$BABYKD_REPO/.venv/bin/python
    [[ -x $BABYKD_PYTHON ]] || BABYKD_PYTHON=$(command -v python3)
fi
BABYKD_MODELS=$(realpath -m "${BABYKD_MODELS:-$BABYKD_REPO/models}")
export BABYKD_PYTHON BABYKD_MODELS
#: Exit status of a training stopped by SIGTERM/SIGUSR1 after saving a checkpoint
#: (babykd.run.preemption.PREEMPTED_EXIT_CODE; tests/test_slurm_jobs.py checks they agree).
BABYKD_PREEMPTED=99
#: Written last into a finished run directory (babykd.training.PROVENANCE_FILE).
BABYKD_FINISHED_FILE=provenance.json

babykd_log() { printf '[babykd %s job %s] %s\n' "$(date +%T)" "${SLURM_JOB_ID:-local}" "$*" >&2; }
babykd_die() { babykd_log "ERROR: $*"; exit 2; }

# Split "ITEM... [--option ...]" into BABYKD_ITEMS (the leading non-option words) and
# BABYKD_OPTIONS (everything from the first word starting with "-").
babykd_split_items() {
    BABYKD_ITEMS=()
    while (($#)) && [[ $1 != -* ]]; do BABYKD_ITEMS+=("$1"); shift; done
    BABYKD_OPTIONS=("$@")
}

# Under a job array keep only item number $SLURM_ARRAY_TASK_ID of BABYKD_ITEMS, so
# `sbatch --array=0-3 X.slurm a b c d` runs one item per task (and all of them without --array).
babykd_pick_task() {
    [[ -n ${SLURM_ARRAY_TASK_ID:-} ]] || return 0
    local task=$SLURM_ARRAY_TASK_ID
    ((task < ${#BABYKD_ITEMS[@]})) || babykd_die "array task $task, but only ${#BABYKD_ITEMS[@]} items: ${BABYKD_ITEMS[*]}"
    BABYKD_ITEMS=("${BABYKD_ITEMS[task]}")
}

# A run config given as a path, or as a recipe name looked up in config/runs/<folder>/.
babykd_config_path() {
    local name=$1 folder=$2
    if [[ -f $name ]]; then realpath "$name"; return; fi
    [[ -f $BABYKD_REPO/config/runs/$folder/$name.yaml ]] \
        || babykd_die "no run config '$name' (neither a file nor config/runs/$folder/$name.yaml)"
    echo "$BABYKD_REPO/config/runs/$folder/$name.yaml"
}

# Print the run directory of CONFIG (a run config, or a grid file: then an empty line) under
# the user's `--set` overrides in ARGS, then one per line the overrides every job puts first
# (so the user's own `--set` wins): output.root=$BABYKD_MODELS, data.corpus=$BABYKD_CORPUS
# when set, and the recipe's teachers moved from the repository's models/ to $BABYKD_MODELS.
# A bad config or override fails here, before anything is launched.
babykd_run_plan() {
    "$BABYKD_PYTHON" - "$@" <<'PY'
import json, os, sys
from pathlib import Path

from babykd import REPO_ROOT
from babykd.config import ConfigError, load_run_config, read_yaml

config_path, *argv = sys.argv[1:]
user, in_set = [], False
for token in argv:
    if token == "--set":
        in_set = True
    elif token in ("--resume", "--allow-config-change"):  # the scripts always resume; a change must be asked for
        in_set = False
    elif in_set and not token.startswith("-"):
        user.append(token)
    else:
        sys.exit(f"{config_path}: unexpected argument {token!r}: expected --set KEY=VALUE ...")
models = Path(os.environ["BABYKD_MODELS"])
ours = [f"output.root={models}"]
if os.environ.get("BABYKD_CORPUS"):
    ours.append(f"data.corpus={Path(os.environ['BABYKD_CORPUS']).resolve()}")
try:
    grid = "axes" in read_yaml(config_path)
    if grid:
        from babykd.grid import load_grid
        recipe = load_run_config(load_grid(config_path).base)
    else:
        recipe = load_run_config(config_path)
    if recipe.distillation is not None:
        default_home = REPO_ROOT / "models"
        teachers = [str(models / Path(t).name) if Path(t).parent == default_home else t
                    for t in recipe.distillation.teachers]
        ours.append(f"distillation.teachers={json.dumps(teachers)}")
    run_dir = "" if grid else load_run_config(config_path, [*ours, *user]).output.run_dir
except ConfigError as error:
    sys.exit(f"config error: {error}")
print(run_dir, *ours, sep="\n")
PY
}

# Train one run: ENTRY (train.py, distill.py, dskd_noaux.py) on CONFIG with ARGS (`--set ...`),
# always with --resume; a finished run is skipped.
babykd_train() {
    local entry=$1 config=$2 plan
    shift 2
    plan=$(babykd_run_plan "$config" "$@") || exit 2
    local lines run_dir
    mapfile -t lines <<<"$plan"
    run_dir=${lines[0]}
    if [[ -f $run_dir/$BABYKD_FINISHED_FILE ]]; then
        babykd_log "$run_dir is finished already ($BABYKD_FINISHED_FILE): skipped"
        return 0
    fi
    babykd_log "training $run_dir from $config"
    babykd_launch "$BABYKD_REPO/$entry" "$config" --set "${lines[@]:1}" "$@" --resume
}

# Train the runs named by the leading arguments (config paths or names in config/runs/FOLDER/,
# default: every config there), one per array task or all in order; `--set ...` applies to all.
# `--prepare-data` as the first option only prepares the first run's data (babykd_prepare_data).
babykd_train_runs() {
    local entry=$1 folder=$2 name
    shift 2
    babykd_split_items "$@"
    ((${#BABYKD_ITEMS[@]})) || BABYKD_ITEMS=("$BABYKD_REPO/config/runs/$folder"/*.yaml)
    if [[ ${BABYKD_OPTIONS[0]:-} == --prepare-data ]]; then
        name=$(babykd_config_path "${BABYKD_ITEMS[0]}" "$folder") || exit 2
        babykd_prepare_data "$name" "${BABYKD_OPTIONS[@]:1}"
        return
    fi
    babykd_pick_task
    local items=("${BABYKD_ITEMS[@]}") options=("${BABYKD_OPTIONS[@]}") config
    for name in "${items[@]}"; do
        config=$(babykd_config_path "$name" "$folder") || exit 2
        babykd_train "$entry" "$config" "${options[@]}"
    done
}

# Train tokenizer and token caches of CONFIG (+ `--set ...`) once, so runs started together on
# a fresh output root do not all train the same tokenizer at the same time.
babykd_prepare_data() {
    local plan lines
    plan=$(babykd_run_plan "$@") || exit 2
    mapfile -t lines <<<"$plan"
    babykd_log "preparing tokenizer and token caches for $1"
    "$BABYKD_PYTHON" - "$1" "${lines[@]:1}" "${@:2}" <<'PY'
import sys
from babykd.config import load_run_config
from babykd.training import load_data

config_path, *argv = sys.argv[1:]
config = load_run_config(config_path, [a for a in argv if not a.startswith("--")])
data = load_data(config)
print("tokenizer and caches ready:", data.stats["tokenizer"]["dir"], data.cache_dir, f"{data.train_tokens:,} train tokens")
PY
}

# Evaluate the runs named by the leading arguments (run names under $BABYKD_MODELS or model
# directories; default: every pretraining recipe's run), one per array task or all in order,
# with `python -m $BABYKD_EVAL_MODULE RUN DEFAULT_ARGS... OPTIONS...` (later options win);
# BABYKD_EVAL_MODULE defaults to babykd.evaluate (the AoA and fine-tuning jobs set their own).
babykd_evaluate_runs() {
    local defaults=() name dir
    while (($#)) && [[ $1 != --- ]]; do defaults+=("$1"); shift; done
    shift
    babykd_split_items "$@"
    if ((${#BABYKD_ITEMS[@]} == 0)); then
        for name in "$BABYKD_REPO"/config/runs/pretrain/*.yaml; do BABYKD_ITEMS+=("$(basename "$name" .yaml)"); done
    fi
    babykd_pick_task
    local items=("${BABYKD_ITEMS[@]}") options=("${BABYKD_OPTIONS[@]}")
    for name in "${items[@]}"; do
        dir=$name
        [[ -d $dir ]] || dir=$BABYKD_MODELS/$name
        [[ -f $dir/config.json ]] || babykd_die "no trained model at $dir (train '$name' first)"
        babykd_log "evaluating $dir"
        BABYKD_LAUNCHER=python babykd_launch -m "${BABYKD_EVAL_MODULE:-babykd.evaluate}" "$dir" "${defaults[@]}" "${options[@]}"
    done
}

# ----------------------------------------------------------------------------- submitting chains
# Jobs inherit the environment: make the path in each named variable absolute (they may run in
# another directory) and fail now, not in a job hours later, when one does not exist.
babykd_absolute_paths() {
    local var path
    for var in "$@"; do
        [[ -n ${!var:-} ]] || continue
        path=$(realpath -e "${!var}") || babykd_die "$var=${!var} does not exist"
        export "$var=$path"
    done
}
# For the submit_*.sh scripts: the job log folder (BABYKD_LOGS, default $BABYKD_MODELS/logs), the
# site's sbatch options (BABYKD_SBATCH_ARGS) and DRY_RUN (1: print the sbatch lines instead).
babykd_submit_setup() {
    _BABYKD_DRY_RUN=$1
    _BABYKD_LOGS=$(realpath -m "${BABYKD_LOGS:-$BABYKD_MODELS/logs}")
    read -r -a _BABYKD_SITE_ARGS <<<"${BABYKD_SBATCH_ARGS:-}"
    ((_BABYKD_DRY_RUN)) || mkdir -p "$_BABYKD_LOGS"
}
# babykd_submit STAGE DEPENDENCY_IDS ARRAY SCRIPT ARGS...: sbatch one job of scripts/ and print its
# id (":"-joined DEPENDENCY_IDS become afterok; ARRAY "" for a plain job; dry run: "<STAGE>").
babykd_submit() {
    local stage=$1 after=$2 array=$3 script=$4
    shift 4
    local cmd=(sbatch --parsable "--job-name=babykd-$stage" "${_BABYKD_SITE_ARGS[@]}")
    if [[ -n $array ]]; then
        cmd+=("--array=$array" "--output=$_BABYKD_LOGS/%x-%A_%a.out")
    else
        cmd+=("--output=$_BABYKD_LOGS/%x-%j.out")
    fi
    [[ -z $after ]] || cmd+=("--dependency=afterok:$after")
    cmd+=("$BABYKD_REPO/scripts/$script" "$@")
    if ((_BABYKD_DRY_RUN)); then
        printf '%q ' "${cmd[@]}" >&2 && echo >&2
        echo "<$stage>"
    else
        "${cmd[@]}" | cut -d';' -f1
    fi
}
# ----------------------------------------------------------------------------- launching

# Run `python ARGS...` (a script path or `-m module`, then its arguments) as the job's training:
#   python    one process (CPU, or one GPU);
#   torchrun  `torchrun --standalone --nproc_per_node=N` on this node;
#   srun      one torchrun per node through srun, rendezvous (c10d) on the job's first node.
# SIGUSR1/SIGTERM to this shell are passed on to the training processes, which save a checkpoint
# at the next step and exit 99. After SIGUSR1 (`#SBATCH --signal=B:USR1@120`: the time limit is
# near) the job requeues itself and its next start resumes from that checkpoint. After SIGTERM
# (scancel, preemption, the time limit itself) SLURM decides: a cancelled job stays cancelled,
# one preempted with PreemptMode=REQUEUE is requeued by SLURM. torchrun ignores both signals
# (they would kill it, or make it kill its workers on a 30 s timer) and reports its workers'
# exit as 1, so "a signal came and it stopped with an error" also counts as stopped by it.
babykd_launch() {
    local nodes=${SLURM_JOB_NUM_NODES:-1} nproc=${BABYKD_NPROC:-${SLURM_GPUS_ON_NODE:-1}}
    _BABYKD_MODE=${BABYKD_LAUNCHER:-auto}
    if [[ $_BABYKD_MODE == auto ]]; then
        if ((nodes > 1)); then _BABYKD_MODE=srun; elif ((nproc > 1)); then _BABYKD_MODE=torchrun; else _BABYKD_MODE=python; fi
    fi
    local cpus=${SLURM_CPUS_PER_TASK:-1}
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$((cpus / nproc > 0 ? cpus / nproc : 1))}
    local ignore=(bash -c 'trap "" USR1 TERM; exec "$@"' ignore-signals)
    local torchrun=("$BABYKD_PYTHON" -m torch.distributed.run --nproc_per_node="$nproc")
    local cmd
    case $_BABYKD_MODE in
        python) cmd=("$BABYKD_PYTHON" "$@") ;;
        torchrun) cmd=("${ignore[@]}" "${torchrun[@]}" --standalone "$@") ;;
        srun)
            [[ -n ${SLURM_JOB_ID:-} ]] || babykd_die "BABYKD_LAUNCHER=srun needs a SLURM job"
            local master port=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}
            master=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
            cmd=(srun --nodes="$nodes" --ntasks="$nodes" --ntasks-per-node=1 --cpus-per-task="$cpus"
                 --kill-on-bad-exit=1 "${ignore[@]}" "${torchrun[@]}" --nnodes="$nodes"
                 --rdzv_backend=c10d --rdzv_endpoint="$master:$port" --rdzv_id="$SLURM_JOB_ID" "$@") ;;
        *) babykd_die "BABYKD_LAUNCHER=$_BABYKD_MODE: expected auto, python, torchrun or srun" ;;
    esac
    babykd_log "launch ($_BABYKD_MODE, $nodes node(s) x $nproc process(es), OMP_NUM_THREADS=$OMP_NUM_THREADS): ${cmd[*]}"
    _BABYKD_SIGNAL=""
    _BABYKD_TRAPS=0
    trap '_babykd_forward USR1' USR1
    trap '_babykd_forward TERM' TERM
    "${cmd[@]}" &
    _BABYKD_PID=$!
    local rc traps
    while :; do
        traps=$_BABYKD_TRAPS
        rc=0
        wait "$_BABYKD_PID" || rc=$?
        # A trapped signal ends `wait` early (status > 128) while the training runs on.
        if ((rc > 128 && traps != _BABYKD_TRAPS)) && kill -0 "$_BABYKD_PID" 2>/dev/null; then continue; fi
        break
    done
    trap - USR1 TERM
    if ((rc == BABYKD_PREEMPTED)) || [[ -n $_BABYKD_SIGNAL && $rc != 0 ]]; then
        [[ $_BABYKD_SIGNAL == TERM ]] || _babykd_requeue "$rc"
        babykd_log "stopped by SIGTERM after saving a checkpoint (exit $rc): resubmit to resume"
        exit "$rc"
    fi
    return "$rc"
}

# Pass a signal on to the training processes: the python process itself, torchrun's workers
# (torchrun ignores it), or srun, which signals every process of its step on every node.
_babykd_forward() {
    _BABYKD_SIGNAL=$1
    _BABYKD_TRAPS=$((_BABYKD_TRAPS + 1))
    babykd_log "received SIG$1: asking the training to save a checkpoint and stop"
    if [[ $_BABYKD_MODE == torchrun ]]; then
        pkill "-$1" -P "$_BABYKD_PID" || true
    else
        kill "-$1" "$_BABYKD_PID" 2>/dev/null || true
    fi
}

# Put this job back in the queue (same job id, so `afterok` dependents keep waiting for it) and
# end this run of it; outside SLURM, say how to continue.
_babykd_requeue() {
    if [[ -z ${SLURM_JOB_ID:-} ]]; then
        babykd_log "stopped after saving a checkpoint (exit $1): run the same command again to resume"
        exit "$1"
    fi
    # The requeue ends this run of the job with SIGTERM: ignore it, and log first.
    trap '' TERM
    babykd_log "stopped after saving a checkpoint (exit $1): requeueing; the next start resumes from it"
    scontrol requeue "$SLURM_JOB_ID" || babykd_log "'scontrol requeue' refused: resubmit to resume"
    exit "$1"
}
