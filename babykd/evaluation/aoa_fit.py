"""Age-of-acquisition arithmetic of the BabyLM 2025 pipeline: sigmoid fits and the model-child correlation.

The official score (``evaluation_pipeline/utils.py``, ``AoAEvaluator``, after
Chang & Bergen 2022) is computed from per-context surprisals at every
``chck_*`` checkpoint. The rules reproduced here:

* Curve: ``f(x) = a / (1 + exp(-b (x - c))) + d``, fitted with SciPy's
  ``curve_fit`` (``maxfev=1000``); any fitting failure means "no AoA".
* Model AoA of a word: every (checkpoint, context) surprisal is one point, NOT
  the mean over contexts; NaN surprisals are dropped; x is
  ``log10(words_seen + 1)``, y the negated surprisal; unbounded fit from
  ``p0 = [max(y) - min(y), 1, mean(x), min(y)]``. The threshold is half-way
  between "chance", ``log2(300000)``, and the word's lowest surprisal (the
  pipeline mixes a log2 chance with natural-log surprisals; kept as is). The
  AoA is the x where the fit crosses it, as ``log10`` of words seen, and only
  if ``a, b > 0``, the threshold lies strictly inside ``(d, a + d)`` and the
  crossing falls between the first and last checkpoint.
* Child AoA of a word: the CDI proportions at 16-30 months (NaN dropped, at
  least 3 ages), bounded fit from ``p0 = [1, 0.1, mean(age), 0]`` within
  ``[0, 0, first age, -0.5] .. [2, 1, last age, 0.5]``; the age where the fit
  crosses 0.5, if ``a, b > 0`` and it lies within the ages measured.
* Score: Pearson r between the model and child AoAs of the words that have
  both (a word's CDI row is the first with that spelling); with fewer than 3
  such words the pipeline reports 0.0, and so do we (with ``n_words``).

SciPy is imported when a fit is made, so the rest of the package does not need it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

#: The pipeline's "random chance" surprisal: log2 of an assumed 300k-word vocabulary.
CHANCE_SURPRISAL = math.log2(300_000)
#: Children's AoA: the age at which half of them produce the word.
CHILD_THRESHOLD = 0.5
#: Model AoA: half-way from chance to the word's lowest surprisal.
MODEL_THRESHOLD = 0.5
MAXFEV = 1000


def sigmoid(x: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    """The learning curve both fits use."""
    return a / (1 + np.exp(-b * (x - c))) + d


def _curve_fit(x: np.ndarray, y: np.ndarray, p0: Sequence[float], **kwargs) -> np.ndarray | None:
    """SciPy's fit, or None where it fails (as the pipeline's blanket `except` does)."""
    try:
        from scipy.optimize import curve_fit
    except ImportError as exc:  # pinned in requirements.txt, absent on the GPU machine
        raise ImportError("the AoA score needs scipy (pip install -r requirements.txt)") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "covariance could not be estimated" and overflow in exp
            params, _ = curve_fit(sigmoid, x, y, p0=list(p0), maxfev=MAXFEV, **kwargs)
    except (RuntimeError, ValueError, TypeError):  # no convergence, infeasible start, too few points
        return None
    return params


def _crossing(params: np.ndarray, level: float) -> float | None:
    """x where the fitted sigmoid reaches `level`, if the curve rises through it."""
    a, b, c, d = params
    if a <= 0 or b <= 0 or not d < level < a + d:
        return None
    return float(c - np.log(a / (level - d) - 1) / b)


def child_aoa(ages: np.ndarray, proportions: np.ndarray) -> float | None:
    """Age (months) at which the fitted CDI curve reaches 0.5; None when there is none."""
    valid = ~np.isnan(proportions)
    ages, proportions = ages[valid].astype(float), proportions[valid]
    if len(proportions) < 3:
        return None
    bounds = ([0, 0, ages[0], -0.5], [2.0, 1.0, ages[-1], 0.5])
    params = _curve_fit(ages, proportions, [1.0, 0.1, float(np.mean(ages)), 0.0], bounds=bounds)
    if params is None:
        return None
    aoa = _crossing(params, CHILD_THRESHOLD)
    if aoa is None or not ages[0] <= aoa <= ages[-1]:
        return None
    return aoa


def model_aoa(surprisals: Sequence[float], words_seen: Sequence[float]) -> float | None:
    """log10 of the words seen at which the word is learnt; None when the fit gives none.

    `surprisals[i]` was measured at `words_seen[i]`: one point per (checkpoint,
    context), in checkpoint order.
    """
    if len(surprisals) != len(words_seen):
        raise ValueError(f"{len(surprisals)} surprisals but {len(words_seen)} checkpoints")
    if len(surprisals) < 3:
        return None
    steps, values = np.asarray(words_seen, dtype=float), np.asarray(surprisals, dtype=float)
    valid = ~np.isnan(values)
    if not valid.any():
        return None
    steps, values = steps[valid], values[valid]
    threshold = CHANCE_SURPRISAL - MODEL_THRESHOLD * (CHANCE_SURPRISAL - values.min())
    x, y = np.log10(steps + 1), -values
    params = _curve_fit(x, y, [y.max() - y.min(), 1.0, float(np.mean(x)), y.min()])
    if params is None:
        return None
    log_aoa = _crossing(params, -threshold)
    if log_aoa is None or not steps[0] <= 10**log_aoa - 1 <= steps[-1]:
        return None
    return log_aoa


@dataclass(frozen=True)
class CurveFitness:
    """The AoA score and what it was computed from."""

    correlation: float
    p_value: float | None
    words: dict[str, tuple[float, float]]  # word -> (model log10 words seen, child months)

    @property
    def n_words(self) -> int:
        return len(self.words)


def curve_fitness(
    records: Iterable[Mapping], words_seen: Mapping[str, float], cdi_ages: np.ndarray, cdi: Mapping[str, np.ndarray]
) -> CurveFitness:
    """Pearson r of model and child AoAs over the words that have both.

    `records` are the surprisal records (``step``, ``target_word``,
    ``surprisal``) in checkpoint order; `words_seen` maps a step name to its
    words seen; `cdi` maps a word to its proportions at `cdi_ages`.
    """
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for record in records:
        steps, values = curves.setdefault(record["target_word"], ([], []))
        steps.append(words_seen[record["step"]])
        values.append(float(record["surprisal"]))
    words = {}
    for word, (steps, values) in curves.items():
        if word not in cdi:
            continue
        child = child_aoa(cdi_ages, cdi[word])
        if child is None:
            continue
        model = model_aoa(values, steps)
        if model is not None:
            words[word] = (model, child)
    if len(words) < 3:
        return CurveFitness(0.0, None, words)
    from scipy.stats import pearsonr

    model_aoas, child_aoas = zip(*words.values())
    result = pearsonr(model_aoas, child_aoas)
    return CurveFitness(float(result[0]), float(result[1]), words)
