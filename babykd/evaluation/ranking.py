"""Completion ranking with the arithmetic of the BabyLM 2025 pipeline (``--protocol 2025``).

The 2025/2026 pipeline (github ``babylm/evaluation-pipeline-2025``,
``evaluation_pipeline/sentence_zero_shot``, causal backend) scores every
zero-shot sentence task the same way. The rules, as its code applies them:

* Each candidate is a whole ``sentence`` and the ``completion`` at its end whose
  tokens are scored. The sentence is tokenized with the tokenizer's DEFAULT
  special tokens and character offsets (a fast tokenizer is required).
* Scored tokens: those whose character span ends after
  ``len(sentence) - len(completion) + offsets[0][0]``; a special token has the
  span (0, 0) and is never scored.
* The causal shift drops the first token's score: inputs are ``tokens[:-1]``,
  targets ``tokens[1:]``. So the first word of a sentence is scored only when
  the tokenizer itself prepends a BOS (see `babykd.data.tokenizer`).
* A candidate's score is the sum of its scored tokens' log-softmax (no length
  normalisation, temperature 1). The prediction is the first maximum
  (``torch.max``), so a tie picks candidate 0, the correct one.
* Accuracy per ``UID`` (BLiMP: the record's UID; supplement: the file stem;
  EWoK: ``Domain``; entity tracking: ``<file stem>_<numops>_ops``); the task
  score is the unweighted mean over UIDs.
* WUG tasks: the model's preference is the softmax over the candidates'
  scores, at candidate 0; the metric is Spearman's rho with the human ratio.

What is ours: the candidates are turned into `scorer.Request`s (tokens up to
the last scored one; later tokens cannot change earlier log-probs in a causal
LM) and scored with every token prefix they share computed once
(`prefix_scorer`: an entity-tracking context once for its options and for the
other items of its scenario, a minimal pair's words before its first
difference once), logits only where a token is scored. A model whose attention
takes no custom mask (flash attention) gets the flat batched scorer of the
2024 protocol (`scorer.loglikelihoods`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Sequence

import numpy as np
import torch

from babykd.evaluation.prefix_scorer import packed_loglikelihoods, supports_packing
from babykd.evaluation.request_cache import cached_requests
from babykd.evaluation.scorer import Request, loglikelihoods, split_sizes
from babykd.evaluation.stats import spearman


@dataclass(frozen=True)
class Candidates:
    """One item: candidate sentences (the correct one first) and the completion scored in each."""

    uid: str
    sentences: tuple[str, ...]
    completions: tuple[str, ...]
    #: Task-specific values the metric needs (the WUG human ratio).
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.sentences) != len(self.completions) or len(self.sentences) < 2:
            raise ValueError(f"{self.uid}: need >= 2 sentences with one completion each, got {self}")
        if not all(isinstance(text, str) for text in (*self.sentences, *self.completions)):
            raise TypeError(f"{self.uid}: sentences must be strings, got {self.sentences!r}")
        for sentence, completion in zip(self.sentences, self.completions):
            if not sentence.endswith(completion):
                raise ValueError(f"{self.uid}: completion {completion!r} is not the end of {sentence!r}")


def require_fast(tokenizer: Any) -> None:
    """The 2025 rules need character offsets, which only fast (Rust) tokenizers give."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"protocol 2025 needs a fast tokenizer (character offsets); {type(tokenizer).__name__} is not one"
        )


def completion_requests(
    ids: Sequence[Sequence[int]], offsets: Sequence[Sequence[tuple[int, int]]], pairs: Sequence[tuple[str, str]]
) -> list[Request]:
    """The `Request` scoring the tokens of each (sentence, completion) by the pipeline's offset rule.

    Target position i (i >= 1, the causal shift) is scored when token i's span ends after
    ``len(sentence) - len(completion) + offsets[0][0]``. Vectorised over every token of every
    sentence at once: per-token Python took 2.3 s on the fast entity-tracking set's 3.4M tokens.
    """
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    for i in np.flatnonzero(lengths == 0)[:1]:
        raise ValueError(f"the sentence {pairs[i][0]!r} encodes to no tokens")
    starts = np.cumsum(lengths) - lengths
    spans = np.fromiter(chain.from_iterable(chain.from_iterable(offsets)), dtype=np.int64, count=2 * int(lengths.sum()))
    spans = spans.reshape(-1, 2)
    start_char = np.array([len(sentence) - len(completion) for sentence, completion in pairs]) + spans[starts, 0]
    index = np.arange(len(spans)) - np.repeat(starts, lengths)
    scored = (spans[:, 1] > np.repeat(start_char, lengths)) & (index >= 1)
    count = np.add.reduceat(scored, starts)
    last = np.maximum.reduceat(np.where(scored, index, 0), starts)  # 0 when nothing is scored: tokens[:1]
    running = np.concatenate([[0], np.cumsum(scored)])
    for i in np.flatnonzero(running[starts + last + 1] - running[starts + last + 1 - count] != count)[:1]:
        raise ValueError(f"the completion tokens of {pairs[i][0]!r} are not contiguous (special token inside?)")
    return [Request(tuple(t[: k + 1]), n) for t, k, n in zip(ids, last.tolist(), count.tolist())]


def candidate_requests(tokenizer: Any, items: Sequence[Candidates]) -> list[Request]:
    """One request per candidate sentence of every item, in item order (cached: `request_cache`)."""
    require_fast(tokenizer)
    pairs = [(s, c) for item in items for s, c in zip(item.sentences, item.completions)]
    if not pairs:
        return []
    return cached_requests(tokenizer, "2025 completion", pairs, lambda: _encode_candidates(tokenizer, pairs))


def _encode_candidates(tokenizer: Any, pairs: Sequence[tuple[str, str]]) -> list[Request]:
    """The requests of (sentence, completion) pairs, tokenized in one (parallel) call."""
    encoded = tokenizer([s for s, _ in pairs], return_offsets_mapping=True)
    return completion_requests(encoded["input_ids"], encoded["offset_mapping"], pairs)


def request_scores(model: torch.nn.Module, requests: Sequence[Request], **kwargs: Any) -> np.ndarray:
    """Log-likelihoods; a request with nothing scored scores 0, as an empty masked sum does."""
    if supports_packing(model):
        return packed_loglikelihoods(model, requests, **kwargs)
    scores = np.zeros(len(requests))
    live = [i for i, r in enumerate(requests) if r.n_scored]
    if live:
        scores[live] = loglikelihoods(model, [requests[i] for i in live], **kwargs)
    return scores


def score_candidates(model: torch.nn.Module, tokenizer: Any, items: Sequence[Candidates], **kwargs: Any) -> list[np.ndarray]:
    """The score of every candidate of every item (one array per item), all items' requests scored together.

    Together, because items share prefixes too (the items of one entity-tracking scenario).
    """
    requests = candidate_requests(tokenizer, items)
    return list(split_sizes(request_scores(model, requests, **kwargs), [len(item.sentences) for item in items]))


def choices(scores: Sequence[np.ndarray]) -> np.ndarray:
    """The chosen candidate of each item: the first maximum, as `torch.max` picks it."""
    return np.array([int(np.argmax(s)) for s in scores], dtype=np.int64)


def preference(scores: np.ndarray) -> float:
    """Softmax over the candidates' scores, at candidate 0 (the WUG model ratio), in float32 as the pipeline.

    Why float32 (torch's CPU softmax over the float32 sums, as ``rank_and_evaluate_wug``): there,
    preferences within ~6e-8 of 1 round to exactly 1.0 and tie, and Spearman's rho averages tied
    ranks; float64 would break those ties and move rho in the 4th-7th decimal.
    """
    return float(torch.softmax(torch.as_tensor(scores, dtype=torch.float32), dim=0)[0])


def accuracy_by_uid(items: Sequence[Candidates], chosen: np.ndarray) -> dict[str, dict[str, float | int]]:
    """{uid: {acc, n}} in first-seen order (the pipeline's per-UID accuracy, as a fraction)."""
    out: dict[str, dict[str, float | int]] = {}
    for item, choice in zip(items, chosen):
        entry = out.setdefault(item.uid, {"correct": 0, "n": 0})
        entry["correct"] += int(choice == 0)
        entry["n"] += 1
    return {uid: {"acc": e["correct"] / e["n"], "n": e["n"]} for uid, e in out.items()}


def wug_correlation(items: Sequence[Candidates], scores: Sequence[np.ndarray]) -> tuple[float, list[float]]:
    """(Spearman's rho of model preference vs human ratio, the preferences)."""
    prefs = [preference(s) for s in scores]
    return spearman(np.array(prefs), np.array([float(i.extra["ratio"]) for i in items])), prefs


def predictions(items: Sequence[Candidates], chosen: np.ndarray, prefs: Sequence[float] | None = None) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """The pipeline's ``predictions.json``: per UID, ``{"id": "<uid>_<k>", "pred": chosen completion}``."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for k, (item, choice) in enumerate(zip(items, chosen)):
        rows = out.setdefault(item.uid, {"predictions": []})["predictions"]
        row: dict[str, Any] = {"id": f"{item.uid}_{len(rows)}", "pred": item.completions[choice]}
        if prefs is not None:
            row["prob"] = prefs[k]
        rows.append(row)
    return out
