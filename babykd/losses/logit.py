"""Logit terms: hard-target cross-entropy and soft-target KL distillation.

Both are computed in fp32 (bf16 log-softmax over a 16k-50k vocabulary loses
the small probabilities that carry the "dark knowledge") on the scored rows
only, through the chunked implementations of :mod:`babykd.losses.chunked`:
value and gradient in one pass, without any fp32 ``[N, V]`` tensor kept for
the backward pass.  The arithmetic per row is the plain autograd form's
(:func:`soft_target_kl_sum`, ``F.cross_entropy``), which the tests check.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from babykd.losses.chunked import chunked_cross_entropy, chunked_soft_target_kl
from babykd.losses.positions import scored_positions, weighted_sum
from babykd.losses.teacher_targets import (
    COMBINE_MODES,
    Combine,
    check_choice,
    check_temperature,
    combined_teacher_log_probs,
)

Normalization = Literal["token", "reference"]
NORMALIZATIONS: tuple[str, ...] = ("token", "reference")

__all__ = [
    "COMBINE_MODES",
    "NORMALIZATIONS",
    "Combine",
    "Normalization",
    "combined_teacher_log_probs",
    "cross_entropy_loss",
    "kl_distillation_loss",
    "soft_target_kl_sum",
]


def cross_entropy_loss(student_logits: Tensor, labels: Tensor) -> Tensor:
    """Hard-target next-token cross-entropy, mean over the scored positions (HF ``loss``)."""
    scored = scored_positions(labels)
    _check_positions(student_logits, labels)
    return chunked_cross_entropy(_flat(student_logits), scored.targets, scored.weights, divisor=scored.count)


def soft_target_kl_sum(
    student_rows: Tensor, teacher_log_probs: Tensor, temperature: float, *, weights: Tensor | None = None
) -> Tensor:
    """``T² · Σ_rows w_row · KL(p_teacher ‖ p_student)`` at temperature T, summed (not averaged) over rows.

    The T² factor keeps the gradient scale of the soft term independent of T
    (Hinton et al. 2015), as in the published recipes. `weights` ``[rows]``
    (None: all 1) leaves out unscored rows without gathering the others.
    """
    student_log_probs = torch.log_softmax(student_rows.float() / temperature, dim=-1)
    if weights is None:
        kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="sum", log_target=True)
    else:
        per_row = F.kl_div(student_log_probs, teacher_log_probs, reduction="none", log_target=True).sum(-1)
        kl = weighted_sum(per_row, weights)
    return kl * temperature**2


def kl_distillation_loss(
    student_logits: Tensor,
    teacher_logits: Sequence[Tensor],
    labels: Tensor,
    *,
    temperature: float = 2.0,
    combine: Combine = "logits",
    normalization: Normalization = "token",
) -> Tensor:
    """Logit KD: ``T² · KL(p_teacher ‖ p_student)`` against the combined teachers.

    Inputs are unshifted HF tensors: logits ``[B, L, V]`` (one per teacher, same
    shape as the student's) and labels ``[B, L]``; teachers are detached here.
    T is the temperature, L the sequence length.

    ``normalization="token"`` (default for new work): sum of the per-position KL
    over the *scored* next-token positions (logits positions 0..L-2 whose target
    ``labels[t+1]`` is not -100), divided by their number N — the same positions
    and the same averaging as :func:`cross_entropy_loss`, so the two are on one
    scale.

    ``normalization="reference"`` reproduces the published code exactly:
    ``KLDivLoss(reduction="batchmean")(log_softmax(s/T), softmax(t/T)) · T²`` on
    the full unshifted ``[B, L, V]`` tensors, i.e. the sum of the per-position
    KL over **all** B·L positions — the last position and padded / -100
    positions included, `labels` ignored — divided by the batch size B only.

    Conversion, with ``k(b, t) = T²·KL(p_teacher ‖ p_student)`` at logits
    position t (same temperature and teachers)::

        reference = (1/B) · Σ_{b, t=0..L-1} k(b, t)  = L · (mean of k over all B·L positions)
        token     = (1/N) · Σ_{(b, t) scored} k(b, t)

    With nothing masked (N = B·(L-1)) this gives exactly
    ``reference = (L-1) · token + (1/B) · Σ_b k(b, L-1)``, so reference ≈ L ×
    token: the reference KL is about sequence-length times larger than the CE,
    which silently shifts the published α-weighting towards the KL term.
    """
    check_choice("normalization", normalization, NORMALIZATIONS)
    check_choice("combine", combine, COMBINE_MODES)
    check_temperature(temperature)
    _check_teacher_shapes(student_logits, teacher_logits)
    weights: Tensor | None
    if normalization == "reference":
        weights, count = None, student_logits.size(0)
    else:
        scored = scored_positions(labels)
        _check_positions(student_logits, labels)
        weights, count = scored.weights, scored.count
    return chunked_soft_target_kl(
        _flat(student_logits), [_flat(t) for t in teacher_logits], weights,
        temperature=temperature, combine=combine, divisor=count,
    )


def _flat(logits: Tensor) -> Tensor:
    """``[B, T, V]`` as ``[B·T, V]`` rows (a view for the contiguous logits a model returns)."""
    return logits.reshape(-1, logits.size(-1))


def _check_positions(logits: Tensor, labels: Tensor) -> None:
    if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(labels.shape):
        raise ValueError(
            f"logits of shape {tuple(logits.shape)} do not match labels of shape {tuple(labels.shape)}: "
            "expected [batch, seq, vocab] logits for [batch, seq] labels"
        )


def _check_teacher_shapes(student_logits: Tensor, teacher_logits: Sequence[Tensor]) -> None:
    if not teacher_logits:
        raise ValueError("at least one teacher is needed for a distillation term")
    for index, logits in enumerate(teacher_logits):
        if logits.shape != student_logits.shape:
            raise ValueError(
                f"teacher {index} logits have shape {tuple(logits.shape)} but the student's are "
                f"{tuple(student_logits.shape)}: teachers must share the student's tokenizer and vocabulary size"
            )
