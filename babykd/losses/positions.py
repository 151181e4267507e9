"""Which positions a loss term scores.

Every term must look at the same positions, or the logged terms stop being
comparable (a KL averaged over more positions than the CE is a different
number).  Logit terms use the next-token alignment of a causal LM: position t
of the *unshifted* logits predicts ``labels[t + 1]``, and a position is scored
when that target is not ``IGNORE_INDEX`` (-100, what the HF collators put at
padding).  Hidden-state terms compare the states at the same positions, so
they use a plain ``[B, T]`` position mask (the attention mask) instead.

Convention shared by all terms: a term with no scored position is 0, not NaN,
so one fully padded micro-batch cannot poison a gradient-accumulation step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

#: Label value that marks a position without a target (HF convention).
IGNORE_INDEX = -100


@dataclass(frozen=True)
class ScoredPositions:
    """The scored next-token positions of a batch, as weights over all of its ``B·T`` positions.

    Entry ``b·T + t`` of `weights` (fp32, ``[B·T]``) is 1 when logits position t
    of row b has a target ``labels[b, t+1]`` that is not ``IGNORE_INDEX``, else 0
    (the last position of every row has none); `targets` ``[B·T]`` holds those
    targets (0 where the weight is 0) and `count`, a 0-dim fp32 tensor, their
    number floored at 1 (a term with nothing scored is then 0, not NaN).

    Why weights and no boolean gather of the scored rows: a gather's size depends
    on the data, so taking it reads the mask on the host, which on a GPU stalls the
    host until the device has caught up, in every step. Scoring all rows with
    weights costs one row in T more (the last, weight 0) and reads nothing.
    """

    weights: Tensor
    targets: Tensor
    count: Tensor

    def rows(self, per_position: Tensor) -> Tensor:
        """The ``[B·T, ...]`` rows of an unshifted ``[B, T, ...]`` tensor, matching `weights` (a view if contiguous)."""
        if per_position.dim() < 2 or per_position.size(0) * per_position.size(1) != self.weights.numel():
            raise ValueError(
                f"tensor of shape {tuple(per_position.shape)} does not match labels of "
                f"{self.weights.numel()} positions: batch and sequence dimensions must agree"
            )
        return per_position.reshape(-1, *per_position.shape[2:])


def scored_positions(labels: Tensor) -> ScoredPositions:
    """Shift `labels` ``[B, T]`` for next-token prediction and weight out the ignored targets."""
    if labels.dim() != 2:
        raise ValueError(f"labels must be [batch, seq], got shape {tuple(labels.shape)}")
    if labels.size(1) < 2:
        raise ValueError(f"labels need at least 2 positions to score a next token, got {labels.size(1)}")
    shifted = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX).reshape(-1)
    scored = shifted != IGNORE_INDEX
    weights = scored.float()
    return ScoredPositions(weights=weights, targets=shifted.masked_fill(~scored, 0), count=weights.sum().clamp_min(1))


def position_rows(per_position: Tensor, mask: Tensor | None) -> Tensor:
    """Rows ``[N, D]`` of a ``[B, T, D]`` tensor where `mask` ``[B, T]`` is non-zero (all when None).

    With a mask this is a boolean gather, a host-device sync: only batches that carry a
    mask (padding) pay it; the training batches of fixed chunks carry none.
    """
    if per_position.dim() != 3:
        raise ValueError(f"expected a [batch, seq, width] tensor, got shape {tuple(per_position.shape)}")
    if mask is None:
        return per_position.reshape(-1, per_position.size(-1))
    if tuple(mask.shape) != tuple(per_position.shape[:2]):
        raise ValueError(
            f"position mask of shape {tuple(mask.shape)} does not match hidden states of shape "
            f"{tuple(per_position.shape)}"
        )
    return per_position[mask.bool()]


def safe_mean(total: Tensor, count: int | Tensor) -> Tensor:
    """`total / count`, or 0 (still attached to the graph) when nothing was scored (a tensor count: no sync)."""
    return total / (count.clamp_min(1) if isinstance(count, Tensor) else max(count, 1))


def weighted_sum(per_row: Tensor, weights: Tensor | None) -> Tensor:
    """``Σ w_row · value_row`` (all weights 1 when None): unscored rows drop out without a data-dependent gather."""
    return per_row.sum() if weights is None else per_row.mul(weights).sum()
