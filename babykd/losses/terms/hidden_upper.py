"""The hidden-state MSE on the upper half of the student's layers only.

Why another layer choice: the uniform map also asks the student's embeddings and first blocks to
match the teacher's, whose early layers need not compute anything the small student can use; the
upper layers carry the representation the next-token head reads. Same pairs as `hidden` (the
configured ``layer_maps`` or the uniform map), keeping those whose student index is at least half
its depth, with their own projections.
"""

from __future__ import annotations

from torch import Tensor, nn

from babykd.losses.hidden import hidden_state_loss
from babykd.losses.terms.base import STUDENT_HIDDEN, TEACHER_HIDDEN, LossTerm, ModuleContext, StepTensors
from babykd.losses.terms.hidden import projections_for, resolved_layer_maps


def upper_half(layer_map: dict[int, int], student_layers: int) -> dict[int, int]:
    """The pairs of `layer_map` whose student hidden_states index is >= half the student's depth."""
    return {t: s for t, s in layer_map.items() if 2 * s >= student_layers}


def build(context: ModuleContext) -> nn.Module:
    maps = [upper_half(layer_map, context.student_layers) for layer_map in resolved_layer_maps(context)]
    return projections_for(context, maps)


def compute(step: StepTensors, module: nn.Module | None) -> Tensor:
    assert step.student_hidden is not None and step.teacher_hidden is not None and module is not None
    return hidden_state_loss(step.student_hidden, step.teacher_hidden, module, step.attention_mask)


TERM = LossTerm(
    name="hidden_upper", compute=compute, needs=frozenset({STUDENT_HIDDEN, TEACHER_HIDDEN}), order=11,
    build_module=build, module_key="upper_projections",
)
