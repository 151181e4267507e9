"""Zero-shot evaluation of any causal-LM checkpoint, scored as the official BabyLM pipeline scores it.

    python -m babykd.evaluate MODEL_DIR                      # BLiMP, supplement, EWoK (2025 rules)
    python -m babykd.evaluate MODEL_DIR --tasks all          # the whole 2025 zero-shot suite
    python -m babykd.evaluate MODEL_DIR --fast --revision chck_7M   # fast sets, an intermediate checkpoint
    python -m babykd.evaluate MODEL_DIR --protocol 2024      # the 2024 lm-eval-harness arithmetic

`--protocol 2025` (default; the 2026 strict tracks use the same code) follows
``babylm/evaluation-pipeline-2025`` (`babykd.evaluation.ranking`, `.reading`);
`--protocol 2024` the lm-evaluation-harness pipeline of 2024
(`babykd.evaluation.scorer`). Results go to MODEL_DIR/eval/results.json (a
revision's to MODEL_DIR/eval/revisions/REV/results.json), written atomically,
keyed by a fingerprint of the weights: tasks scored on other weights are
dropped. With protocol 2025 the official per-task predictions and the
leaderboard submission file (MODEL_DIR/eval/all_full_preds_and_fast_scores_causal.json)
are written too, beside `--output` when it is given. A revision is the checkpoint
MODEL_DIR/revisions/REV.

A task that cannot be scored (its data missing, an input longer than the
model's position table, a choice the tokenizer cannot encode) is one line on
stderr and in results.json's "errors"; every other task is still scored and
written, and the command then exits with status 1.

Age of acquisition and (Super)GLUE fine-tuning are separate commands
(``scripts/eval-aoa.sh``, ``scripts/eval-finetune.sh``).
"""

from __future__ import annotations

import gc

if __name__ == "__main__":  # the command: no cyclic collection while torch and transformers import (see the end)
    gc.disable()

import argparse
import hashlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from babykd.cli import library_progress_bars
from babykd.evaluation import submission
from babykd.errors import EvaluationError, UserError
from babykd.evaluation import store
from babykd.evaluation.report import summary_line, weights_fingerprint, write_results
from babykd.evaluation.scorer import DTYPES, evaluate_model
from babykd.evaluation.suite import (
    FULL_ONLY, OFFICIAL_TASK_NAMES, SUBMISSION_KEYS, SUITE_TASKS, evaluate_suite, make_source, result_name,
)
from babykd.evaluation.suite_data import MissingEvalData
from babykd.evaluation.tasks import DEFAULT_TASKS, TASK_FOLDERS, Task, TaskDataError, load_task, load_tasks
from babykd.run.provenance import provenance
from babykd.rules import REVISIONS_DIR, check_revision_name

PROTOCOLS = ("2025", "2024")
#: Task families of the 2025 suite that other commands score.
SEPARATE_COMMANDS = {
    "aoa": "scripts/eval-aoa.sh MODEL_DIR (python -m babykd.evaluation.aoa)",
    "glue": "scripts/eval-finetune.sh MODEL_DIR [TASK...] (python -m babykd.evaluation.finetune)",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m babykd.evaluate", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    parser.add_argument("model", help="checkpoint directory (or hub name) with model and tokenizer")
    parser.add_argument(
        "--tasks", nargs="+", default=list(DEFAULT_TASKS),
        help=f"'all', task names (2025: {', '.join(SUITE_TASKS)}; 2024: {', '.join(TASK_FOLDERS)}) "
        "or folders of JSONL files (BLiMP- or EWoK-style items; default: the three BLiMP/EWoK tasks)",
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, default="2025", help="scoring rules (default: 2025)")
    parser.add_argument("--fast", action="store_true", help="2025 fast sets (fast_eval/), for intermediate checkpoints")
    parser.add_argument("--revision", help="score MODEL_DIR/revisions/REVISION (e.g. chck_7M)")
    parser.add_argument(
        "--data-dir", type=Path, default=None,
        help="folder holding blimp_filtered/, supplement_filtered/, ewok_filtered/ (default: $BABYKD_EVAL_DATA, "
        "else ../shared/evaluation_data); a flat folder of JSONL files is a task of its own: --tasks DIR",
    )
    parser.add_argument(
        "--suite-data", type=Path, default=None,
        help="the BabyLM 2025 evaluation zip, or a folder with full_eval/ and fast_eval/ "
        "(default: $BABYKD_EVAL_DATA_2025, else ../shared/evaluation_data_2025.zip)",
    )
    parser.add_argument(
        "--output", type=Path,
        help="results JSON (default: MODEL_DIR/eval/results.json, a revision's MODEL_DIR/eval/revisions/REV/"
        "results.json); the 2025 predictions/ and submission file go next to it (default: MODEL_DIR/eval/)",
    )
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="fp32 (official numbers) or bf16")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--batch-tokens", type=int, default=None, help="token budget per forward pass")
    parser.add_argument(
        "--max-items-per-subtask", type=int, default=None,
        help="score at most N items per subtask file: evenly spaced items (every template stays in), "
        "not the first N as lm-eval's --limit",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="full tracebacks for input errors")
    args = parser.parse_args(argv)
    if args.revision is not None:  # a path part under MODEL_DIR: never a separator or ".." out of the run
        try:
            check_revision_name(args.revision)
        except ValueError as exc:
            parser.error(f"--revision: {exc}")
    local = args.run_dir = Path(args.model)
    if args.revision:
        args.model = str(local / REVISIONS_DIR / args.revision)
    if args.output is None:
        if not local.is_dir():
            parser.error(f"{local} is not a local directory: give --output for its results")
        sub = Path(REVISIONS_DIR, args.revision) if args.revision else Path()
        args.output = local / "eval" / sub / "results.json"
        args.eval_dir = local / "eval"
    else:  # an explicit --output keeps everything this command writes beside it
        args.eval_dir = args.output.parent
    args.model_name = store.model_name(args.model)
    for flag in ("batch_tokens", "max_items_per_subtask"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    if args.protocol == "2024" and args.fast:
        parser.error("--fast is a 2025-protocol option")
    args.all_tasks = args.tasks == ["all"]
    if args.all_tasks:
        args.tasks = list(DEFAULT_TASKS) if args.protocol == "2024" else [
            t for t in SUITE_TASKS if not (args.fast and t in FULL_ONLY)
        ]
    elif args.protocol == "2025":
        args.tasks = [OFFICIAL_TASK_NAMES.get(t, t) for t in args.tasks]
        unknown = [t for t in args.tasks if t not in SUITE_TASKS and not Path(t).is_dir()]
        if unknown:
            hint = {t: SEPARATE_COMMANDS[t] for t in unknown if t in SEPARATE_COMMANDS}
            extra = "; ".join(f"{t}: {c}" for t, c in hint.items())
            parser.error(
                f"unknown 2025 task(s) {', '.join(unknown)}; choose from all, {', '.join(SUITE_TASKS)}"
                + (f" ({extra})" if extra else "") + ", or a folder of JSONL files"
            )
    return args


def load_checkpoint_tokenizer(model: str) -> Any:
    """Any checkpoint's tokenizer (ours or a hub model's); a missing or damaged one is one EvaluationError line.

    Not `babykd.data.tokenizer.load_tokenizer`: that one loads the data pipeline's own tokenizer and
    insists on its special-token ids, which a model from elsewhere need not have.
    """
    path = Path(model)
    if path.is_dir():
        if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")):
            raise EvaluationError(f"{path}: no tokenizer (tokenizer.json / tokenizer_config.json) in this folder")
        tokenizer_json = path / "tokenizer.json"
        if tokenizer_json.is_file():
            try:
                json.loads(tokenizer_json.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise EvaluationError(f"{tokenizer_json}: damaged tokenizer file ({exc})") from exc
    try:
        return AutoTokenizer.from_pretrained(model)
    except Exception as exc:  # transformers raises many types for a bad folder; name the folder
        raise EvaluationError(f"{model}: cannot load the tokenizer ({type(exc).__name__}: {exc})") from exc


def load_model(model: str, device: torch.device) -> torch.nn.Module:
    """The model in fp32 (bf16 mode is autocast over fp32 weights); failures name the folder."""
    try:
        return AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).to(device)
    except Exception as exc:
        raise EvaluationError(f"{model}: cannot load the model ({type(exc).__name__}: {exc})") from exc


def one_line(exc: BaseException) -> str:
    """A task's error as one line: input errors (ValueError: bad data, too long, unencodable) by their message,
    anything else with its type and at most 300 characters."""
    if isinstance(exc, (MissingEvalData, ValueError)):
        return " ".join(str(exc).split())
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:299] + "…"


def record(args: argparse.Namespace, model: torch.nn.Module, entries: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The results record of this command: the scored tasks, what was not scored, where and how."""
    device = next(model.parameters()).device
    return {
        "model": args.model_name,
        "revision": args.revision,
        "dtype": args.dtype,
        "model_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "wall_time_s": round(sum(e.get("wall_time_s", 0.0) for e in entries.values()), 3),
        "tasks": entries,
        **extra,
        **provenance(torch_device=str(device)),
    }


def run_2024(
    args: argparse.Namespace, model: torch.nn.Module, tokenizer: Any, tasks: list, errors: dict[str, str]
) -> dict[str, Any]:
    """Each task scored on its own, so one that cannot be scored (a choice longer than the model) costs only itself."""
    entries, sentences, data = {}, 0, hashlib.sha256()
    for task in tasks:
        start = time.perf_counter()
        try:
            scored = evaluate_model(
                model, tokenizer, [task], dtype=args.dtype,
                batch_tokens=args.batch_tokens, progress=not args.no_progress, model_name=args.model_name,
            )
        except Exception as exc:  # noqa: BLE001 -- reported per task, the others are still scored
            errors[task.name] = report_error(args, exc)
            continue
        for entry in scored["tasks"].values():
            entry.update(protocol="2024", wall_time_s=round(time.perf_counter() - start, 3))
        entries.update(scored["tasks"])
        sentences += scored["sentences"]
        data.update(task.sha256.encode())  # as evaluate_model digests the tasks it scored
    return record(args, model, entries, errors=errors, sentences=sentences, data_sha256=data.hexdigest())


def report_error(args: argparse.Namespace, exc: BaseException) -> str:
    """A task's error as results.json records it (its traceback printed only with --debug)."""
    if args.debug:
        traceback.print_exception(exc)
    return one_line(exc)


def run_2025(args: argparse.Namespace, model: torch.nn.Module, tokenizer: Any, source: Any) -> dict[str, Any]:
    entries, preds, failures = evaluate_suite(
        model, tokenizer, args.tasks, source, max_items_per_subtask=args.max_items_per_subtask,
        dtype=args.dtype, batch_tokens=args.batch_tokens, progress=not args.no_progress, keep_going=True,
    )
    missing, errors = {}, {}
    for task, exc in failures.items():
        if isinstance(exc, MissingEvalData) and args.all_tasks:  # the suite's hidden sets: named, not an error
            missing[task] = str(exc)
            print(f"missing data, not scored: {task}: {exc}", file=sys.stderr)
        else:
            errors[result_name(task, source.fast)] = report_error(args, exc)
    weights = weights_fingerprint(args.model)
    for entry in entries.values():  # each entry says whose weights it belongs to and how it was scored
        entry.update(store.stamp(weights, store.suite_setup(
            source.fast, args.dtype, args.max_items_per_subtask, entry["data_sha256"])))
    if args.max_items_per_subtask is None:  # a subset is never a submission
        for task, task_preds in preds.items():
            revision = args.revision if source.fast else None
            if task in SUBMISSION_KEYS and (source.fast or not args.revision):
                entry = entries[result_name(task, source.fast)]
                store.write_predictions(args.eval_dir, revision, SUBMISSION_KEYS[task], task_preds,
                                        entry["weights_sha256"], entry["setup"])
    return record(args, model, entries, missing=missing, errors=errors, separate_commands=SEPARATE_COMMANDS,
                  weights_sha256=weights)  # hashed once: write_results takes it from here


def load_2024_tasks(args: argparse.Namespace, errors: dict[str, str]) -> list[Task]:
    """The 2024 tasks that load; a task's bad data is its own error, all of them failing is the command's."""
    tasks, failed = [], {}
    for name in args.tasks:
        try:
            tasks.append(load_task(name, args.data_dir, args.max_items_per_subtask))
        except TaskDataError as exc:
            failed[Path(name).name] = exc  # keyed as results.json keys its tasks
    if not tasks:  # nothing to score: one line, before any model is loaded
        raise EvaluationError("; ".join(map(str, failed.values())))
    errors.update({name: report_error(args, exc) for name, exc in failed.items()})
    return load_tasks(tasks)  # names must be unique: a clash is a TaskDataError, one line in run()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Score, write every task scored, then fail (exit 1) if any task could not be scored."""
    library_progress_bars(show=not args.no_progress)
    errors: dict[str, str] = {}
    try:  # data first: a bad task name or line fails before any model is loaded
        if args.protocol == "2024":
            tasks = load_2024_tasks(args, errors)
        else:
            source = make_source(args.fast, args.data_dir, args.suite_data)
    except TaskDataError as exc:
        raise EvaluationError(str(exc)) from exc
    if not Path(args.model).exists() and args.revision:
        raise EvaluationError(f"{args.model}: no such revision folder")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = load_checkpoint_tokenizer(args.model)
    model = load_model(args.model, device)
    if args.protocol == "2024":
        results = run_2024(args, model, tokenizer, tasks, errors)
    else:
        results = run_2025(args, model, tokenizer, source)
    for name, entry in results["tasks"].items():  # garbage in (empty or identical choices) scores as correct
        if entry.get("ties"):
            print(f"warning: {name}: {entry['ties']} item(s) tie (e.g. identical or empty choices) and count as "
                  "correct, as in the official code", file=sys.stderr)
    written = write_results(args.output, results)
    print(summary_line(results, args.output))
    official = any(t.removesuffix("_fast") in SUBMISSION_KEYS for t in results["tasks"])
    if args.protocol == "2025" and args.max_items_per_subtask is None and official and args.run_dir.is_dir():
        path, missing = submission.collate_submission(args.run_dir, eval_folder=args.eval_dir)
        print(f"submission file: {path} ({len(missing)} parts missing for a complete upload; see results 'missing')")
    if results["errors"]:  # after writing: the scores of the other tasks are kept
        raise EvaluationError(
            "not scored: " + "; ".join(f"{name}: {why}" for name, why in results["errors"].items())
        )
    return written


def main(argv: Sequence[str] | None = None) -> dict:
    if argv is None:
        argv = sys.argv[1:]
    if any(a == "--max-items" or a.startswith("--max-items=") for a in argv):
        raise SystemExit("error: the flag is --max-items-per-subtask (an evenly spaced subset per subtask)")
    args = parse_args(argv)
    try:
        return run(args)
    except UserError as exc:  # an EvaluationError, or a full disk (DiskFullError)
        if args.debug:
            traceback.print_exc()
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    # Why: the imports above build ~330k objects that live as long as the process; the full collections
    # during the imports cost 0.7 s of their 3.0 s of CPU (2-core VM, 2026-12-07), and each later one
    # traversed them all again. Frozen, the collector only ever visits what the command allocates.
    gc.freeze()
    gc.enable()
    main()
