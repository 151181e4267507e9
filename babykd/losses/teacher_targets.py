"""The soft targets of logit distillation: the teacher ensemble's tempered log-probabilities.

Kept apart from the loss terms so the plain (:mod:`babykd.losses.logit`) and
the chunked (:mod:`babykd.losses.chunked`) implementations share one
definition of how teachers are combined.
"""

from __future__ import annotations

from typing import Iterable, Literal

import torch
from torch import Tensor

Combine = Literal["logits", "probs"]
COMBINE_MODES: tuple[str, ...] = ("logits", "probs")


def combined_teacher_log_probs(
    teacher_rows: Iterable[Tensor], temperature: float, combine: Combine = "logits"
) -> Tensor:
    """Detached fp32 log-probabilities of the teacher ensemble at `temperature`, ``[N, V]``.

    ``combine="logits"`` averages the teachers' logits, then softmaxes (what the
    published BabyLlama recipes do); ``combine="probs"`` averages the teachers'
    tempered probabilities (a true mixture: a token one teacher is sure of keeps
    half its mass instead of being averaged away in logit space).
    Log-probabilities that underflow to -inf are clamped to the most negative
    finite float, so their zero probability contributes exactly 0 to the KL
    instead of ``0 * inf = NaN`` (teachers that mask vocabulary entries).
    `teacher_rows` may be a generator, so that only one teacher's selected
    rows exist at a time next to the fp32 accumulator.
    """
    check_choice("combine", combine, COMBINE_MODES)
    check_temperature(temperature)
    accumulated: Tensor | None = None
    n_teachers = 0
    for rows in teacher_rows:
        rows = rows.detach()
        if combine == "logits":
            term = rows
        else:
            term = torch.log_softmax(rows.float() / temperature, dim=-1).exp_()
        if accumulated is None:
            # A fresh fp32 copy of the first term is the accumulator (0 + x = x exactly): one pass
            # fewer than zeros + add, and the caller's tensor is never modified in place.
            accumulated = term.to(torch.float32, copy=term is rows)
        else:
            accumulated.add_(term)
        n_teachers += 1
    if accumulated is None:
        raise ValueError("at least one teacher is needed for a distillation term")
    if combine == "logits":
        log_probs = torch.log_softmax(accumulated.div_(n_teachers * temperature), dim=-1)
    else:
        log_probs = accumulated.div_(n_teachers).log_()
    return log_probs.clamp_(min=torch.finfo(torch.float32).min)


def check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
