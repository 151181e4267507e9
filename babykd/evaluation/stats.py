"""The two statistics the 2025 pipeline takes from scipy and statsmodels, in numpy.

Why our own: neither library is installed on the GPU machine, and each
statistic is a few lines. Both follow the libraries' definitions exactly:

* `spearman`: ``scipy.stats.spearmanr`` -- Pearson's r of the ranks, ties
  given their average rank; NaN when either side is constant.
* `ols_r2`: ``statsmodels.formula.api.ols(...).fit().rsquared`` -- ordinary
  least squares with an intercept, R^2 = 1 - SSR / centred total sum of squares.
"""

from __future__ import annotations

import math

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing their average rank (``scipy.stats.rankdata`` 'average')."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        stop = start
        while stop + 1 < len(values) and sorted_values[stop + 1] == sorted_values[start]:
            stop += 1
        ranks[order[start: stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two equally long samples."""
    if len(x) != len(y):
        raise ValueError(f"spearman: samples of different lengths ({len(x)} vs {len(y)})")
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / denominator if denominator > 0 else math.nan


def ols_r2(y: np.ndarray, columns: list[np.ndarray]) -> float:
    """R^2 of the least-squares fit of `y` on an intercept and `columns`."""
    design = np.column_stack([np.ones(len(y))] + [np.asarray(c, dtype=np.float64) for c in columns])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    centred = y - y.mean()
    return 1.0 - float(residual @ residual) / float(centred @ centred)
