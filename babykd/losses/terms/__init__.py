"""The loss terms: one module per term in this package, each defining ``TERM``, found by listing it.

Why a registry: a term's facts (its weight key, its own config fields and their checks, the inputs
it needs, the trainable module it owns and how it is computed) used to be spread over the config's
weights class, the trainer's hand-written dispatch, the module builder and the term-share
benchmark. Now each is one `LossTerm` in its own file; the config derives its weight keys and
fields from `REGISTRY`, the trainer runs the forwards the configured terms ask for and sums them,
and logging and the benchmark iterate it. Adding a term is adding a file here (see `ce.py`).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Iterable, Mapping

from babykd.losses.terms.base import (
    CACHED_TARGETS,
    STUDENT_HIDDEN,
    TEACHER_HIDDEN,
    TEACHER_LOGITS,
    LossTerm,
    ModuleContext,
    StepTensors,
)


def _discover() -> dict[str, LossTerm]:
    modules = (info.name for info in pkgutil.iter_modules(__path__) if info.name != "base")
    terms = [importlib.import_module(f"{__name__}.{name}").TERM for name in modules]
    names = [term.name for term in terms]
    if len(set(names)) != len(names):
        raise RuntimeError(f"two term modules in {__name__} define the same term name: {sorted(names)}")
    options = [option[0] for term in terms for option in term.options]
    if len(set(options)) != len(options):
        raise RuntimeError(f"two term modules in {__name__} declare the same config field: {sorted(options)}")
    return {term.name: term for term in sorted(terms, key=lambda term: (term.order, term.name))}


#: Term name (= its key under ``distillation.weights``) -> the term, in the order they are summed.
REGISTRY: Mapping[str, LossTerm] = _discover()
TERM_NAMES: tuple[str, ...] = tuple(REGISTRY)


def weight_of(weights: Any, name: str) -> float:
    """Term `name`'s weight in `weights` (a `LossWeightsConfig`, or any object with float attributes; absent: 0)."""
    return float(getattr(weights, name, 0.0))


def weighted_terms(weights: Any) -> list[LossTerm]:
    """The terms with a positive weight in `weights`, in summation order."""
    return [term for term in REGISTRY.values() if weight_of(weights, term.name) > 0]


def computed_terms(weights: Any) -> list[LossTerm]:
    """The terms a training step computes: the weighted ones and those logged even at weight 0 (ce)."""
    return [term for term in REGISTRY.values() if weight_of(weights, term.name) > 0 or term.always_logged]


def needs_of(terms: Iterable[LossTerm], cfg: Any) -> frozenset[str]:
    """Every input the `terms` read under distillation settings `cfg` (None: pretraining)."""
    return frozenset().union(*(term.needs_for(cfg) for term in terms))


__all__ = [
    "CACHED_TARGETS",
    "REGISTRY",
    "STUDENT_HIDDEN",
    "TEACHER_HIDDEN",
    "TEACHER_LOGITS",
    "TERM_NAMES",
    "LossTerm",
    "ModuleContext",
    "StepTensors",
    "computed_terms",
    "needs_of",
    "weight_of",
    "weighted_terms",
]
