"""Logit terms: hard-target cross-entropy and soft-target KL distillation.

Both work on fp32 copies of the logits (bf16 log-softmax over a 16k-50k
vocabulary loses the small probabilities that carry the "dark knowledge") but
only on the scored rows, and only one fp32 log-probability tensor is built
per model.
"""

from __future__ import annotations

from typing import Callable, Iterable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from babykd.losses.positions import safe_mean, scored_positions

Combine = Literal["logits", "probs"]
Normalization = Literal["token", "reference"]
COMBINE_MODES: tuple[str, ...] = ("logits", "probs")
NORMALIZATIONS: tuple[str, ...] = ("token", "reference")


def cross_entropy_loss(student_logits: Tensor, labels: Tensor) -> Tensor:
    """Hard-target next-token cross-entropy, mean over the scored positions (HF ``loss``)."""
    scored = scored_positions(labels)
    rows = scored.rows(student_logits).float()
    return safe_mean(F.cross_entropy(rows, scored.targets, reduction="sum"), scored.count)


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
    _check_choice("combine", combine, COMBINE_MODES)
    _check_temperature(temperature)
    accumulated: Tensor | None = None
    n_teachers = 0
    for rows in teacher_rows:
        rows = rows.detach()
        if accumulated is None:
            accumulated = torch.zeros(rows.shape, dtype=torch.float32, device=rows.device)
        if combine == "logits":
            accumulated.add_(rows)
        else:
            accumulated.add_(torch.log_softmax(rows.float() / temperature, dim=-1).exp_())
        n_teachers += 1
    if accumulated is None:
        raise ValueError("at least one teacher is needed for a distillation term")
    if combine == "logits":
        log_probs = torch.log_softmax(accumulated.div_(n_teachers * temperature), dim=-1)
    else:
        log_probs = accumulated.div_(n_teachers).log_()
    return log_probs.clamp_(min=torch.finfo(torch.float32).min)


def soft_target_kl_sum(student_rows: Tensor, teacher_log_probs: Tensor, temperature: float) -> Tensor:
    """``T² · Σ_rows KL(p_teacher ‖ p_student)`` at temperature T, summed (not averaged) over rows.

    The T² factor keeps the gradient scale of the soft term independent of T
    (Hinton et al. 2015), as in the published recipes.
    """
    student_log_probs = torch.log_softmax(student_rows.float() / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="sum", log_target=True)
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
    _check_choice("normalization", normalization, NORMALIZATIONS)
    _check_teacher_shapes(student_logits, teacher_logits)
    select, count = _logit_rows(labels, student_logits, normalization)
    teacher_log_probs = combined_teacher_log_probs((select(t) for t in teacher_logits), temperature, combine)
    kl_sum = soft_target_kl_sum(select(student_logits), teacher_log_probs, temperature)
    return safe_mean(kl_sum, count)


def _logit_rows(
    labels: Tensor, student_logits: Tensor, normalization: Normalization
) -> tuple[Callable[[Tensor], Tensor], int]:
    """How to select the rows a KL term sums over, and what it divides the sum by."""
    if normalization == "reference":
        return (lambda logits: logits.reshape(-1, logits.size(-1))), student_logits.size(0)
    scored = scored_positions(labels)
    return scored.rows, scored.count


def _check_teacher_shapes(student_logits: Tensor, teacher_logits: Sequence[Tensor]) -> None:
    if not teacher_logits:
        raise ValueError("at least one teacher is needed for a distillation term")
    for index, logits in enumerate(teacher_logits):
        if logits.shape != student_logits.shape:
            raise ValueError(
                f"teacher {index} logits have shape {tuple(logits.shape)} but the student's are "
                f"{tuple(student_logits.shape)}: teachers must share the student's tokenizer and vocabulary size"
            )


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
