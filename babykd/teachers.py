"""Load frozen teachers and build the trainable distillation extras, checking compatibility first.

Every mismatch that would silently ruin a distillation run (different
vocabularies, shifted special tokens, a layer map pointing past the last layer,
sequences longer than a model's positions) is an error here, before any
training step is spent.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from babykd import losses
from babykd.config import DistillationConfig
from babykd.models import max_positions, model_layers_and_width

logger = logging.getLogger(__name__)


class TeacherMismatchError(ValueError):
    """A teacher cannot be distilled into this student as configured."""


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int | None]:
    return {"pad": tokenizer.pad_token_id, "bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id}


def check_teacher_tokenizer(path: Path, teacher_tok: PreTrainedTokenizerBase, student_tok: PreTrainedTokenizerBase) -> None:
    """Same vocabulary (token -> id) and the same special-token ids, or a clear error."""
    if teacher_tok.get_vocab() != student_tok.get_vocab():
        raise TeacherMismatchError(
            f"teacher {path}: its vocabulary ({len(teacher_tok)} tokens) differs from the student's "
            f"({len(student_tok)} tokens); distillation needs the same tokenizer"
        )
    if _special_ids(teacher_tok) != _special_ids(student_tok):
        raise TeacherMismatchError(
            f"teacher {path}: special-token ids {_special_ids(teacher_tok)} differ from the student's "
            f"{_special_ids(student_tok)}"
        )


def load_teachers(
    cfg: DistillationConfig, student_tokenizer: PreTrainedTokenizerBase, seq_length: int
) -> list[PreTrainedModel]:
    """Load every teacher checkpoint (ours or any causal LM) after checking it fits the student."""
    teachers = []
    for name in cfg.teachers:
        path = Path(name)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"teacher checkpoint not found: {path} (expected a directory with config.json)")
        check_teacher_tokenizer(path, AutoTokenizer.from_pretrained(path), student_tokenizer)
        teacher = AutoModelForCausalLM.from_pretrained(path)
        positions = max_positions(teacher.config)
        if positions is not None and seq_length > positions:
            raise TeacherMismatchError(
                f"teacher {path}: data.seq_length {seq_length} exceeds its {positions} positions"
            )
        logger.info("teacher %s: %s parameters", path.name, f"{teacher.num_parameters():,}")
        teachers.append(teacher)
    return teachers


def resolved_layer_maps(
    cfg: DistillationConfig, student: PreTrainedModel, teachers: Sequence[PreTrainedModel]
) -> list[dict[int, int]]:
    """The configured teacher->student layer maps (uniform when none), validated against the models."""
    student_layers, _ = model_layers_and_width(student.config)
    maps = []
    for index, (path, teacher) in enumerate(zip(cfg.teachers, teachers)):
        teacher_layers, _ = model_layers_and_width(teacher.config)
        layer_map = (
            cfg.layer_maps[index] if cfg.layer_maps is not None else losses.uniform_layer_map(teacher_layers, student_layers)
        )
        losses.validate_layer_map(layer_map, teacher_layers, student_layers, teacher_name=str(path))
        maps.append(layer_map)
    return maps


def build_distillation_modules(
    cfg: DistillationConfig, student: PreTrainedModel, teachers: Sequence[PreTrainedModel]
) -> losses.DistillationModules:
    """The trainable extras a method needs (projections, aux heads), in one module for the optimizer."""
    student_layers, student_width = model_layers_and_width(student.config)
    teacher_widths = [model_layers_and_width(t.config)[1] for t in teachers]
    projections = contrastive = aux = None
    if cfg.weights.hidden > 0:
        projections = losses.HiddenStateProjections(
            teacher_widths, student_width, resolved_layer_maps(cfg, student, teachers), teacher_names=cfg.teachers
        )
    if cfg.weights.contrastive > 0:
        last_maps = losses.last_layer_maps([model_layers_and_width(t.config)[0] for t in teachers], student_layers)
        contrastive = losses.HiddenStateProjections(teacher_widths, student_width, last_maps, teacher_names=cfg.teachers)
    if cfg.weights.aux > 0:
        assert cfg.aux_layers is not None  # enforced by DistillationConfig.validate
        bad = [layer for layer in cfg.aux_layers if not 1 <= layer < student_layers]
        if bad:
            raise TeacherMismatchError(
                f"distillation.aux_layers {bad} out of range: the student has hidden layers 1..{student_layers - 1} "
                "below its output layer"
            )
        aux = losses.AuxiliaryHeads(student_width, student.config.vocab_size, cfg.aux_layers)
    return losses.DistillationModules(projections=projections, contrastive_projections=contrastive, aux_heads=aux)
