"""InfoNCE between the student's and each teacher's projected last hidden states."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from babykd.errors import ConfigError
from babykd.losses.hidden import contrastive_loss
from babykd.losses.layer_maps import last_layer_maps
from babykd.losses.terms.hidden import projections_for
from babykd.losses.terms.base import STUDENT_HIDDEN, TEACHER_HIDDEN, LossTerm, ModuleContext, StepTensors, option


def validate(cfg: Any, where: str) -> None:
    if cfg.contrastive_tau <= 0:
        raise ConfigError(f"{where}: distillation.contrastive_tau must be positive, got {cfg.contrastive_tau}")
    if cfg.contrastive_max_positions < 1:
        raise ConfigError(f"{where}: distillation.contrastive_max_positions must be >= 1, "
                          f"got {cfg.contrastive_max_positions}")


def build(context: ModuleContext) -> nn.Module:
    return projections_for(context, last_layer_maps(list(context.teacher_layers), context.student_layers))


def compute(step: StepTensors, module: nn.Module | None) -> Tensor:
    assert step.student_hidden is not None and step.teacher_hidden is not None and module is not None
    cfg = step.distillation
    return contrastive_loss(
        step.student_hidden[-1], [states[-1] for states in step.teacher_hidden], module, step.attention_mask,
        tau=cfg.contrastive_tau, max_positions=cfg.contrastive_max_positions,
    )


TERM = LossTerm(
    name="contrastive", compute=compute, needs=frozenset({STUDENT_HIDDEN, TEACHER_HIDDEN}), order=3,
    options=(
        option("contrastive_tau", float, 2.0, "temperature of the similarities"),
        option("contrastive_max_positions", int, 512, "positions kept per batch (memory: a square matrix)"),
    ),
    validate=validate, build_module=build, module_key="contrastive_projections",
)
