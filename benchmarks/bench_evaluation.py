"""Throughput of the built-in evaluator vs minicons on the same model and data, and bf16 vs fp32 agreement.

    python benchmarks/bench_evaluation.py                      # random Llama-58M (the student shape)
    python benchmarks/bench_evaluation.py --model models/run/  # any checkpoint
    python benchmarks/bench_evaluation.py --max-items-per-subtask 3   # a CPU run in a couple of minutes
    python benchmarks/bench_evaluation.py --protocol 2025      # the whole 2025 zero-shot suite vs the official loop

With ``--protocol 2025`` the reference is not minicons but a faithful
re-implementation of the official 2025 pipeline's loops, timed in the same run
on the same model and items: for the sentence tasks, batches of 64 items in
data order, one right-padded forward pass per candidate index, full-vocabulary
log-softmax, phrase-mask sum (``sentence_zero_shot/compute_results.py``); for
reading, one forward pass per word token (``reading/evaluation_functions.get_p2``).
The figure is the ratio of per-item times, and the scores' largest difference.

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
#: The 2025 zero-shot tasks timed (COMPS' data is not available).
SUITE_2025 = ("blimp_filtered", "blimp_supplement", "ewok_filtered", "entity_tracking", "wug_adj_nominalization",
              "wug_past_tense", "reading")
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


def bench_2025(args: argparse.Namespace) -> dict[str, Any]:
    """The 2025 zero-shot suite: ours vs the official loops on the same items, per task."""
    from babykd.evaluation import ranking, reading
    from babykd.evaluation.suite import load_candidates, make_source
    from babykd.evaluation.tasks import subsample

    source = make_source(False, args.data_dir, args.suite_data)
    loaded = {t: load_candidates(t, source, args.max_items_per_subtask)[0] for t in SUITE_2025 if t != "reading"}
    where, raw = source.reading_csv()
    rows = reading.parse_reading_csv(raw, where)
    keep = list(subsample(list(range(len(rows))), args.max_items_per_subtask and 20 * args.max_items_per_subtask))
    pairs = [(rows.items[i], rows.words[i]) for i in keep]
    texts = [s for items in loaded.values() for item in items for s in item.sentences]
    model, tokenizer, model_name = load_model(args, [Item("", t, t) for t in texts[:20000]])
    model.to(args.device).eval()
    runs, total_ours, total_ref, total_items = [], 0.0, 0.0, 0
    for task, items in list(loaded.items()) + [("reading", pairs)]:
        if task == "reading":
            ours, t_ours = timed(args.repeats, reading.surprisals, model, tokenizer, items, progress=False,
                                 batch_tokens=args.batch_tokens)
            ref, t_ref = timed(1, official_reading_surprisal, model, tokenizer, items, args.device)
            diff, same = float(np.max(np.abs(ours - ref))), 1.0
        else:
            ours, t_ours = timed(args.repeats, ranking.score_candidates, model, tokenizer, items, progress=False,
                                 batch_tokens=args.batch_tokens)
            ref, t_ref = timed(1, official_sentence_scores, model, tokenizer, items, args.device)
            diff = float(max(np.max(np.abs(a - b)) for a, b in zip(ours, ref)))
            same = float(np.mean([int(np.argmax(a)) == int(np.argmax(b)) for a, b in zip(ours, ref)]))
        total_ours, total_ref, total_items = total_ours + t_ours, total_ref + t_ref, total_items + len(items)
        runs.append(emit({"task": task, "items": len(items), "ours_s": round(t_ours, 3), "official_loop_s": round(t_ref, 3),
                          "speedup": round(t_ref / t_ours, 2), "max_abs_score_diff": diff, "same_decisions": same}))
    return {
        "benchmark": "evaluation-2025", "model": model_name, "max_items_per_subtask": args.max_items_per_subtask,
        "items": total_items, "ours_s": round(total_ours, 3), "official_loop_s": round(total_ref, 3),
        "speedup": round(total_ref / total_ours, 2), "threads": torch.get_num_threads(), "runs": runs,
    }


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
    parser.add_argument("--protocol", choices=("2024", "2025"), default="2024",
                        help="2024: BLiMP/supplement/EWoK vs minicons; 2025: the whole zero-shot suite vs the official loops")
    parser.add_argument("--suite-data", type=Path, default=None, help="the 2025 evaluation zip (protocol 2025)")
    args = parser.parse_args(argv)
    if args.max_items_per_subtask is None and args.device == "cpu":
        args.max_items_per_subtask = 3
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.protocol == "2025":
        return append_summary(args.results, emit({**bench_2025(args), **provenance(torch_device=args.device)}))

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
