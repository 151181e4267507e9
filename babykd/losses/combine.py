"""Named loss terms, their weights, and the weighted total the trainer optimises.

The trainer computes each active term, logs every one of them separately and
backpropagates ``total = Σ weight_name · term_name``; weights live here, never
inside the term functions, so a term's logged value does not depend on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Callable, Mapping

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


@dataclass(frozen=True)
class LossWeights:
    """Weight of each term in the total; a zero weight means the term is not computed.

    Published recipes: BabyLlama KD ``ce=0.5, kl=0.5``; contrastive KD adds
    ``contrastive=0.1``; DSKD with auxiliary heads ``ce=kl=0.5, aux=0.1``.
    """

    ce: float = 1.0
    kl: float = 0.0
    hidden: float = 0.0
    contrastive: float = 0.0
    aux: float = 0.0

    def __post_init__(self) -> None:
        for name, value in self.as_dict().items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"loss weight {name!r} must be a finite number >= 0, got {value!r}")
        if not any(self.as_dict().values()):
            raise ValueError("at least one loss weight must be > 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, float], *, source: str = "loss weights") -> "LossWeights":
        """Build from a config mapping; unknown keys are an error naming `source`."""
        unknown = sorted(set(values) - set(TERM_NAMES))
        if unknown:
            raise ValueError(f"{source}: unknown loss term(s) {unknown}; known terms are {list(TERM_NAMES)}")
        try:
            return cls(**values)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def active(self) -> tuple[str, ...]:
        """Names of the terms with a positive weight, i.e. the ones to compute."""
        return tuple(name for name, value in self.as_dict().items() if value > 0)


def combine(terms: Mapping[str, Tensor], weights: LossWeights) -> Tensor:
    """``Σ weight · term`` over the active terms; every active term must be present.

    Terms with weight 0 may be present (computed for logging only) and are
    left out of the sum, so a NaN in an unused term cannot reach the gradient.
    """
    unknown = sorted(set(terms) - set(TERM_NAMES))
    if unknown:
        raise ValueError(f"unknown loss term(s) {unknown}; known terms are {list(TERM_NAMES)}")
    missing = [name for name in weights.active if name not in terms]
    if missing:
        raise ValueError(f"loss term(s) {missing} have a positive weight but were not computed")
    scale = weights.as_dict()
    return sum(scale[name] * terms[name] for name in weights.active)  # type: ignore[return-value]


@dataclass
class LossTerms:
    """The terms of one step, by name, as the trainer collects them."""

    values: dict[str, Tensor] = field(default_factory=dict)

    def total(self, weights: LossWeights) -> Tensor:
        return combine(self.values, weights)

    def as_floats(self, prefix: str = "loss_") -> dict[str, float]:
        """Detached values for logging, e.g. ``{"loss_ce": 3.2, "loss_kl": 1.1}`` (syncs a GPU)."""
        return {f"{prefix}{name}": float(value.detach()) for name, value in self.values.items()}
