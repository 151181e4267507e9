"""Logit KD against cached top-k teacher targets (offline KD) instead of live teacher logits.

The teacher ensemble's tempered distribution q is stored as its k most likely
tokens and their log-probabilities (:mod:`babykd.teacher_cache`); the mass of
every other token is kept as one "rest" outcome. The term is the same
``T² · KL(q ‖ p_student)`` with the same two normalisations as
:func:`babykd.losses.logit.kl_distillation_loss`, over the distributions
coarsened to k + 1 outcomes (the k tokens, and everything else)::

    Σ_j q_j (log q_j − log p_j)  +  q_rest (log q_rest − log p_rest)

With k equal to the vocabulary it *is* the dense loss. Unlike renormalising q
over its top k, it is zero when the student matches the teacher and does not
push the student to give the other tokens zero mass; what it loses is only how
the teacher spreads the rest mass (at most q_rest of signal per position; the
cache's build records the mean mass its top k hold).

Value and gradient are computed together, in row chunks, as in :mod:`babykd.losses.chunked`: no
fp32 ``[N, V]`` work tensor outlives its chunk, the gradient (closed form, see `sparse_kl_chunk`)
is stored once in the logits' dtype, and nothing is recomputed in the backward pass.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from babykd.losses.chunked import (
    chunked_value_and_gradient,
    default_chunk_rows,
    floored_divisor,
    needs_gradient,
    scaled_gradient,
)
from babykd.losses.logit import NORMALIZATIONS, Normalization
from babykd.losses.positions import scored_positions, weighted_sum
from babykd.losses.teacher_targets import check_choice, check_temperature


#: Floor of log p_rest (about 1e-30): keeps the rest term finite when the student has ~no rest mass.
MIN_LOG_REST = -69.0
_ONE = torch.ones(())


def top_k_targets(teacher_log_probs: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The `k` most likely ids per row of ``[..., V]`` log-probs and their log-probs (not renormalised)."""
    if not 1 <= k <= teacher_log_probs.size(-1):
        raise ValueError(f"k must be in [1, {teacher_log_probs.size(-1)}], got {k}")
    values, ids = teacher_log_probs.float().topk(k, dim=-1)
    return ids, values


def sparse_kl_chunk(
    student_rows: Tensor, ids: Tensor, log_q: Tensor, temperature: float, weights: Tensor | None,
    scale: Tensor | None, out: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """One chunk's weighted coarsened KL summed over its rows and, with `scale`, its gradient.

    The value is the module docstring's sum. The gradient with respect to the scaled logits
    ``s = z / T`` has a closed form (p = softmax(s), Q = Σ_K q, c = q_rest where the rest term is
    active, else 0)::

        ∂/∂s_i = p_i·(Q + c) − q_i·[i ∈ K] − c·p_i·[i ∉ K] / p_rest

    so it is computed here, in one pass, instead of by autograd through a checkpointed recompute;
    `scale` (``T·w / divisor``, 0-dim or ``[rows, 1]``) turns it into the gradient of the term.

    Why it is written this way: this chunk is most of what a cached step costs beyond a student-alone
    step, so it makes as few passes over the ``[rows, V]`` chunk as the formula allows (one copy, a max,
    one exp in place, one sum, one scaling pass for the gradient). The exponentials ``e = exp(s − max s)``
    are computed once; the top k are read out of them and zeroed, so the same buffer's sum is the rest's
    mass (summed directly: no ``1 − Σ_K p`` cancellation) and the same buffer, scaled per row, is the
    rest's gradient. Only k entries per row are then written for the top k. With `out` (the chunk's rows
    of the fp32 gradient buffer) that buffer is `out` itself, so nothing is copied afterwards.
    """
    rows = student_rows.float()  # a view for fp32 logits: nothing below writes into it
    peak = rows.amax(dim=-1, keepdim=True).div_(temperature)
    exps = torch.addcmul(-peak, rows, _ONE.to(rows.device), value=1.0 / temperature, out=out).exp_()  # s − max s
    top = rows.gather(-1, ids).div_(temperature).sub_(peak)  # log e_K
    top_exps = top.exp()
    has_rest = ids.size(-1) < exps.size(-1)  # less than the whole vocabulary: the rest outcome
    if has_rest:
        exps.scatter_(-1, ids, 0.0)
        rest_sum = exps.sum(dim=-1)
        total_sum = rest_sum + top_exps.sum(dim=-1)
    else:
        total_sum = exps.sum(dim=-1)
    log_total = total_sum.log().unsqueeze(-1)
    log_p = top.sub_(log_total)
    q = log_q.exp()
    kl = (q * (log_q - log_p)).sum(dim=-1)
    rest_weight = None
    if has_rest:
        q_rest = (1.0 - q.sum(dim=-1)).clamp(min=0.0)
        raw_log_p_rest = rest_sum.log() - log_total.squeeze(-1)
        log_p_rest = raw_log_p_rest.clamp(min=MIN_LOG_REST)
        log_q_rest = q_rest.clamp(min=torch.finfo(torch.float32).tiny).log()
        kl = kl + torch.where(q_rest > 0, q_rest * (log_q_rest - log_p_rest), 0.0)
        active = (q_rest > 0) & (raw_log_p_rest > MIN_LOG_REST)  # a clamped log p_rest has no gradient
        rest_weight = torch.where(active, q_rest, 0.0)
    total = weighted_sum(kl, weights)
    if scale is None:
        return total, None
    if rest_weight is None:  # every token is in K: the buffer becomes scale·p·Q, then minus scale·q at K
        grad = exps.mul_((q.sum(dim=-1) / total_sum).unsqueeze(-1) * scale)
        return total, grad.scatter_add_(-1, ids, q.mul_(-scale)).to(student_rows.dtype)
    coefficient = q.sum(dim=-1) + rest_weight
    inside = (log_p.exp_() * coefficient.unsqueeze(-1) - q).mul_(scale)
    # clamped (inactive) rows divide 0 by > 0
    outside = (coefficient - rest_weight / log_p_rest.exp()) / total_sum
    grad = exps.mul_(outside.unsqueeze(-1) * scale).scatter_(-1, ids, inside)
    return total, grad.to(student_rows.dtype)


class _SparseKL(torch.autograd.Function):
    """Forward computes the value and (if needed) ``dL/dstudent``; backward only scales it by the upstream gradient."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, rows: Tensor, ids: Tensor, log_q: Tensor, weights: Tensor | None, need_grad: bool,
        temperature: float, divisor: Tensor, chunk_rows: int,
    ) -> Tensor:
        total, grad = chunked_value_and_gradient(
            rows, weights, need_grad, temperature, divisor, chunk_rows,
            lambda part, w, scale, out: sparse_kl_chunk(rows[part], ids[part], log_q[part], temperature, w, scale,
                                                        out),
        )
        ctx.save_for_backward(grad)
        return total * (temperature**2 / divisor)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        return (scaled_gradient(ctx, grad_output), *([None] * 7))


def sparse_kl_distillation_loss(
    student_logits: Tensor,
    teacher_ids: Tensor,
    teacher_log_probs: Tensor,
    labels: Tensor,
    *,
    temperature: float = 2.0,
    normalization: Normalization = "token",
    chunk_rows: int | None = None,
) -> Tensor:
    """``T² · KL(q_top-k ‖ p_student)``: logits ``[B, L, V]``, cached ids/log-probs ``[B, L, k]``, labels ``[B, L]``.

    ``normalization`` means what it means for the dense term: "token" averages
    over the scored next-token positions, "reference" sums over all ``B·L``
    positions and divides by B (the published ``batchmean``).
    """
    check_choice("normalization", normalization, NORMALIZATIONS)
    check_temperature(temperature)
    if teacher_ids.shape != teacher_log_probs.shape or teacher_ids.shape[:2] != student_logits.shape[:2]:
        raise ValueError(
            f"cached targets {tuple(teacher_ids.shape)} / {tuple(teacher_log_probs.shape)} do not match "
            f"student logits {tuple(student_logits.shape)}: expected [batch, seq, k] for [batch, seq, vocab]"
        )
    rows = student_logits.reshape(-1, student_logits.size(-1))
    # Widened here, on the device: the cache travels as uint16/int32 ids and float16 log-probs.
    ids, log_q = teacher_ids.reshape(rows.size(0), -1).long(), teacher_log_probs.reshape(rows.size(0), -1).float()
    weights: Tensor | None
    if normalization == "reference":
        weights, divisor = None, student_logits.size(0)
    else:
        scored = scored_positions(labels)
        weights, divisor = scored.weights, scored.count
    step = chunk_rows or default_chunk_rows(rows)
    return _SparseKL.apply(rows, ids, log_q, weights, needs_gradient(rows), float(temperature),
                           floored_divisor(divisor, rows), step)
