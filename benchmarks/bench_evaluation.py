"""Throughput of the built-in evaluator vs minicons on the same model and data, and bf16 vs fp32 agreement.

    python benchmarks/bench_evaluation.py                      # random Llama-58M (the student shape)
    python benchmarks/bench_evaluation.py --model models/run/  # any checkpoint
    python benchmarks/bench_evaluation.py --max-items-per-subtask 3   # a CPU run in a couple of minutes

Prints one JSON line per measurement and a summary line; appends the summary
(with device, versions, date and command) to benchmarks/results/evaluation.jsonl.
Sentences = choices scored (two per item); both evaluators' timings include
tokenization. minicons runs as users run it for minimal pairs: batched
`sequence_score(bos_token=True)` for BLiMP-style items and `conditional_score`
for EWoK, summed log-probs.

Without --model, a random model is built from config/models/Llama-58M.yaml
(16 layers, d=512, 8 heads, ffn 1024, vocab 16000) with the project's byte-level
BPE tokenizer (16000 tokens) trained here on the corpus dev split (or on the
evaluation sentences when ../shared/corpus is absent); random weights do not
change the arithmetic's cost.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from babykd import REPO_ROOT
from babykd.atomic import atomic_write_text
from babykd.config import load_model_config
from babykd.data.tokenizer import train_tokenizer
from babykd.evaluation.scorer import score_items
from babykd.evaluation.tasks import DEFAULT_TASKS, Item, Task, load_tasks
from babykd.models import build_model
from babykd.provenance import provenance

RESULTS = REPO_ROOT / "benchmarks" / "results" / "evaluation.jsonl"
CORPUS_ZIP = Path(os.environ.get("BABYKD_SHARED", REPO_ROOT.parent / "shared")) / "corpus" / "substitute_10M.zip"


def corpus_lines(fallback: Iterable[str]) -> Iterable[str]:
    """The substitute corpus' dev split (real text, so sentence lengths are realistic), else `fallback`."""
    if not CORPUS_ZIP.is_file():
        yield from fallback
        return
    with zipfile.ZipFile(CORPUS_ZIP) as archive:
        for name in ("dev/gutenberg.dev", "dev/childes.dev"):
            with archive.open(name) as handle:
                yield from (line for line in io.TextIOWrapper(handle, encoding="utf-8") if line.strip())


def load_model(args: argparse.Namespace, items: Sequence[Item]) -> tuple[torch.nn.Module, Any, str]:
    if args.model:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
        return model, AutoTokenizer.from_pretrained(args.model), str(args.model)
    cfg = load_model_config(REPO_ROOT / "config" / "models" / "Llama-58M.yaml")
    torch.manual_seed(0)
    texts = [s for item in items for s in (item.context, item.correct, item.wrong) if s]
    tokenizer = train_tokenizer(corpus_lines(texts), vocab_size=cfg.vocab_size, show_progress=False)
    return build_model(cfg), tokenizer, f"random {cfg.name}"


def minicons_scores(
    model: torch.nn.Module, tokenizer: Any, tasks: Sequence[Task], device: str, batch: int
) -> np.ndarray:
    """[correct, wrong] summed log-probs per item (tasks in order) from minicons' IncrementalLMScorer."""
    from minicons.scorer import IncrementalLMScorer

    lm = IncrementalLMScorer(model, device, tokenizer=tokenizer)
    total = lambda x: x.sum(0).item()  # noqa: E731  (minicons' reduction hook)
    scores = []
    for task in tasks:
        items = [item for sub in task.subtasks for item in sub.items]
        for start in range(0, len(items), batch):
            chunk = items[start:start + batch]
            choices = [c for item in chunk for c in (item.correct, item.wrong)]
            if any(item.context for item in chunk):
                contexts = [item.context for item in chunk for _ in range(2)]
                scores += lm.conditional_score(contexts, choices, reduction=total)
            else:
                scores += lm.sequence_score([" " + c for c in choices], reduction=total, bos_token=True)
    return np.array(scores).reshape(-1, 2)


def timed(repeats: int, fn, *args, **kwargs) -> tuple[Any, float]:
    """Result and best wall time of `repeats` runs (the minimum is the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return out, best


def emit(record: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps(record), flush=True)
    return record


def run_record(evaluator: str, dtype: str, sentences: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return emit({"evaluator": evaluator, "dtype": dtype, **extra, "sentences": sentences,
                 "seconds": round(seconds, 3), "sentences_per_s": round(sentences / seconds, 1)})


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="checkpoint directory (default: random Llama-58M)")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--max-items-per-subtask", type=int, default=None,
                        help="subsample items (default: all on GPU, 3 per subtask on CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-tokens", type=int, default=None, help="our token budget per batch")
    parser.add_argument("--minicons-batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=1, help="time each evaluator this many times, keep the best")
    parser.add_argument("--no-minicons", action="store_true", help="skip the minicons run (it is the slow part)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSONL file the summary is appended to")
    args = parser.parse_args(argv)
    if args.max_items_per_subtask is None and args.device == "cpu":
        args.max_items_per_subtask = 3
    if args.threads:
        torch.set_num_threads(args.threads)

    tasks = load_tasks(args.tasks, args.data_dir, args.max_items_per_subtask)
    items = [item for task in tasks for sub in task.subtasks for item in sub.items]
    model, tokenizer, model_name = load_model(args, items)
    model.to(args.device).eval()
    sentences = 2 * len(items)
    scores, runs = {}, []
    for dtype in ("fp32", "bf16"):
        score_items(model, tokenizer, items[:8], dtype=dtype, progress=False)  # warm-up (CUDA context, kernels)
        scores[dtype], seconds = timed(
            args.repeats, score_items, model, tokenizer, items, dtype=dtype, batch_tokens=args.batch_tokens,
            progress=False,
        )
        runs.append(run_record("babykd", dtype, sentences, seconds))
    fp32, bf16 = scores["fp32"], scores["bf16"]
    summary: dict[str, Any] = {
        "benchmark": "evaluation",
        "model": model_name,
        "tasks": [t.name for t in tasks],
        "max_items_per_subtask": args.max_items_per_subtask,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "items": len(items),
        "bf16_same_decisions": float(np.mean((fp32[:, 0] >= fp32[:, 1]) == (bf16[:, 0] >= bf16[:, 1]))),
        "bf16_max_abs_logprob_diff": float(np.max(np.abs(fp32 - bf16))),
    }
    if not args.no_minicons:
        theirs, seconds = timed(
            args.repeats, minicons_scores, model, tokenizer, tasks, args.device, args.minicons_batch_size
        )
        runs.append(run_record("minicons", "fp32", sentences, seconds, batch_size=args.minicons_batch_size))
        summary["speedup_fp32_vs_minicons"] = round(runs[-1]["seconds"] / runs[0]["seconds"], 2)
        summary["minicons_max_abs_logprob_diff"] = float(np.max(np.abs(fp32 - theirs)))
    summary = emit({**summary, "runs": runs, **provenance(torch_device=args.device)})
    previous = args.results.read_text(encoding="utf-8") if args.results.exists() else ""
    atomic_write_text(args.results, previous + json.dumps(summary) + "\n")
    return summary


if __name__ == "__main__":
    main()
