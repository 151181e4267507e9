"""The student's next-token cross-entropy: the pretraining loss, and logged in every run."""

from __future__ import annotations

from torch import Tensor, nn

from babykd.losses.logit import cross_entropy_loss
from babykd.losses.terms.base import LossTerm, StepTensors


def compute(step: StepTensors, module: nn.Module | None) -> Tensor:
    return cross_entropy_loss(step.student_logits, step.labels)


TERM = LossTerm(name="ce", compute=compute, order=0, always_logged=True, default_weight=1.0)
