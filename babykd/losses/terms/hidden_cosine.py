"""A scale-free hidden-state term: ``1 - cos`` between projected teacher and mapped student states.

Why: the published MSE grows with the states' norms, which in pre-norm transformers grow with
depth and differ between teacher and student, so its gradient is dominated by the deepest pairs
and its useful weight depends on the models. The cosine compares directions only: bounded in
[0, 2] per position, the same at every depth. Same layer pairs and projections as `hidden`.
"""

from __future__ import annotations

from torch import Tensor, nn

from babykd.losses.hidden import hidden_state_loss
from babykd.losses.terms.base import STUDENT_HIDDEN, TEACHER_HIDDEN, LossTerm, StepTensors
from babykd.losses.terms.hidden import build


def compute(step: StepTensors, module: nn.Module | None) -> Tensor:
    assert step.student_hidden is not None and step.teacher_hidden is not None and module is not None
    return hidden_state_loss(step.student_hidden, step.teacher_hidden, module, step.attention_mask, distance="cosine")


TERM = LossTerm(
    name="hidden_cosine", compute=compute, needs=frozenset({STUDENT_HIDDEN, TEACHER_HIDDEN}), order=10,
    build_module=build, module_key="cosine_projections",
)
