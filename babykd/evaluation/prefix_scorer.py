"""Candidates that share a long context, scored from one pass over it (a key/value cache).

An entity-tracking item is a context of 100-300 tokens followed by five short options; the flat
scorer (`scorer.loglikelihoods`) runs the context once per option, 78% of the task's tokens.
Here the longest token prefix common to an item's candidates runs once (no LM head), its keys
and values are copied to each candidate, and only the candidates' own tokens run on top. In a
causal LM a position's log-probs do not depend on how the earlier keys were computed, so the
scores equal the flat path's up to float rounding (tests/test_prefix_scorer.py).

Padding: prefixes of different lengths are right-padded in one batch. A candidate's attention
mask hides its prefix's padded slots and its position ids continue from its own prefix length,
so padding never changes a real log-prob (GPT-2's learned positions and Llama's rotary alike).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from babykd.evaluation.scorer import (
    Request, accepts_logits_to_keep, default_batch_tokens, plan_batches, scoring_mode, split_sizes, to_device,
    token_logprobs,
)

#: On the CPU a candidate batch may span this many times the token budget of cached prefix: a
#: cached slot costs attention and a copy only, far less than a computed token, and fewer passes
#: save per-pass overhead. On a GPU the span is 1: the budget is sized by memory there, and the
#: copied cache of a 58M Llama weighs as much per token as its fp32 logits.
CPU_SUFFIX_SPAN = 4

KeyValues = list[tuple[torch.Tensor, torch.Tensor]]


def shared_length(requests: Sequence[Request]) -> int:
    """Prefix tokens run once: common to every candidate, and before the input of any scored target.

    Target i is predicted at input position i - 1, so the first scored target's input must be a
    candidate's own token, not a cached one.
    """
    common = len(os.path.commonprefix([r.tokens for r in requests]))
    return max(0, min([common] + [len(r.tokens) - r.n_scored - 1 for r in requests]))


def worth_sharing(requests: Sequence[Request]) -> bool:
    """The cache path when it saves at least half of the item's tokens (entity tracking; not BLiMP's pairs).

    Below that, the extra forward pass per batch costs more than the repeated context.
    """
    saved = (len(requests) - 1) * shared_length(requests)
    return saved > 0 and 2 * saved >= sum(len(r.tokens) - 1 for r in requests)


def _prefix_cache(
    model: torch.nn.Module, prefixes: Sequence[Sequence[int]], device: torch.device, keep_arg: bool
) -> tuple[KeyValues, torch.Tensor]:
    """Keys/values of every layer for right-padded `prefixes`, and their attention mask."""
    lengths = np.array([len(p) for p in prefixes])
    ids = np.zeros((len(prefixes), int(lengths.max())), dtype=np.int64)
    for row, prefix in enumerate(prefixes):
        ids[row, : len(prefix)] = prefix
    mask = (torch.arange(ids.shape[1], device=device)[None, :] < to_device(lengths, device)[:, None]).long()
    kwargs = {"logits_to_keep": 1} if keep_arg else {}  # no log-prob is read here
    cache = model(input_ids=to_device(ids, device), attention_mask=mask, use_cache=True, **kwargs).past_key_values
    return [(layer.keys, layer.values) for layer in cache.layers], mask


def _candidate_logprobs(
    model: torch.nn.Module, kv: KeyValues, prefix_mask: torch.Tensor, rows: Sequence[tuple[int, int, Request]],
    device: torch.device,
) -> torch.Tensor:
    """Summed scored log-probs of candidates (prefix row, prefix length, request) on top of the cache."""
    lengths = np.array([len(r.tokens) - 1 - p for _, p, r in rows])  # inputs after the prefix
    ids = np.zeros((len(rows), int(lengths.max()) + 1), dtype=np.int64)
    for row, (_, p, request) in enumerate(rows):
        ids[row, : lengths[row] + 1] = request.tokens[p:]
    source = to_device(np.array([b for b, _, _ in rows]), device)
    cache = DynamicCache([(k.index_select(0, source), v.index_select(0, source)) for k, v in kv], config=model.config)
    steps = torch.arange(ids.shape[1] - 1, device=device)[None, :]
    lengths_t = to_device(lengths, device)[:, None]
    firsts = to_device(np.array([p for _, p, _ in rows]), device)[:, None]
    n_scored = to_device(np.array([r.n_scored for _, _, r in rows]), device)[:, None]
    ids_t = to_device(ids, device)
    logits = model(
        input_ids=ids_t[:, :-1], attention_mask=torch.cat([prefix_mask[source], (steps < lengths_t).long()], dim=1),
        # padded steps get position 0: a position past the model's table would fail (GPT-2), and they are masked
        position_ids=torch.where(steps < lengths_t, firsts + steps, 0), past_key_values=cache, use_cache=True,
    ).logits
    scored = (steps >= lengths_t - n_scored) & (steps < lengths_t)
    return torch.where(scored, token_logprobs(logits, ids_t[:, 1:]), 0.0).sum(-1)


def prefix_scores(
    model: torch.nn.Module,
    groups: Sequence[Sequence[Request]],
    *,
    dtype: str = "fp32",
    batch_tokens: int | None = None,
    progress: bool = True,
) -> list[np.ndarray]:
    """Log-likelihood of every request of every group (one float64 array per group).

    Every group must have a `shared_length` of at least 1 (see `worth_sharing`).
    """
    shared = np.array([shared_length(g) for g in groups], dtype=np.int64)
    if len(groups) and shared.min() < 1:
        raise ValueError("prefix_scores needs groups whose candidates share at least one unscored token")
    keep_arg = accepts_logits_to_keep(model)
    order, outputs = [], []
    with scoring_mode(model, dtype) as device, tqdm(
        total=sum(len(g) for g in groups), unit="seq", desc="scoring (shared prefix)", disable=not progress, leave=False
    ) as bar:
        budget = batch_tokens or default_batch_tokens(model, device)
        for batch in plan_batches(shared, budget) if len(groups) else []:
            kv, mask = _prefix_cache(model, [groups[i][0].tokens[: shared[i]] for i in batch], device, keep_arg)
            rows = [(b, int(shared[i]), r) for b, i in enumerate(batch) for r in groups[i]]
            width = int(shared[batch].max()) + max(len(r.tokens) - p for _, p, r in rows)
            step = max(1, (1 if device.type == "cuda" else CPU_SUFFIX_SPAN) * budget // width)
            for start in range(0, len(rows), step):
                outputs.append(_candidate_logprobs(model, kv, mask, rows[start:start + step], device))
                bar.update(len(rows[start:start + step]))
            order.extend(batch)
    flat = torch.cat(outputs).double().cpu().numpy() if outputs else np.empty(0)  # one sync, at the end
    scores: list[np.ndarray] = [np.empty(0)] * len(groups)
    for i, group_scores in zip(order, split_sizes(flat, [len(groups[i]) for i in order])):
        scores[i] = group_scores
    return scores
