"""The 2025 reading task: surprisal as a predictor of eye-tracking and self-paced reading times.

Rules of the official pipeline (``evaluation_pipeline/reading``, causal backend;
scores as ``collate_preds.py`` / ``calculate_results_from_pred.py`` compute them):

* The CSV is read as pandas reads it (empty cells and "NA"/"None"/... are
  missing); a missing ``item`` (context) becomes the string ``"None"``.
* Surprisal of ``word`` after ``item`` (``get_p2``): the context is tokenized
  with default special tokens, the word WITHOUT them; the first word token's
  probability is read after the context. Each further word token is scored
  after ``context + decode(earlier word tokens)`` re-tokenized, its target
  being the FIRST token of ``decode(token)`` re-tokenized. Surprisal is
  ``-ln(product of the probabilities)``; ``prev_pred`` is the same for
  ``prev_word`` after ``prev_item`` (missing when ``prev_item`` is).
* Eye tracking: for each of RTfirstfix, RTfirstpass, RTgopast, RTrightbound,
  OLS with intercept of the measure on Subtlex_log10, length, context_length
  and their pairwise products (baseline), and the same plus surprisal; the
  gain ``(R2_model - R2_base) / (1 - R2_base)``, averaged over the four.
* Self-paced reading: the same with prev_length and prev_pred (spill-over)
  added to the baseline's variables (all pairwise products of the five).
  Each regression drops rows missing any of its variables.

Scores are fractions here (the pipeline prints them x100).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Sequence

import numpy as np
import torch

from babykd.evaluation.ranking import request_scores, require_fast
from babykd.evaluation.scorer import Request
from babykd.evaluation.stats import ols_r2
from babykd.evaluation.tasks import TaskDataError

EYE_TRACKING = ("RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound")
SELF_PACED = "self_paced_reading_time"
BASE_PREDICTORS = ("Subtlex_log10", "length", "context_length")
SPILLOVER_PREDICTORS = BASE_PREDICTORS + ("prev_length", "prev_pred")
#: pandas.read_csv's default missing-value strings (the pipeline reads the CSV with pandas).
PANDAS_NA = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})
NUMERIC = EYE_TRACKING + (SELF_PACED,) + BASE_PREDICTORS + ("prev_length",)


@dataclass(frozen=True)
class ReadingData:
    """The rows the task needs: contexts and words (None = missing) and numeric columns."""

    items: tuple[str, ...]
    words: tuple[str, ...]
    prev_items: tuple[str | None, ...]
    prev_words: tuple[str | None, ...]
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.words)


def parse_reading_csv(data: bytes, where: str) -> ReadingData:
    """Parse ``reading_data.csv``; `where` names the file in errors."""
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    if not rows:
        raise TaskDataError(f"{where}: no rows")
    needed = ("item", "word", "prev_item", "prev_word") + NUMERIC
    missing = [c for c in needed if c not in rows[0]]
    if missing:
        raise TaskDataError(f"{where}: missing column(s) {', '.join(missing)}")

    def text(value: str) -> str | None:
        return None if value in PANDAS_NA else value

    def number(value: str, line: int, column: str) -> float:
        if value in PANDAS_NA:
            return math.nan
        try:
            return float(value)
        except ValueError:
            raise TaskDataError(f"{where}:{line}: column {column!r} is not a number: {value!r}") from None

    words = []
    for line, row in enumerate(rows, start=2):
        word = text(row["word"])
        if word is None:
            raise TaskDataError(f"{where}:{line}: empty word")
        words.append(word)
    return ReadingData(
        items=tuple(text(r["item"]) or "None" for r in rows),  # the pipeline's fillna("None")
        words=tuple(words),
        prev_items=tuple(text(r["prev_item"]) for r in rows),
        prev_words=tuple(text(r["prev_word"]) for r in rows),
        columns={c: np.array([number(r[c], i, c) for i, r in enumerate(rows, start=2)]) for c in NUMERIC},
    )


def word_queries(tokenizer: Any, context: str, word: str) -> list[tuple[str, int]]:
    """(context string, target token id) whose probabilities multiply to P(word | context)."""
    target = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not target:
        raise ValueError(f"word {word!r} encodes to no tokens")
    queries = [(context, target[0])]
    sentence = context + tokenizer.decode(target[0])
    for token in target[1:]:
        piece = tokenizer.decode(token)
        ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"token {token} of {word!r} decodes to {piece!r}, which encodes to no tokens")
        queries.append((sentence, ids[0]))
        sentence += piece
    return queries


def surprisals(model: torch.nn.Module, tokenizer: Any, pairs: Sequence[tuple[str, str]], **kwargs: Any) -> np.ndarray:
    """-ln P(word | context) for each (context, word), by the pipeline's `get_p2` rule."""
    require_fast(tokenizer)
    queries = [word_queries(tokenizer, c, w) for c, w in pairs]
    contexts = sorted({c for qs in queries for c, _ in qs})
    context_ids = dict(zip(contexts, tokenizer(contexts)["input_ids"]))
    flat = [Request(tuple(context_ids[c]) + (t,), 1) for qs in queries for c, t in qs]
    logps = request_scores(model, flat, **kwargs)
    out, offset = np.empty(len(pairs)), 0
    for k, qs in enumerate(queries):
        out[k] = -float(np.sum(logps[offset: offset + len(qs)]))
        offset += len(qs)
    return out


def score_reading(model: torch.nn.Module, tokenizer: Any, data: ReadingData, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """(pred, prev_pred): surprisal of each word and of its previous word (NaN where none)."""
    has_prev = [i for i, p in enumerate(data.prev_items) if p is not None]
    pairs = list(zip(data.items, data.words)) + [(data.prev_items[i], data.prev_words[i] or "") for i in has_prev]
    values = surprisals(model, tokenizer, pairs, **kwargs)
    prev = np.full(len(data), math.nan)
    prev[has_prev] = values[len(data):]
    return values[: len(data)], prev


def _gain(y: np.ndarray, predictors: dict[str, np.ndarray], names: Sequence[str]) -> float:
    """(R2_model - R2_base) / (1 - R2_base): baseline = names + pairwise products, model adds `pred`."""

    def r2(variables: Sequence[str]) -> float:
        keep = ~np.isnan(y)
        for v in variables:
            keep &= ~np.isnan(predictors[v])
        cols = [predictors[v][keep] for v in names] + [predictors[a][keep] * predictors[b][keep] for a, b in combinations(names, 2)]
        if "pred" in variables:
            cols.append(predictors["pred"][keep])
        return ols_r2(y[keep], cols)

    base = r2(names)
    return (r2(list(names) + ["pred"]) - base) / (1 - base)


def reading_scores(data: ReadingData, pred: np.ndarray, prev_pred: np.ndarray) -> dict[str, Any]:
    """Eye-tracking (mean over the four measures) and self-paced reading R^2 gains."""
    predictors = {**data.columns, "pred": pred, "prev_pred": prev_pred}
    per_measure = {m: _gain(data.columns[m], predictors, BASE_PREDICTORS) for m in EYE_TRACKING}
    return {
        "eye_tracking": float(np.mean(list(per_measure.values()))),
        "eye_tracking_measures": per_measure,
        "self_paced_reading": _gain(data.columns[SELF_PACED], predictors, SPILLOVER_PREDICTORS),
    }


def reading_predictions(pred: np.ndarray, prev_pred: np.ndarray) -> dict[str, Any]:
    """The pipeline's reading ``predictions.json``."""
    rows = [{"id": i, "pred": float(p), "prev_pred": float(q)} for i, (p, q) in enumerate(zip(pred, prev_pred))]
    return {"reading": {"predictions": rows}}
