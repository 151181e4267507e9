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
difference once), logits only where a token is scored; a context all of an
item's candidates share is tokenized once too (`_encode_candidates`). A model
whose attention takes no custom mask (flash attention) gets the flat batched
scorer of the 2024 protocol (`scorer.loglikelihoods`).
"""

from __future__ import annotations

import json
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
    ids: Sequence[Sequence[int]], ends: Sequence[Sequence[int]], first_starts: Sequence[int],
    pairs: Sequence[tuple[str, str]],
) -> list[Request]:
    """The `Request` scoring the tokens of each (sentence, completion) by the pipeline's offset rule.

    Target position i (i >= 1, the causal shift) is scored when token i's span ends after
    ``len(sentence) - len(completion) + offsets[0][0]``: only the span ends (`ends`, per token) and the
    first token's span start (`first_starts`, per sentence) count. Vectorised over every token of every
    sentence at once: per-token Python took 2.3 s on the fast entity-tracking set's 3.4M tokens.
    """
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    for i in np.flatnonzero(lengths == 0)[:1]:
        raise ValueError(f"the sentence {pairs[i][0]!r} encodes to no tokens")
    starts = np.cumsum(lengths) - lengths
    span_ends = np.fromiter(chain.from_iterable(ends), dtype=np.int64, count=int(lengths.sum()))
    start_char = np.array([len(sentence) - len(completion) for sentence, completion in pairs]) + np.asarray(first_starts)
    index = np.arange(len(span_ends)) - np.repeat(starts, lengths)
    scored = (span_ends > np.repeat(start_char, lengths)) & (index >= 1)
    count = np.add.reduceat(scored, starts)
    last = np.maximum.reduceat(np.where(scored, index, 0), starts)  # 0 when nothing is scored: tokens[:1]
    running = np.concatenate([[0], np.cumsum(scored)])
    for i in np.flatnonzero(running[starts + last + 1] - running[starts + last + 1 - count] != count)[:1]:
        raise ValueError(f"the completion tokens of {pairs[i][0]!r} are not contiguous (special token inside?)")
    return [Request(tuple(t[: k + 1]), n) for t, k, n in zip(ids, last.tolist(), count.tolist())]


def candidate_requests(tokenizer: Any, items: Sequence[Candidates]) -> list[Request]:
    """One request per candidate sentence of every item, in item order (cached: `request_cache`)."""
    require_fast(tokenizer)
    pairs = candidate_pairs(items)
    if not pairs:
        return []
    return cached_requests(tokenizer, "2025 completion", pairs, lambda: _encode_candidates(tokenizer, items))


def candidate_pairs(items: Sequence[Candidates]) -> list[tuple[str, str]]:
    """(sentence, completion) of every candidate, in item order."""
    return [(s, c) for item in items for s, c in zip(item.sentences, item.completions)]


#: One tokenized text: its token ids, each token's span end, the first token's span start (0 if none).
Encoded = tuple[list[int], list[int], int]
#: Normalizers that rewrite each character on its own: a text cut before an ASCII space normalizes as its parts do.
CHARACTER_NORMALIZERS = frozenset({"NFC", "NFD", "NFKC", "NFKD", "Lowercase"})
#: The text `splits_before_spaces` checks the special tokens on.
SPECIALS_PROBE = "Box 0 contains the apple."


def _encode_candidates(tokenizer: Any, items: Sequence[Candidates]) -> list[Request]:
    """The requests of every candidate of `items`, each item's shared head tokenized once.

    Why: an entity-tracking item's five options follow one ~550-character context, so tokenizing
    each sentence whole tokenized every context five times (9.0M characters for the fast set's
    3,152 items, 2.4 s of a 2-core VM's CPU). Where the tokenizer allows it (`splits_before_spaces`)
    an item whose candidates begin with the same head (`shared_head`) has the head tokenized once
    with the special tokens, and each candidate's rest without them, from the head's last character
    on: the tokens of that character are dropped (their spans end by it). Why that character: a
    rest tokenized from its space alone makes the space the text's first token, whose span the
    byte-level offset trimming treats as an added prefix space (a lone space token's span ended
    one character early). The ids and span ends are those of the whole sentence
    (tests/test_shared_heads.py compares them on every fast item and on crafted texts).
    """
    cuts = [shared_head(item) for item in items] if splits_before_spaces(tokenizer) else [0] * len(items)
    firsts = iter(_encode(tokenizer, [text for item, cut in zip(items, cuts)
                                      for text in ((item.sentences[0][:cut],) if cut else item.sentences)]))
    tails = iter(_encode(tokenizer, [s[cut - 1:] for item, cut in zip(items, cuts) if cut for s in item.sentences],
                         add_special_tokens=False))
    encoded: list[Encoded] = []
    for item, cut in zip(items, cuts):
        if not cut:
            encoded.extend(next(firsts) for _ in item.sentences)
            continue
        head_ids, head_ends, first_start = next(firsts)
        for tail_ids, tail_ends, _ in (next(tails) for _ in item.sentences):
            rest = next(k for k, end in enumerate(tail_ends) if end > 1)  # past the tokens of the head's last character
            encoded.append((head_ids + tail_ids[rest:], head_ends + [cut - 1 + end for end in tail_ends[rest:]],
                            first_start))
    ids, ends, first_starts = zip(*encoded)
    return completion_requests(ids, ends, first_starts, candidate_pairs(items))


def _encode(tokenizer: Any, texts: Sequence[str], add_special_tokens: bool = True) -> list[Encoded]:
    """`texts` tokenized in one (parallel) call; of the offsets only what `completion_requests` reads.

    No attention masks or token types: a Python list per text each, never read.
    """
    if not texts:
        return []
    out = tokenizer(list(texts), add_special_tokens=add_special_tokens, return_offsets_mapping=True,
                    return_attention_mask=False, return_token_type_ids=False)
    return [(ids, [end for _, end in spans], spans[0][0] if spans else 0)
            for ids, spans in zip(out["input_ids"], out["offset_mapping"])]


def shared_head(item: Candidates) -> int:
    """Length of the head every candidate of `item` begins with, cut before a space; 0 if there is none.

    The cut is the last space inside the first candidate's context (or the one starting its
    completion) that follows a printable ASCII character, and every candidate continues the head
    with that space (entity tracking: before the context's last word; EWoK: before the target).
    """
    first = item.sentences[0]
    cut = first.rfind(" ", 1, len(first) - len(item.completions[0]) + 1)
    if cut < 1 or not "!" <= first[cut - 1] <= "~":
        return 0
    head = first[: cut + 1]
    return cut if all(sentence.startswith(head) for sentence in item.sentences[1:]) else 0


def splits_before_spaces(tokenizer: Any) -> bool:
    """Whether a text cut before a space that follows a printable ASCII character tokenizes as its parts do.

    The head with the special tokens; the rest (from the head's last character) without, its tokens
    from the space on. True for byte-level BPE (GPT-2's pre-tokenizer regex, as ours): no pre-token
    both ends with such a character and holds the space, and the pre-tokens from the space on are
    the same whatever precedes that character. It also needs normalizers that map characters one by
    one (`CHARACTER_NORMALIZERS`), a deterministic model (no BPE dropout), added tokens that cannot
    reach across the cut (no whitespace in them, no stripping of it) and special tokens only in
    front of a text. Any other tokenizer has every sentence tokenized whole.
    """
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    normalizer = spec.get("normalizer") or {"type": "Sequence", "normalizers": []}
    steps = normalizer["normalizers"] if normalizer["type"] == "Sequence" else [normalizer]
    pre = spec.get("pre_tokenizer") or {}
    local = (all(step["type"] in CHARACTER_NORMALIZERS for step in steps)
             and pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not spec["model"].get("dropout")
             and not any(t["lstrip"] or t["rstrip"] or any(ch.isspace() for ch in t["content"])
                         for t in spec.get("added_tokens", [])))
    if not local:
        return False
    (with_ids, with_ends, _), (ids, ends, _) = _encode(tokenizer, [SPECIALS_PROBE]) + _encode(
        tokenizer, [SPECIALS_PROBE], add_special_tokens=False)
    front = len(with_ids) - len(ids)
    return with_ids[front:] == ids and with_ends[front:] == ends


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
