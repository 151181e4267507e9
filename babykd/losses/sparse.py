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

The student's full-vocabulary normaliser is computed in row chunks under
activation checkpointing, so no fp32 ``[N, V]`` tensor is kept for the backward
pass (as in :mod:`babykd.losses.chunked`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from babykd.losses.chunked import default_chunk_rows
from babykd.losses.logit import NORMALIZATIONS, Normalization
from babykd.losses.positions import scored_positions, weighted_sum
from babykd.losses.teacher_targets import check_choice, check_temperature


#: Floor of log p_rest (about 1e-30): keeps the rest term finite when the student has ~no rest mass.
MIN_LOG_REST = -69.0


def top_k_targets(teacher_log_probs: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The `k` most likely ids per row of ``[..., V]`` log-probs and their log-probs (not renormalised)."""
    if not 1 <= k <= teacher_log_probs.size(-1):
        raise ValueError(f"k must be in [1, {teacher_log_probs.size(-1)}], got {k}")
    values, ids = teacher_log_probs.float().topk(k, dim=-1)
    return ids, values


def _rows_kl(student_rows: Tensor, ids: Tensor, log_q: Tensor, temperature: float, weights: Tensor | None) -> Tensor:
    """The coarsened KL of each row of one chunk, weighted by `weights` (None: 1), summed (see the module docstring)."""
    scaled = student_rows.float() / temperature
    normaliser = scaled.logsumexp(dim=-1, keepdim=True)
    log_p = scaled.gather(-1, ids) - normaliser
    q = log_q.exp()
    kl = (q * (log_q - log_p)).sum(dim=-1)
    if ids.size(-1) < scaled.size(-1):  # less than the whole vocabulary: the rest outcome
        q_rest = (1.0 - q.sum(dim=-1)).clamp(min=0.0)
        outside = scaled.scatter(-1, ids, torch.finfo(torch.float32).min)
        log_p_rest = (outside.logsumexp(dim=-1) - normaliser.squeeze(-1)).clamp(min=MIN_LOG_REST)
        log_q_rest = q_rest.clamp(min=torch.finfo(torch.float32).tiny).log()
        kl = kl + torch.where(q_rest > 0, q_rest * (log_q_rest - log_p_rest), 0.0)
    return weighted_sum(kl, weights)


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
    total = rows.new_zeros((), dtype=torch.float32)
    for start in range(0, rows.size(0), step):
        part = slice(start, start + step)
        w = None if weights is None else weights[part]
        if torch.is_grad_enabled() and rows.requires_grad:
            total = total + checkpoint(_rows_kl, rows[part], ids[part], log_q[part], temperature, w,
                                       use_reentrant=False)
        else:
            total = total + _rows_kl(rows[part], ids[part], log_q[part], temperature, w)
    return total * temperature**2 / divisor
