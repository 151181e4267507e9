#!/usr/bin/env python
"""How much offline KD's top-k teacher cache changes the distillation signal, per K, on real teachers.

    python benchmarks/bench_teacher_cache.py CONFIG [--set KEY=VALUE ...] [--student DIR] [--k 8,32,64,256]

CONFIG is a distillation run config (its teachers, data and temperature are
used; its teachers must exist, e.g. after `python -m babykd.demo` with
`config/runs/demo/student-kd.yaml --set distillation.teachers=[...]`). On the
same batches of training chunks it compares the online KL term (live teachers,
full vocabulary) with each cached representation: the top-K targets plus the
rest outcome for every K asked, and the head-input cache (the teachers' logits
recomputed from their float16 head inputs, row ``k: "head_inputs"``). Per row:
the mean mass the cache holds, both loss values, and the cosine similarity of
their gradients with respect to the student's logits (1.0: the cache changes
only the step size, not the direction; in float64, since a float32 cosine of
millions of entries is off by ~1e-3), and the cache's bytes per position. The student is --student or, without
it, the config's architecture freshly initialised. Prints JSON lines and
appends them to benchmarks/results/teacher_cache.jsonl. Speed is measured by
bench_training.py's `ours+cache` mode.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from babykd import REPO_ROOT, losses
from babykd.config import RunConfig, load_run_config
from babykd.models import build_model
from babykd.teacher_cache import CachedHeads, cache_layout, head_inputs_batch, head_tensors, layout_bytes
from babykd.teachers import load_teachers
from babykd.training import load_data
from records import emit  # beside this file (the script's folder is on sys.path)

DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results" / "teacher_cache.jsonl"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--student", type=Path, default=None, help="a trained student checkpoint (default: fresh)")
    parser.add_argument("--k", default="8,32,64,256", help="comma-separated K values")
    parser.add_argument("--batches", type=int, default=8, help="batches of 16 chunks to average over")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--no-results", action="store_true")
    options = parser.parse_args(argv)
    options.k = [int(k) for k in options.k.split(",")]
    return options


HEAD_INPUTS = "head_inputs"


def measure(config: RunConfig, student: PreTrainedModel, ks: Sequence[int], batches: int) -> list[dict[str, Any]]:
    """Per K and for the head-input cache: mass held, online and cached KL, their gradient cosine, over `batches` of 16."""
    cfg = config.distillation
    if cfg is None:
        raise ValueError(f"{config.source}: not a distillation config")
    data = load_data(config)
    teachers = load_teachers(cfg, data.tokenizer, config.data.seq_length)
    heads = CachedHeads(head_tensors(teachers))
    generator = torch.Generator().manual_seed(0)
    picks = torch.randperm(len(data.train_dataset), generator=generator)[: 16 * batches].view(-1, 16)
    rows = [*ks, HEAD_INPUTS]
    totals = {k: {"mass": 0.0, "cached": 0.0, "cosine": 0.0} for k in rows}
    online_total = 0.0
    kwargs = {"temperature": cfg.temperature, "normalization": cfg.kl_normalization}
    for batch in picks:
        input_ids = torch.stack([data.train_dataset[int(i)]["input_ids"] for i in batch])
        with torch.no_grad():
            teacher_logits = [t(input_ids=input_ids).logits for t in teachers]
            stored, _ = head_inputs_batch(teachers, input_ids, cfg, check=True)
            recomputed = heads(stored["head_inputs"].half())  # as stored
            logits = student(input_ids=input_ids).logits
        logits.requires_grad_(True)
        online = losses.kl_distillation_loss(logits, teacher_logits, input_ids, combine=cfg.combine, **kwargs)
        online_grad = torch.autograd.grad(online, logits)[0].flatten().double()
        online_total += online.item()
        vocab = logits.size(-1)
        targets = losses.combined_teacher_log_probs(
            [t.reshape(-1, vocab) for t in teacher_logits], cfg.temperature, cfg.combine).view_as(logits)
        for k in rows:
            if k == HEAD_INPUTS:
                cached = losses.kl_distillation_loss(logits, recomputed, input_ids, combine=cfg.combine, **kwargs)
                mass = 1.0
            else:
                ids, log_q = losses.top_k_targets(targets, k)
                log_q = log_q.half().float()  # as stored
                cached = losses.sparse_kl_distillation_loss(logits, ids, log_q, input_ids, **kwargs)
                mass = log_q.exp().sum(-1).mean().item()
            grad = torch.autograd.grad(cached, logits)[0].flatten().double()
            totals[k]["mass"] += mass
            totals[k]["cached"] += cached.item()
            totals[k]["cosine"] += torch.nn.functional.cosine_similarity(grad, online_grad, dim=0).item()
    n = len(picks)
    return [{
        "config": str(config.source), "teachers": cfg.teachers, "vocab": len(data.tokenizer),
        "seq_length": config.data.seq_length, "temperature": cfg.temperature, "normalization": cfg.kl_normalization,
        "k": k, "bytes_per_position": bytes_per_position(cfg, teachers, k),
        "top_k_mass": round(totals[k]["mass"] / n, 4), "kl_online": round(online_total / n, 5),
        "kl_cached": round(totals[k]["cached"] / n, 5), "kl_ratio": round(totals[k]["cached"] / online_total, 4),
        "grad_cosine": round(totals[k]["cosine"] / n, 5),
    } for k in rows]


def bytes_per_position(cfg: Any, teachers: Sequence[PreTrainedModel], k: int | str) -> int:
    """What the cache of row `k` stores per position, from the cache's own layout."""
    representation = (dataclasses.replace(cfg, teacher_cache_top_k=None, teacher_cache_head_inputs=True)
                      if k == HEAD_INPUTS else dataclasses.replace(cfg, teacher_cache_top_k=k))
    return layout_bytes(cache_layout(representation, teachers))


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    config = load_run_config(options.config, options.set)
    torch.manual_seed(0)
    student = AutoModelForCausalLM.from_pretrained(options.student) if options.student else build_model(config.model)
    records = [{**r, "student": str(options.student or "fresh")} for r in measure(config, student, options.k, options.batches)]
    emit("bench_teacher_cache.py", argv, records, None if options.no_results else options.results)


if __name__ == "__main__":
    main()
