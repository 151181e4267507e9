"""Auxiliary classifiers: heads on inner student layers distilled from the teachers, adaptively weighted."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from babykd.errors import ConfigError, TeacherMismatchError
from babykd.losses.auxiliary import AuxiliaryHeads, auxiliary_classifier_loss
from babykd.losses.terms.base import STUDENT_HIDDEN, TEACHER_LOGITS, LossTerm, ModuleContext, StepTensors, option


def validate(cfg: Any, where: str) -> None:
    if cfg.weights.aux > 0 and not cfg.aux_layers:
        raise ConfigError(f"{where}: distillation.aux_layers must name student layers when weights.aux > 0")


def build(context: ModuleContext) -> nn.Module:
    layers = context.distillation.aux_layers
    bad = [layer for layer in layers if not 1 <= layer < context.student_layers]
    if bad:
        raise TeacherMismatchError(
            f"distillation.aux_layers {bad} out of range: the student has hidden layers "
            f"1..{context.student_layers - 1} below its output layer"
        )
    return AuxiliaryHeads(context.student_width, context.vocab_size, layers)


def compute(step: StepTensors, module: nn.Module | None) -> Tensor:
    assert step.student_hidden is not None and step.teacher_logits is not None and module is not None
    cfg = step.distillation
    return auxiliary_classifier_loss(step.student_hidden, module, step.teacher_logits, step.labels,
                                     cfg.temperature, combine=cfg.combine)


TERM = LossTerm(
    name="aux", compute=compute, needs=frozenset({STUDENT_HIDDEN, TEACHER_LOGITS}), order=4,
    options=(option("aux_layers", list[int] | None, None, "student layers that get an auxiliary head"),),
    validate=validate, build_module=build, module_key="aux_heads",
)
