"""Throughput of the built-in evaluator vs minicons on the same model and data, and bf16 vs fp32 agreement.

    python benchmarks/bench_evaluation.py                      # random Llama-58M (the student shape)
    python benchmarks/bench_evaluation.py --model models/run/  # any checkpoint
    python benchmarks/bench_evaluation.py --max-items-per-subtask 3   # a CPU run in a couple of minutes
    python benchmarks/bench_evaluation.py --protocol 2025      # the whole 2025 zero-shot suite vs the official loop
    python benchmarks/bench_evaluation.py --model M --against-official PIPELINE_DIR --fast   # vs the official code

With ``--protocol 2025`` the reference is not minicons but a faithful
re-implementation of the official 2025 pipeline's loops, timed in the same run
on the same model and items: for the sentence tasks, batches of 64 items in
data order, one right-padded forward pass per candidate index, full-vocabulary
log-softmax, phrase-mask sum (``sentence_zero_shot/compute_results.py``); for
reading, one forward pass per word token (``reading/evaluation_functions.get_p2``).
The figure is the ratio of per-item times, and the scores' largest difference.

With ``--against-official PIPELINE_DIR`` (a checkout of babylm/evaluation-pipeline-2025, outside
this repository) the reference is the official code itself, one process per task, against ours in
one ``python -m babykd.evaluate`` process, decisions compared item by item (`official_2025.py`).
A PIPELINE_DIR without the official code falls back to the re-implemented loops, and says so.
Both 2025 modes end with a markdown table of the per-task ratios (the lease kit's
evaluation-2025 stage reads the JSON lines; the table is for people), then one of our scoring's
achieved FLOP/s per task against a timed fp32 matmul on the same device and threads
(`matmul_peak`): the FLOPs of the packed plan (`prefix_scorer.packed_flops`: layers, attention
pairs and LM-head rows, padding included) over the seconds spent in the scorer alone
(`ScoringRecorder`, best of --repeats), so the distance to the machine's limit is in the results file.

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
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from babykd import REPO_ROOT
from babykd.run.atomic import atomic_write_text
from babykd.config import load_model_config
from babykd.data.tokenizer import train_tokenizer
from babykd.evaluation.scorer import score_items
from babykd.evaluation.tasks import DEFAULT_TASKS, Item, Task, load_tasks
from babykd.models import build_model
from babykd.run.provenance import provenance
from official_2025 import is_pipeline, run_against_official

RESULTS = REPO_ROOT / "benchmarks" / "results" / "evaluation.jsonl"
#: The 2025 zero-shot tasks timed (COMPS' data is not available).
SUITE_2025 = ("blimp_filtered", "blimp_supplement", "ewok_filtered", "entity_tracking", "wug_adj_nominalization",
              "wug_past_tense", "reading")
#: Token budgets `--batch-plan` times.
BATCH_PLAN_BUDGETS = (256, 512, 1024, 2048, 4096, 8192, 16384)
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


def append_summary(path: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Append one summary line to the results JSONL (atomically) and return it."""
    previous = path.read_text(encoding="utf-8") if path.exists() else ""
    atomic_write_text(path, previous + json.dumps(summary) + "\n")
    return summary


def run_record(evaluator: str, dtype: str, sentences: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return emit({"evaluator": evaluator, "dtype": dtype, **extra, "sentences": sentences,
                 "seconds": round(seconds, 3), "sentences_per_s": round(sentences / seconds, 1)})


def official_sentence_scores(model: torch.nn.Module, tokenizer: Any, items: Sequence[Any], device: str) -> list[np.ndarray]:
    """The official causal loop: 64 items a batch, one padded forward per candidate index (data order)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(items), 64):
            batch = items[start:start + 64]
            per_index = []
            for k in range(len(batch[0].sentences)):
                rows, masks = [], []
                for item in batch:
                    sentence, completion = item.sentences[k], item.completions[k]
                    enc = tokenizer(sentence, return_offsets_mapping=True)
                    begin = len(sentence) - len(completion) + enc["offset_mapping"][0][0]
                    rows.append(torch.tensor(enc["input_ids"]))
                    masks.append(torch.tensor([int(end > begin) for _, end in enc["offset_mapping"]]))
                ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad).to(device)
                attn = torch.nn.utils.rnn.pad_sequence([torch.ones_like(r) for r in rows], batch_first=True).to(device)
                phrase = torch.nn.utils.rnn.pad_sequence(masks, batch_first=True).to(device)[:, 1:]
                logits = model(input_ids=ids[:, :-1], attention_mask=attn[:, :-1]).logits
                logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
                per_index.append((logp * phrase).sum(1).double().cpu())
            out += list(torch.stack(per_index, dim=1).numpy())
    return out


def official_reading_surprisal(model: torch.nn.Module, tokenizer: Any, pairs: Sequence[tuple[str, str]], device: str) -> np.ndarray:
    """The official get_p2: one forward pass per word token, softmax probabilities multiplied."""
    def p_last(context: str, target: int) -> float:
        ids = torch.tensor([tokenizer(context)["input_ids"]], device=device)
        return torch.softmax(model(input_ids=ids).logits[0, -1], dim=-1)[target].item()

    out = []
    with torch.no_grad():
        for context, word in pairs:
            target = tokenizer(word, add_special_tokens=False)["input_ids"]
            probs, sentence = [p_last(context, target[0])], context + tokenizer.decode(target[0])
            for token in target[1:]:
                piece = tokenizer.decode(token)
                probs.append(p_last(sentence, tokenizer(piece, add_special_tokens=False)["input_ids"][0]))
                sentence += piece
            out.append(-float(np.log(np.prod(probs))))
    return np.array(out)


def load_suite_items(source: Any, tasks: Sequence[str], limit: int | None) -> dict[str, Any]:
    """Each task's items: `Candidates` of the ranking tasks, (context, word) pairs of reading (rows subsampled)."""
    from babykd.evaluation import reading
    from babykd.evaluation.suite import load_candidates
    from babykd.evaluation.tasks import subsample

    loaded: dict[str, Any] = {t: load_candidates(t, source, limit)[0] for t in tasks if t != "reading"}
    if "reading" in tasks:
        where, raw = source.reading_csv()
        rows = reading.parse_reading_csv(raw, where)
        keep = list(subsample(list(range(len(rows))), limit and 20 * limit))
        loaded["reading"] = [(rows.items[i], rows.words[i]) for i in keep]
    return loaded


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: str, n: int = 1024, seconds: float = 1.0) -> float:
    """FLOP/s of a timed fp32 n x n matmul on `device` with torch's thread setting: the limit the scorer is held to.

    Best of 5 runs of ~`seconds`/5 each (the least disturbed by other load), after a warm-up.
    """
    a, b = (torch.randn(n, n, device=device) for _ in range(2))
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(5):
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / 5:
            a @ b
            count += 1
        sync(device)
        best = min(best, (time.perf_counter() - start) / count)
    return 2 * n**3 / best


class ScoringRecorder:
    """Within it, the shared-prefix scorer records the requests of each call and the seconds it spent.

    Scoring alone (no encoding, data or metrics): what the FLOP/s row divides by. A model that
    is not packed (flash attention) is never recorded, and its task gets no FLOP/s row.
    """

    def __init__(self, device: str) -> None:
        self.device, self.calls = device, []

    def __enter__(self) -> "ScoringRecorder":
        from babykd.evaluation import ranking

        self.original = ranking.packed_loglikelihoods

        def recorded(model: torch.nn.Module, requests: Sequence[Any], **kwargs: Any) -> np.ndarray:
            sync(self.device)
            start = time.perf_counter()
            out = self.original(model, requests, **kwargs)
            sync(self.device)
            self.calls.append((list(requests), time.perf_counter() - start))
            return out

        ranking.packed_loglikelihoods = recorded
        return self

    def __exit__(self, *exc: Any) -> None:
        from babykd.evaluation import ranking

        ranking.packed_loglikelihoods = self.original


def ours_scores(model: torch.nn.Module, tokenizer: Any, task: str, items: Any, batch_tokens: int | None) -> Any:
    """Our scores of one task's items (reading: surprisals; the others: every candidate's log-likelihood)."""
    from babykd.evaluation import ranking, reading

    scorer = reading.surprisals if task == "reading" else ranking.score_candidates
    return scorer(model, tokenizer, items, progress=False, batch_tokens=batch_tokens)


def timed_ours(
    model: torch.nn.Module, tokenizer: Any, task: str, items: Any, args: argparse.Namespace, peak: float
) -> tuple[Any, float, dict[str, Any]]:
    """(scores, best seconds of the whole call, the task's FLOP/s fields; none if it was not packed)."""
    from babykd.evaluation.prefix_scorer import packed_flops

    with ScoringRecorder(args.device) as recorder:
        out, seconds = timed(args.repeats, ours_scores, model, tokenizer, task, items, args.batch_tokens)
    if not recorder.calls:
        return out, seconds, {}
    flops = packed_flops(model, recorder.calls[0][0], args.batch_tokens)
    scoring = min(s for _, s in recorder.calls)
    return out, seconds, {"flops": flops, "scoring_s": round(scoring, 4),
                          "gflops_per_s": round(flops / scoring / 1e9, 2), "of_peak": round(flops / scoring / peak, 4)}


def bench_2025(args: argparse.Namespace) -> dict[str, Any]:
    """The 2025 zero-shot suite: ours vs the official loops on the same items, per task."""
    from babykd.evaluation.suite import make_source

    loaded = load_suite_items(make_source(args.fast, args.data_dir, args.suite_data), args.suite_tasks or SUITE_2025,
                              args.max_items_per_subtask)
    texts = [s for task, items in loaded.items() if task != "reading" for item in items for s in item.sentences]
    model, tokenizer, model_name = load_model(args, [Item("", t, t) for t in texts[:20000]])
    model.to(args.device).eval()
    peak = emit({"benchmark": "matmul-peak", "flops_per_s": matmul_peak(args.device), "threads": torch.get_num_threads()})
    runs, total_ours, total_ref, total_items = [], 0.0, 0.0, 0
    for task, items in loaded.items():
        ours, t_ours, flop_fields = timed_ours(model, tokenizer, task, items, args, peak["flops_per_s"])
        if task == "reading":
            ref, t_ref = timed(1, official_reading_surprisal, model, tokenizer, items, args.device)
            diff, same = float(np.max(np.abs(ours - ref))), 1.0
        else:
            ref, t_ref = timed(1, official_sentence_scores, model, tokenizer, items, args.device)
            diff = float(max(np.max(np.abs(a - b)) for a, b in zip(ours, ref)))
            same = float(np.mean([int(np.argmax(a)) == int(np.argmax(b)) for a, b in zip(ours, ref)]))
        total_ours, total_ref, total_items = total_ours + t_ours, total_ref + t_ref, total_items + len(items)
        runs.append(emit({"task": task, "items": len(items), "ours_s": round(t_ours, 3), "official_loop_s": round(t_ref, 3),
                          "speedup": round(t_ref / t_ours, 2), "max_abs_score_diff": diff, "same_decisions": same,
                          **flop_fields}))
    return {
        "benchmark": "evaluation-2025", "model": model_name, "fast": args.fast,
        "max_items_per_subtask": args.max_items_per_subtask,
        "reference": "re-implementation of the official loops (same process)",
        "items": total_items, "ours_s": round(total_ours, 3), "official_loop_s": round(total_ref, 3),
        "speedup": round(total_ref / total_ours, 2), "threads": torch.get_num_threads(), "runs": runs,
        "matmul_peak_flops_per_s": peak["flops_per_s"],
    }


def official_flop_fields(args: argparse.Namespace, suite: Path) -> tuple[float, dict[str, dict[str, Any]]]:
    """(matmul peak, task -> our scoring's FLOP/s fields), in this process, on the data the official run read."""
    from babykd.evaluation.suite import make_source

    loaded = load_suite_items(make_source(args.fast, None, suite), args.suite_tasks or SUITE_2025, None)
    model, tokenizer, _ = load_model(args, [])
    model.to(args.device).eval()
    peak = emit({"benchmark": "matmul-peak", "flops_per_s": matmul_peak(args.device), "threads": torch.get_num_threads()})
    fields = {task: timed_ours(model, tokenizer, task, items, args, peak["flops_per_s"])[2] for task, items in loaded.items()}
    return peak["flops_per_s"], fields


def bench_official(args: argparse.Namespace) -> dict[str, Any]:
    """Ours against the official code's processes on the same model and (subsampled) items."""
    from babykd.evaluation.suite import make_source

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-official-"))
    env = dict(os.environ)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    print(f"official code: {args.against_official}; logs and predictions in {work}", file=sys.stderr)
    source = make_source(args.fast, args.data_dir, args.suite_data)
    _, summary = run_against_official(
        args.against_official, str(args.model), source, args.suite_tasks or SUITE_2025, work,
        limit=args.max_items_per_subtask,
        device=args.device, batch_tokens=args.batch_tokens, env=env,
    )
    peak, fields = official_flop_fields(args, work / "suite")  # the task rows were timed; now our FLOP/s
    for run in summary["runs"]:
        run.update(fields.get(run["task"], {}))
    return {"benchmark": "evaluation-2025-official", "model": str(args.model), "fast": args.fast,
            "max_items_per_subtask": args.max_items_per_subtask, "threads": args.threads, **summary,
            "matmul_peak_flops_per_s": peak}


def bench_batch_plan(args: argparse.Namespace) -> dict[str, Any]:
    """Tokens/s of our scorer at each token budget on the same requests (how the CPU default was chosen)."""
    from babykd.evaluation.scorer import (
        default_batch_tokens, encode_requests, item_pairs, loglikelihoods, max_sequence_length,
    )

    tasks = load_tasks(args.tasks, args.data_dir, args.max_items_per_subtask)
    items = [item for task in tasks for sub in task.subtasks for item in sub.items]
    model, tokenizer, model_name = load_model(args, items)
    model.to(args.device).eval()
    requests = encode_requests(tokenizer, item_pairs(items), max_sequence_length(model, tokenizer))
    tokens = sum(len(r.tokens) - 1 for r in set(requests))
    runs = []
    for budget in BATCH_PLAN_BUDGETS:
        _, seconds = timed(args.repeats, loglikelihoods, model, requests, batch_tokens=budget, progress=False)
        runs.append(emit({"batch_tokens": budget, "seconds": round(seconds, 3),
                          "tokens_per_s": round(tokens / seconds)}))
    return {"benchmark": "evaluation-batch-plan", "model": model_name, "tokens": tokens,
            "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": model.config.vocab_size,
            "default_batch_tokens": default_batch_tokens(model, torch.device(args.device)),
            "threads": torch.get_num_threads(), "runs": runs}


#: What `--startup` times in fresh interpreters: the libraries any evaluation needs, and our command's imports.
STARTUP_PROBES = {
    "torch + transformers + model classes": "import torch, transformers; "
    "from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM, GPT2LMHeadModel",
    "babykd.evaluate": "import babykd.evaluate",
}


def bench_startup(args: argparse.Namespace) -> dict[str, Any]:
    """Import time of the evaluate command against the libraries it cannot avoid (median of --repeats runs)."""
    import statistics
    import subprocess

    times: dict[str, list[float]] = {name: [] for name in STARTUP_PROBES}
    for _ in range(max(3, args.repeats)):
        for name, code in STARTUP_PROBES.items():  # interleaved, so load drifts hit both alike
            probe = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
            times[name].append(float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                                    check=True).stdout))
    medians = {name: round(statistics.median(t), 3) for name, t in times.items()}
    return emit({"benchmark": "evaluation-startup", "import_s": medians, "runs": len(times["babykd.evaluate"])})


def ratio_table(summary: dict[str, Any]) -> str:
    """The per-task ratios as a markdown table (what benchmarks/README.md records)."""
    lines = [f"reference: {summary['reference']}", "",
             "| task | items | reference s | ours s | ratio | same decisions |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['task']} | {r['items']:,} | {r['official_loop_s']} | {r['ours_s']} | {r['speedup']}× | "
              f"{r['same_decisions']:.2%} |" for r in summary["runs"]]
    lines += [f"| {r['task']} | {r['items']:,} | not compared: {r['error']} | | | |" for r in summary.get("failed", [])]
    lines.append(f"| **suite** | {summary['items']:,} | {summary['official_loop_s']} | {summary['ours_s']} | "
                 f"{summary['speedup']}× | |")
    return "\n".join(lines + flops_table(summary))


def flops_table(summary: dict[str, Any]) -> list[str]:
    """Our scoring's achieved FLOP/s per task against the measured matmul peak (none when nothing was packed)."""
    rows = [r for r in summary["runs"] if "gflops_per_s" in r]
    if not rows:
        return []
    peak = summary["matmul_peak_flops_per_s"]
    lines = ["", f"our scoring (forward passes only) against a timed fp32 matmul: {peak / 1e9:.1f} GFLOP/s, "
             f"{summary.get('threads') or torch.get_num_threads()} thread(s)", "",
             "| task | GFLOP | scoring s | GFLOP/s | of peak |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['task']} | {r['flops'] / 1e9:.1f} | {r['scoring_s']} | {r['gflops_per_s']} | {r['of_peak']:.1%} |"
              for r in rows]
    return lines


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="checkpoint directory (default: random Llama-58M)")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--max-items-per-subtask", type=int, default=None,
                        help="subsample items (default: all on GPU or --against-official, 3 per subtask on CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-tokens", type=int, default=None, help="our token budget per batch")
    parser.add_argument("--minicons-batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=1, help="time each evaluator this many times, keep the best")
    parser.add_argument("--no-minicons", action="store_true", help="skip the minicons run (it is the slow part)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSONL file the summary is appended to")
    parser.add_argument("--protocol", choices=("2024", "2025"), default="2024",
                        help="2024: BLiMP/supplement/EWoK vs minicons; 2025: the whole zero-shot suite vs the official loops")
    parser.add_argument("--suite-data", type=Path, default=None, help="the 2025 evaluation zip (protocol 2025)")
    parser.add_argument("--against-official", type=Path, metavar="PIPELINE_DIR",
                        help="a checkout of babylm/evaluation-pipeline-2025: its code is the reference (protocol 2025)")
    parser.add_argument("--fast", action="store_true", help="protocol 2025: the fast sets (default: full)")
    parser.add_argument("--work-dir", type=Path, help="with --against-official: where data, logs and predictions go")
    parser.add_argument("--suite-tasks", nargs="+", choices=SUITE_2025,
                        help="protocol 2025: only these tasks, in this order (default: all of the suite's)")
    parser.add_argument("--startup", action="store_true",
                        help="import time of `python -m babykd.evaluate` against torch + transformers alone")
    parser.add_argument("--batch-plan", action="store_true",
                        help="time our scorer at each token budget on --tasks (how the CPU default is chosen)")
    args = parser.parse_args(argv)
    if args.against_official is not None:
        args.protocol = "2025"
        if args.model is None:
            parser.error("--against-official needs --model: a saved checkpoint both pipelines load")
        if args.model.exists():  # the official processes run in PIPELINE_DIR: a relative path would name a hub id
            args.model = args.model.resolve()
    elif args.max_items_per_subtask is None and args.device == "cpu":
        args.max_items_per_subtask = 3
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.startup:
        return append_summary(args.results, {**bench_startup(args), **provenance(torch_device="cpu")})
    if args.batch_plan:
        return append_summary(args.results, emit({**bench_batch_plan(args), **provenance(torch_device=args.device)}))
    if args.protocol == "2025":
        official = args.against_official is not None and is_pipeline(args.against_official)
        if args.against_official is not None and not official:
            print(f"no official code in {args.against_official} (evaluation_pipeline/sentence_zero_shot/run.py): "
                  "falling back to the re-implementation of the official loops", flush=True)
        summary = bench_official(args) if official else bench_2025(args)
        record = append_summary(args.results, emit({**summary, **provenance(torch_device=args.device)}))
        print(ratio_table(record), flush=True)
        return record

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
    return append_summary(args.results, emit({**summary, "runs": runs, **provenance(torch_device=args.device)}))


if __name__ == "__main__":
    main()
