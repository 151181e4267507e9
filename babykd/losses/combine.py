"""The weighted total of the named loss terms (`babykd.losses.terms`) that the trainer optimises.

The trainer computes each active term, logs every one of them separately and
backpropagates ``total = Σ weight_name · term_name``; weights live here, never
inside the term functions, so a term's logged value does not depend on them.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor

from babykd.losses.terms import TERM_NAMES, weight_of


def combine(terms: Mapping[str, Tensor], weights: Any) -> Tensor:
    """``Σ weight · term`` over the terms with a positive weight; each of those must be present.

    `weights` is any object with a float attribute per term it weighs (one it does not name
    weighs 0): the run config's `LossWeightsConfig` (validated there).
    Terms with weight 0 may be present (computed for logging only) and are
    left out of the sum, so a NaN in an unused term cannot reach the gradient.
    """
    unknown = sorted(set(terms) - set(TERM_NAMES))
    if unknown:
        raise ValueError(f"unknown loss term(s) {unknown}; known terms are {list(TERM_NAMES)}")
    scale = {name: weight_of(weights, name) for name in TERM_NAMES}
    active = [name for name, value in scale.items() if value > 0]
    missing = [name for name in active if name not in terms]
    if missing:
        raise ValueError(f"loss term(s) {missing} have a positive weight but were not computed")
    if not active:
        raise ValueError("all loss weights are zero: nothing to optimise")
    return sum(scale[name] * terms[name] for name in active)  # type: ignore[return-value]
