"""Requests scored with every token prefix they share computed once: a token trie packed into rows.

In a causal LM a position's hidden state depends only on the tokens up to it, so two requests that
begin with the same tokens compute the same states there. The suite is full of such prefixes: an
entity-tracking item's five options continue one 100-300 token context, and items of one scenario
share most of it across items (fast set, a 2,000-token BPE: 3.44M input tokens, 0.13M distinct
prefixes); a BLiMP pair shares the words before its first difference (0.44M tokens, 0.27M
distinct); a reading context is the previous word's context plus one word.

So the requests' inputs are sorted and laid out as a trie in depth-first order, one trie node per
column: a row holds a subtree of it (`pack_rows`). Node k is an ancestor of node q exactly when
k <= q < end[k], end[k] being where k's subtree ends in the row, and a 4D attention mask made of
that inequality lets every node see its ancestors only; its position id is its depth. Each node
then computes exactly what it computes in its own request, so the scores equal the flat scorer's
up to float rounding (tests/test_prefix_scorer.py). Logits are computed only at the nodes whose
next token is scored: the hidden states there are gathered before the vocabulary projection
(`scorer.logits_at`), so neither padding nor unscored context reaches the LM head.

Which requests share a row is a cost decision (`PackingCost`): a masked row of width L costs
about a*L + b*L^2 FLOPs (the layers, then the attention over every pair of columns), so a request
joins the current row only if its unshared tokens cost less there than in a row of its own.
Sharing wins for long common prefixes, and a BLiMP sentence unrelated to the previous one starts
a new row instead of making the attention of a long one quadratic.

Padding: rows of different widths are right-padded; a padded column's subtree is "the rest of the
row", so no real node sees it and a padded query sees at least itself (an all-masked query would
be NaN, and NaN values times a zero weight would leak into real rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from babykd.evaluation.scorer import (
    Request, check_dtype, default_batch_tokens, logits_at, plan_batches, scoring_mode, to_device,
)

#: Attention implementations that take a custom 4D mask (flash attention does not).
MASKED_ATTENTION = ("sdpa", "eager")
#: Token budget per batch (and widest row) on a CPU. Larger than the flat scorer's 512: here no LM
#: head runs at padding or context, so fewer, larger forward passes mostly save per-call overhead.
#: Process CPU time on the fast BLiMP / entity-tracking / EWoK sets, 1 thread, random demo-shaped
#: models, 2-core VM loaded ~5 by other jobs (2026-12-07; ratios, not figures), 512 / 1024 / 2048:
#: Llama 4.28 / 3.49 / 3.61 s, 3.68 / 3.40 / 3.31 s, 0.32 / 0.30 / 0.29 s; GPT-2 8.28 / 7.63 / 7.57 s,
#: 6.98 / 6.13 / 6.03 s, 0.83 / 0.79 / 0.73 s.
CPU_BATCH_TOKENS = 1024


def supports_packing(model: torch.nn.Module) -> bool:
    """Whether the model's attention takes the custom 4D mask the packed rows need."""
    return getattr(model.config, "_attn_implementation", None) in MASKED_ATTENTION


def batch_tokens_for(model: torch.nn.Module, device: torch.device) -> int:
    """The default token budget of a batch: `CPU_BATCH_TOKENS` on a CPU, the flat scorer's on a GPU."""
    return CPU_BATCH_TOKENS if device.type != "cuda" else default_batch_tokens(model, device)


@dataclass(frozen=True)
class PackingCost:
    """FLOPs of one forward pass: `per_token` per column, `per_pair` per (query, key) column pair, `per_logit` per LM-head row."""

    per_token: float
    per_pair: float
    per_logit: float

    @classmethod
    def of(cls, model: torch.nn.Module) -> "PackingCost":
        """2 FLOPs per weight of the layers, 4*d per attention pair and layer (QK^T and AV), 2*d*V per logit row.

        The layers' weights are the base model's parameters outside its embedding tables (lookups, no FLOPs).
        """
        base = model.base_model
        tables = sum(m.weight.numel() for m in base.modules() if isinstance(m, torch.nn.Embedding))
        body = sum(p.numel() for p in base.parameters()) - tables
        config = model.config
        return cls(2.0 * body, 4.0 * config.hidden_size * config.num_hidden_layers,
                   2.0 * config.hidden_size * config.vocab_size)

    def row(self, width: int) -> float:
        """The layers' FLOPs of a row `width` columns wide (the LM head is counted per logit, apart)."""
        return self.per_token * width + self.per_pair * width * width


@dataclass
class Row:
    """One packed row: trie nodes in depth-first order, and the scored targets read from them."""

    tokens: list[int] = field(default_factory=list)  # the input token of each node
    depths: list[int] = field(default_factory=list)  # its position id
    ends: list[int] = field(default_factory=list)  # where its subtree ends (exclusive)
    columns: list[int] = field(default_factory=list)  # per scored target: the node predicting it
    targets: list[int] = field(default_factory=list)  # the target token
    owners: list[int] = field(default_factory=list)  # the index of the request it belongs to
    path: list[int] = field(default_factory=list)  # the columns of the last request's input, by depth

    def add(self, request: Request, owner: int, shared: int) -> None:
        """Append `request`, whose input shares its first `shared` tokens with the previous request's."""
        width = len(self.tokens)
        for column in self.path[shared:]:  # the previous request's unshared nodes: their subtrees end here
            self.ends[column] = width
        inputs = request.tokens[:-1]
        new = len(inputs) - shared
        self.tokens.extend(inputs[shared:])
        self.depths.extend(range(shared, len(inputs)))
        self.ends.extend([-1] * new)  # set when the subtree is left (`add`, `close`)
        self.path = self.path[:shared] + list(range(width, width + new))
        first = len(inputs) - request.n_scored  # input position p predicts token p + 1
        self.columns.extend(self.path[first:])
        self.targets.extend(request.tokens[first + 1:])
        self.owners.extend([owner] * request.n_scored)

    def close(self) -> None:
        """End the subtrees still open at the row's end."""
        for column in self.path:
            self.ends[column] = len(self.tokens)
        self.path = []


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix, by bisection on slice equality (compared in C, not per token)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def pack_rows(requests: Sequence[Request], cost: PackingCost, max_width: int) -> list[Row]:
    """The requests (each with a scored token) as trie rows; a request joins a row where that is cheaper.

    Sorted inputs put each request next to the one it shares most with (for sorted sequences the
    longest common prefix with any earlier one is the one with the previous), so a row is a
    depth-first walk of its part of the trie. A row grows past `max_width` only with a request that
    adds no node; a request longer than it gets a row of its own.
    """
    order = sorted(range(len(requests)), key=lambda i: requests[i].tokens[:-1])
    rows: list[Row] = []
    row, previous = Row(), ()
    for i in order:
        inputs = requests[i].tokens[:-1]
        shared = common_prefix_length(previous, inputs) if row.tokens else 0
        width, new = len(row.tokens), len(inputs) - shared
        if row.tokens and new and (width + new > max_width or cost.row(width + new) - cost.row(width) > cost.row(len(inputs))):
            row.close()
            rows.append(row)
            row, shared = Row(), 0
        row.add(requests[i], i, shared)
        previous = inputs
    if row.tokens:
        row.close()
        rows.append(row)
    return rows


def _row_logprobs(
    model: torch.nn.Module, rows: Sequence[Row], device: torch.device
) -> tuple[torch.Tensor, np.ndarray]:
    """(log-prob of every scored target of `rows`, their owners), one forward pass for the batch."""
    width = max(len(r.tokens) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    depths = np.zeros((len(rows), width), dtype=np.int64)
    ends = np.full((len(rows), width), width, dtype=np.int64)  # padding: a subtree reaching the row's end
    for b, row in enumerate(rows):
        ids[b, : len(row.tokens)], depths[b, : len(row.depths)], ends[b, : len(row.ends)] = row.tokens, row.depths, row.ends
    # Logits once per node that predicts a scored target; `where` maps each target to its node's logits.
    flat = np.concatenate([b * width + np.asarray(r.columns, dtype=np.int64) for b, r in enumerate(rows)])
    nodes, where = np.unique(flat, return_inverse=True)
    column = torch.arange(width, device=device)
    ends_t = to_device(ends, device)
    mask = ((column[None, :] <= column[:, None]) & (column[:, None] < ends_t[:, None, :]))[:, None]
    if model.config._attn_implementation == "eager":  # eager adds the mask to the scores
        mask = torch.where(mask, 0.0, torch.finfo(torch.float32).min)
    with logits_at(model, to_device(nodes, device)):
        logits = model(input_ids=to_device(ids, device), attention_mask=mask, position_ids=to_device(depths, device),
                       use_cache=False).logits
    targets = to_device(np.concatenate([np.asarray(r.targets, dtype=np.int64) for r in rows]), device)
    owners = np.concatenate([np.asarray(r.owners, dtype=np.int64) for r in rows])
    return torch.log_softmax(logits[0].float(), dim=-1)[to_device(where, device), targets], owners


def packed_loglikelihoods(
    model: torch.nn.Module,
    requests: Sequence[Request],
    *,
    dtype: str = "fp32",
    batch_tokens: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Log-likelihood of every request (float64, request order), shared prefixes computed once.

    The model must take a 4D mask (`supports_packing`); duplicates are scored once (they are one
    trie path), and a request with nothing scored scores 0, as an empty sum does.
    """
    check_dtype(dtype)
    for request in requests:
        if request.n_scored >= len(request.tokens):  # the first token has no input to be predicted from
            raise ValueError(f"a request scores {request.n_scored} of its {len(request.tokens)} tokens: {request}")
    scores = np.zeros(len(requests))
    live = [i for i, r in enumerate(requests) if r.n_scored]
    if not live:
        return scores
    sums, owners = [], []
    with scoring_mode(model, dtype) as device, tqdm(
        total=len(live), unit="seq", desc="scoring (shared prefixes)", disable=not progress, leave=False
    ) as bar:
        budget = batch_tokens or batch_tokens_for(model, device)
        rows = pack_rows([requests[i] for i in live], PackingCost.of(model), budget)
        widths = np.array([len(r.tokens) for r in rows], dtype=np.int64)
        for batch in plan_batches(widths, budget):
            logprobs, batch_owners = _row_logprobs(model, [rows[b] for b in batch], device)
            sums.append(logprobs.double())
            owners.append(batch_owners)
            bar.update(len(np.unique(batch_owners)))
    flat_owners = np.concatenate(owners)
    totals = torch.zeros(len(live), dtype=torch.float64, device=sums[0].device)
    totals.index_add_(0, to_device(flat_owners, totals.device), torch.cat(sums))
    scores[live] = totals.cpu().numpy()  # one sync, at the end
    return scores


def packed_flops(model: torch.nn.Module, requests: Sequence[Request], batch_tokens: int | None = None) -> float:
    """The FLOPs `packed_loglikelihoods` spends on `requests` (same budget), padding included, by `PackingCost`.

    What the benchmark divides by its time to show the distance to the machine's matmul peak.
    """
    cost = PackingCost.of(model)
    batch_tokens = batch_tokens or batch_tokens_for(model, next(model.parameters()).device)
    rows = pack_rows([r for r in requests if r.n_scored], cost, batch_tokens)
    widths = np.array([len(r.tokens) for r in rows], dtype=np.int64)
    logits = sum(len(set(r.columns)) for r in rows)
    layers = sum(len(batch) * cost.row(int(widths[batch].max())) for batch in plan_batches(widths, batch_tokens))
    return float(layers + cost.per_logit * logits)
