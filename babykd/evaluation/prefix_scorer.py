"""Candidates that share a long context, scored with that context computed once.

An entity-tracking item is a context of 100-300 tokens followed by five short options; the flat
scorer (`scorer.loglikelihoods`) runs the context once per option, 78% of the task's tokens.
Here each item is ONE row: the longest token prefix common to its candidates, then every
candidate's own tokens one after the other. A 4D attention mask lets a candidate's token see the
prefix and the earlier tokens of its own candidate only, and its position id continues from the
prefix, so each candidate token computes exactly what it would after the prefix alone: the scores
equal the flat path's up to float rounding (tests/test_prefix_scorer.py). One forward pass per
batch of items and no key/value copies (an earlier KV-cache version spent 22% of its time copying
the cached prefix to each candidate).

Padding: rows of different widths are right-padded, so the causal part of the mask keeps every
real query off the padding; a padded query sees the prefix (an all-masked row would be NaN) and
is never read. GPT-2's learned positions and Llama's rotary ones both take the position ids.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from babykd.evaluation.scorer import (
    Request, accepts_logits_to_keep, default_batch_tokens, plan_batches, scoring_mode, split_sizes, to_device,
    token_logprobs,
)

#: Attention implementations that take a custom 4D mask (flash attention does not).
MASKED_ATTENTION = ("sdpa", "eager")


def shared_length(requests: Sequence[Request]) -> int:
    """Prefix tokens run once: common to every candidate, and before the input of any scored target.

    Target i is predicted at input position i - 1, so the first scored target's input must be a
    candidate's own token, not a prefix one.
    """
    common = len(os.path.commonprefix([r.tokens for r in requests]))
    return max(0, min([common] + [len(r.tokens) - r.n_scored - 1 for r in requests]))


def worth_sharing(requests: Sequence[Request]) -> bool:
    """The packed path when it saves at least half of the item's tokens (entity tracking; not BLiMP's pairs).

    Below that the saving is small next to what a custom mask costs the attention (no causal
    fast path), and a minimal pair's first differing token comes early.
    """
    saved = (len(requests) - 1) * shared_length(requests)
    return saved > 0 and 2 * saved >= sum(len(r.tokens) - 1 for r in requests)


def supports_packing(model: torch.nn.Module) -> bool:
    """Whether the model's attention takes the custom 4D mask the packed rows need."""
    return getattr(model.config, "_attn_implementation", None) in MASKED_ATTENTION


def packed_width(group: Sequence[Request], shared: int) -> int:
    """Columns of a group's row: its prefix once, then each candidate's inputs after it."""
    return shared + sum(len(r.tokens) - 1 - shared for r in group)


def _packed_logprobs(
    model: torch.nn.Module, groups: Sequence[Sequence[Request]], shared: Sequence[int], device: torch.device
) -> torch.Tensor:
    """Summed scored log-probs of every request of `groups` (in order), one row per group."""
    width = max(packed_width(g, p) for g, p in zip(groups, shared))
    ids = np.zeros((len(groups), width), dtype=np.int64)
    targets = np.zeros((len(groups), width), dtype=np.int64)
    positions = np.zeros((len(groups), width), dtype=np.int64)
    owner = np.full((len(groups), width), -1, dtype=np.int64)  # candidate of each column (-1: prefix, padding)
    scored = np.full((len(groups), width), -1, dtype=np.int64)  # request whose score a column adds to
    n = 0
    for row, (group, p) in enumerate(zip(groups, shared)):
        ids[row, :p] = group[0].tokens[:p]
        positions[row, :p] = np.arange(p)
        column = p
        for request in group:
            inputs = len(request.tokens) - 1 - p
            end = column + inputs
            ids[row, column:end] = request.tokens[p:-1]
            targets[row, column:end] = request.tokens[p + 1:]
            positions[row, column:end] = np.arange(p, p + inputs)
            owner[row, column:end] = n
            scored[row, end - request.n_scored:end] = n
            column, n = end, n + 1
    owner_t = to_device(owner, device)
    query, key = torch.arange(width, device=device)[:, None], torch.arange(width, device=device)[None, :]
    prefix = to_device(np.array(shared), device)[:, None, None]
    sees = (key < prefix) | (owner_t[:, None, :] == owner_t[:, :, None])  # the prefix, or its own candidate
    mask = ((key <= query) & sees)[:, None]
    if model.config._attn_implementation == "eager":  # eager adds the mask to the scores
        mask = torch.where(mask, 0.0, torch.finfo(torch.float32).min)
    first = min(shared)  # no log-prob is read before the shortest prefix ends
    kwargs = {"logits_to_keep": width - first} if accepts_logits_to_keep(model) else {}
    logits = model(input_ids=to_device(ids, device), attention_mask=mask, position_ids=to_device(positions, device),
                   use_cache=False, **kwargs).logits[:, -(width - first):]
    logprobs = token_logprobs(logits, to_device(targets[:, first:], device))
    index = to_device(scored[:, first:], device)
    keep = index >= 0
    return torch.zeros(n, dtype=torch.float64, device=device).index_add_(0, index[keep], logprobs[keep].double())


def prefix_scores(
    model: torch.nn.Module,
    groups: Sequence[Sequence[Request]],
    *,
    dtype: str = "fp32",
    batch_tokens: int | None = None,
    progress: bool = True,
) -> list[np.ndarray]:
    """Log-likelihood of every request of every group (one float64 array per group).

    Every group must have a `shared_length` of at least 1 (see `worth_sharing`) and the model
    must take a 4D mask (`supports_packing`).
    """
    shared = np.array([shared_length(g) for g in groups], dtype=np.int64)
    if len(groups) and shared.min() < 1:
        raise ValueError("prefix_scores needs groups whose candidates share at least one unscored token")
    widths = np.array([packed_width(g, p) for g, p in zip(groups, shared)], dtype=np.int64)
    order, outputs = [], []
    with scoring_mode(model, dtype) as device, tqdm(
        total=sum(len(g) for g in groups), unit="seq", desc="scoring (shared prefix)", disable=not progress, leave=False
    ) as bar:
        budget = batch_tokens or default_batch_tokens(model, device)
        for batch in plan_batches(widths, budget) if len(groups) else []:
            outputs.append(_packed_logprobs(model, [groups[i] for i in batch], [int(shared[i]) for i in batch], device))
            bar.update(sum(len(groups[i]) for i in batch))
            order.extend(batch)
    flat = torch.cat(outputs).double().cpu().numpy() if outputs else np.empty(0)  # one sync, at the end
    scores: list[np.ndarray] = [np.empty(0)] * len(groups)
    for i, group_scores in zip(order, split_sizes(flat, [len(groups[i]) for i in order])):
        scores[i] = group_scores
    return scores
