"""Zero-shot evaluation of any causal-LM checkpoint, with the official BabyLM 2024 arithmetic.

    python -m babykd.evaluate MODEL_DIR --tasks blimp_filtered blimp_supplement ewok_filtered

MODEL is anything `AutoModelForCausalLM` / `AutoTokenizer` load. Results go to
MODEL_DIR/eval/results.json (or --output), written atomically and merged with
tasks already scored there; a one-line summary is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from babykd.evaluation.report import summary_line, write_results
from babykd.evaluation.scorer import DTYPES, evaluate_model
from babykd.evaluation.tasks import DEFAULT_TASKS, TASK_FOLDERS, TaskDataError, load_tasks


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m babykd.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="checkpoint directory (or hub name) with model and tokenizer")
    parser.add_argument(
        "--tasks", nargs="+", default=list(DEFAULT_TASKS),
        help=f"task names ({', '.join(TASK_FOLDERS)}) or directories of JSONL files (default: all three)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None,
        help="directory holding the official task folders (default: $BABYKD_EVAL_DATA, else ../shared/evaluation_data)",
    )
    parser.add_argument("--output", type=Path, help="results JSON (default: MODEL_DIR/eval/results.json)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="fp32 (official numbers) or bf16")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--batch-tokens", type=int, default=None, help="token budget per forward pass")
    parser.add_argument("--max-items-per-subtask", type=int, default=None, help="score an evenly spaced subset")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.output is None:
        if not Path(args.model).is_dir():
            parser.error(f"{args.model} is not a local directory: give --output for its results")
        args.output = Path(args.model) / "eval" / "results.json"
    local = Path(args.model)
    args.model_name = str(local.resolve()) if local.is_dir() else args.model
    for flag in ("batch_tokens", "max_items_per_subtask"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    try:  # data first: a bad task name or line fails before any model is loaded
        tasks = load_tasks(args.tasks, args.data_dir, args.max_items_per_subtask)
    except TaskDataError as exc:
        raise SystemExit(f"error: {exc}") from None
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    # Loaded in fp32 whatever the checkpoint's dtype: bf16 mode is autocast over fp32 weights.
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(device)
    try:
        results = evaluate_model(
            model, tokenizer, tasks, dtype=args.dtype,
            batch_tokens=args.batch_tokens, progress=not args.no_progress, model_name=args.model_name,
        )
    except ValueError as exc:  # a choice the tokenizer cannot encode
        raise SystemExit(f"error: {exc}") from None
    written = write_results(args.output, results)
    print(summary_line(results, args.output))
    return written


if __name__ == "__main__":
    main()
