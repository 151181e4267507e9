"""Named loss terms, their weights, and the weighted total the trainer optimises.

The trainer computes each active term, logs every one of them separately and
backpropagates ``total = Σ weight_name · term_name``; weights live here, never
inside the term functions, so a term's logged value does not depend on them.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Mapping

from torch import Tensor

from babykd.losses.auxiliary import auxiliary_classifier_loss
from babykd.losses.hidden import contrastive_loss, hidden_state_loss
from babykd.losses.logit import cross_entropy_loss, kl_distillation_loss

#: Term name -> the function that computes it (their inputs differ; see each docstring).
LOSS_TERMS: Mapping[str, Callable[..., Tensor]] = MappingProxyType(
    {
        "ce": cross_entropy_loss,
        "kl": kl_distillation_loss,
        "hidden": hidden_state_loss,
        "contrastive": contrastive_loss,
        "aux": auxiliary_classifier_loss,
    }
)
TERM_NAMES: tuple[str, ...] = tuple(LOSS_TERMS)


def combine(terms: Mapping[str, Tensor], weights: Any) -> Tensor:
    """``Σ weight · term`` over the terms with a positive weight; each of those must be present.

    `weights` is any object with one float attribute per name in
    ``TERM_NAMES``: the run config's `LossWeightsConfig` (validated there).
    Terms with weight 0 may be present (computed for logging only) and are
    left out of the sum, so a NaN in an unused term cannot reach the gradient.
    """
    unknown = sorted(set(terms) - set(TERM_NAMES))
    if unknown:
        raise ValueError(f"unknown loss term(s) {unknown}; known terms are {list(TERM_NAMES)}")
    scale = {name: float(getattr(weights, name)) for name in TERM_NAMES}
    active = [name for name, value in scale.items() if value > 0]
    missing = [name for name in active if name not in terms]
    if missing:
        raise ValueError(f"loss term(s) {missing} have a positive weight but were not computed")
    if not active:
        raise ValueError("all loss weights are zero: nothing to optimise")
    return sum(scale[name] * terms[name] for name in active)  # type: ignore[return-value]
