"""DSKD with auxiliary classifiers: LM heads on shallow student layers.

Each head reads one student hidden_states entry and is trained against the
teachers' soft targets, pushing task-relevant information into the shallow
layers (deep supervision).  Heads that are still far off (high loss) get less
weight, so early in training the noisy shallow heads do not dominate.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from babykd.losses.logit import Combine, combined_teacher_log_probs, soft_target_kl_sum
from babykd.losses.positions import safe_mean, scored_positions


class AuxiliaryHeads(nn.Module):
    """One LM head (optional LayerNorm, then a bias-free ``Linear`` to the vocabulary) per student layer.

    `layers` are student hidden_states indices.  The norm defaults on because
    intermediate states of pre-norm transformers are un-normalised, unlike the
    input of the model's own LM head.
    """

    def __init__(self, student_width: int, vocab_size: int, layers: Sequence[int], *, norm: bool = True) -> None:
        super().__init__()
        if not layers:
            raise ValueError("auxiliary heads need at least one student layer")
        if len(set(layers)) != len(layers) or any(layer < 0 for layer in layers):
            raise ValueError(f"auxiliary head layers must be distinct non-negative indices, got {list(layers)}")
        self.layers = tuple(int(layer) for layer in layers)
        self.vocab_size = int(vocab_size)
        self.heads = nn.ModuleDict(
            {
                str(layer): nn.Sequential(
                    *([nn.LayerNorm(student_width)] if norm else []),
                    nn.Linear(student_width, vocab_size, bias=False),
                )
                for layer in self.layers
            }
        )

    def forward(self, layer: int, hidden: Tensor) -> Tensor:
        """Logits ``[..., vocab]`` of the head on student hidden_states index `layer`."""
        return self.heads[str(layer)](hidden)


def auxiliary_classifier_loss(
    student_hidden: Sequence[Tensor],
    aux_heads: AuxiliaryHeads,
    teacher_logits: Sequence[Tensor],
    labels: Tensor,
    temperature: float = 2.0,
    *,
    combine: Combine = "logits",
    eps: float = 1e-8,
) -> Tensor:
    """Adaptively weighted KD loss of the auxiliary heads.

    Head i's loss ``L_i`` is the token-normalised ``T² · KL(p_teacher ‖ p_head)``
    over the scored next-token positions (as in ``kl_distillation_loss`` with
    ``normalization="token"``), against the teachers combined per `combine`.
    The heads are weighted by ``w_i = (1 / L_i) / Σ_j (1 / L_j)`` with the L
    detached (and floored at `eps`), so the term is ``Σ_i w_i · L_i``: its
    value is ``n / Σ_j (1/L_j)``, the harmonic mean of the n head losses, and
    each head's gradient is scaled by its weight, so a head whose loss is
    higher weighs less.
    """
    scored = scored_positions(labels)
    for layer in aux_heads.layers:
        if layer >= len(student_hidden):
            raise ValueError(
                f"auxiliary head on student layer {layer}, but the student has only "
                f"{len(student_hidden)} hidden_states (indices 0..{len(student_hidden) - 1})"
            )
    for index, logits in enumerate(teacher_logits):
        if logits.size(-1) != aux_heads.vocab_size:
            raise ValueError(
                f"teacher {index} has vocabulary size {logits.size(-1)}, the auxiliary heads {aux_heads.vocab_size}"
            )
    teacher_log_probs = combined_teacher_log_probs((scored.rows(t) for t in teacher_logits), temperature, combine)
    head_losses = []
    for layer in aux_heads.layers:
        head_logits = aux_heads(layer, scored.rows(student_hidden[layer]))
        head_kl = soft_target_kl_sum(head_logits, teacher_log_probs, temperature, weights=scored.weights)
        head_losses.append(safe_mean(head_kl, scored.count))
    losses = torch.stack(head_losses)
    inverse = 1.0 / losses.detach().clamp_min(eps)
    return (inverse / inverse.sum() * losses).sum()
