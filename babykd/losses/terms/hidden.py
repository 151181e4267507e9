"""DSKD's hidden-state term: MSE between mapped student states and projected teacher states.

The projections (one linear map per layer pair, from the narrower side to the wider) are this
term's trainable module. ``distillation.layer_maps`` has one teacher-layer -> student-layer map per
teacher (``hidden_states`` indices, 0 = embeddings); null derives the uniform map.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from babykd.errors import ConfigError, TeacherMismatchError
from babykd.losses.hidden import HiddenStateProjections, hidden_state_loss
from babykd.losses.layer_maps import uniform_layer_map, validate_layer_map
from babykd.losses.terms.base import STUDENT_HIDDEN, TEACHER_HIDDEN, LossTerm, ModuleContext, StepTensors, option


def validate(cfg: Any, where: str) -> None:
    if cfg.layer_maps is not None and len(cfg.layer_maps) != len(cfg.teachers):
        raise ConfigError(
            f"{where}: distillation.layer_maps has {len(cfg.layer_maps)} maps "
            f"for {len(cfg.teachers)} teachers (one map per teacher, or null)"
        )


def resolved_layer_maps(context: ModuleContext) -> list[dict[int, int]]:
    """The configured teacher->student layer maps (uniform when none), checked against the models."""
    configured = context.distillation.layer_maps
    maps = []
    for index, (name, teacher_layers) in enumerate(zip(context.teacher_names, context.teacher_layers)):
        layer_map = configured[index] if configured is not None else uniform_layer_map(teacher_layers,
                                                                                       context.student_layers)
        try:
            validate_layer_map(layer_map, teacher_layers, context.student_layers, teacher_name=name)
        except ValueError as error:
            raise TeacherMismatchError(f"distillation.layer_maps[{index}]: {error}") from error
        maps.append(layer_map)
    return maps


def projections_for(context: ModuleContext, maps: list[dict[int, int]]) -> HiddenStateProjections:
    """One projection per (teacher, layer pair) of `maps`, sized from the models."""
    return HiddenStateProjections(list(context.teacher_widths), context.student_width, maps,
                                  teacher_names=list(context.teacher_names))


def build(context: ModuleContext) -> nn.Module:
    return projections_for(context, resolved_layer_maps(context))


def compute(step: StepTensors, module: nn.Module | None) -> Tensor:
    assert step.student_hidden is not None and step.teacher_hidden is not None and module is not None
    return hidden_state_loss(step.student_hidden, step.teacher_hidden, module, step.attention_mask)


TERM = LossTerm(
    name="hidden", compute=compute, needs=frozenset({STUDENT_HIDDEN, TEACHER_HIDDEN}), order=2,
    options=(option("layer_maps", list[dict[int, int]] | None, None,
                    "one teacher->student hidden_states map per teacher; null: uniform"),),
    validate=validate, build_module=build, module_key="projections",
)
