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

from torch import Tensor

#: Label value that marks a position without a target (HF convention).
IGNORE_INDEX = -100


@dataclass(frozen=True)
class ScoredPositions:
    """The scored next-token positions of a batch.

    `mask` is ``[B, T-1]``: entry (b, t) is True when logits position t has the
    target ``labels[b, t+1]``; `targets` holds those targets, ``[N]``, in the
    row-major order in which :meth:`rows` returns the matching logits rows.
    """

    mask: Tensor
    targets: Tensor

    @property
    def count(self) -> int:
        """N, the number of scored positions."""
        return int(self.targets.numel())

    def rows(self, per_position: Tensor) -> Tensor:
        """The scored rows ``[N, ...]`` of an unshifted ``[B, T, ...]`` tensor."""
        expected = (self.mask.size(0), self.mask.size(1) + 1)
        if tuple(per_position.shape[:2]) != expected:
            raise ValueError(
                f"tensor of shape {tuple(per_position.shape)} does not match labels of shape "
                f"{expected}: batch and sequence dimensions must agree"
            )
        return per_position[:, :-1][self.mask]


def scored_positions(labels: Tensor) -> ScoredPositions:
    """Shift `labels` ``[B, T]`` for next-token prediction and mask the ignored targets."""
    if labels.dim() != 2:
        raise ValueError(f"labels must be [batch, seq], got shape {tuple(labels.shape)}")
    if labels.size(1) < 2:
        raise ValueError(f"labels need at least 2 positions to score a next token, got {labels.size(1)}")
    shifted = labels[:, 1:]
    mask = shifted != IGNORE_INDEX
    return ScoredPositions(mask=mask, targets=shifted[mask])


def position_rows(per_position: Tensor, mask: Tensor | None) -> Tensor:
    """Rows ``[N, D]`` of a ``[B, T, D]`` tensor where `mask` ``[B, T]`` is non-zero (all when None)."""
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


def safe_mean(total: Tensor, count: int) -> Tensor:
    """`total / count`, or 0 (still attached to the graph) when nothing was scored."""
    return total / max(count, 1)
