"""Load frozen teachers and build the trainable distillation extras, checking compatibility first.

Every mismatch that would silently ruin a distillation run, or stop it at its
first step (different vocabularies, shifted special tokens, logits of another
width, a layer map pointing past the last layer, sequences longer than a model's
positions), is an error here, before any training step is spent and before the
run folder is touched; the message says what differs, in one line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from babykd import losses
from babykd.config import DistillationConfig
from babykd.errors import UserError
from babykd.models import max_positions, model_layers_and_width

logger = logging.getLogger(__name__)


class TeacherMismatchError(UserError, ValueError):
    """A teacher cannot be distilled into this student as configured."""


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int | None]:
    return {"pad": tokenizer.pad_token_id, "bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id}


def check_teacher_tokenizer(path: Path, teacher_tok: PreTrainedTokenizerBase, student_tok: PreTrainedTokenizerBase) -> None:
    """Same vocabulary (token -> id) and the same special-token ids, or a clear error."""
    if teacher_tok.get_vocab() != student_tok.get_vocab():
        raise TeacherMismatchError(
            f"teacher {path}: its tokenizer differs from the student's "
            f"({vocabulary_difference(teacher_tok, student_tok)}); distillation needs the same tokenizer"
        )
    if _special_ids(teacher_tok) != _special_ids(student_tok):
        raise TeacherMismatchError(
            f"teacher {path}: special-token ids {_special_ids(teacher_tok)} differ from the student's "
            f"{_special_ids(student_tok)}"
        )


def vocabulary_difference(teacher_tok: PreTrainedTokenizerBase, student_tok: PreTrainedTokenizerBase,
                          shown: int = 3) -> str:
    """What differs between two vocabularies: tokens with other ids, tokens only one side has (a few of each)."""
    teacher, student = teacher_tok.get_vocab(), student_tok.get_vocab()
    moved = sorted(token for token in teacher.keys() & student.keys() if teacher[token] != student[token])
    parts = []
    if moved:
        examples = ", ".join(f"{t!r}: teacher {teacher[t]}, student {student[t]}" for t in moved[:shown])
        parts.append(f"{len(moved)} tokens have other ids, e.g. {examples}")
    for side, tokens in (("teacher", teacher.keys() - student.keys()), ("student", student.keys() - teacher.keys())):
        if tokens:
            examples = ", ".join(map(repr, sorted(tokens)[:shown]))
            parts.append(f"{len(tokens)} tokens only in the {side}'s, e.g. {examples}")
    return "; ".join(parts)


def load_teachers(
    cfg: DistillationConfig, student_tokenizer: PreTrainedTokenizerBase, seq_length: int
) -> list[PreTrainedModel]:
    """Load every teacher checkpoint (ours or any causal LM) after checking it fits the student."""
    teachers = []
    for name in cfg.teachers:
        path = teacher_dir(name)
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
        try:
            losses.validate_layer_map(layer_map, teacher_layers, student_layers, teacher_name=str(path))
        except ValueError as error:
            raise TeacherMismatchError(f"distillation.layer_maps[{index}]: {error}") from error
        maps.append(layer_map)
    return maps


def teacher_dir(name: str) -> Path:
    """A teacher checkpoint's folder, or the error that names the missing one."""
    path = Path(name)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"teacher checkpoint not found: {path} (expected a directory with config.json)")
    return path


def check_logit_widths(cfg: DistillationConfig, vocab_size: int) -> None:
    """Every teacher's logits as wide as the student's (`model.vocab_size`), read from its config.

    One tokenizer but an embedding of more rows would only fail at the first distillation
    step, with online teachers or with their cached top-k targets alike; the config is read,
    not the weights, so both paths are checked before any teacher is loaded.
    """
    for name in cfg.teachers:
        width = AutoConfig.from_pretrained(teacher_dir(name)).vocab_size
        if width != vocab_size:
            raise TeacherMismatchError(
                f"teacher {name}: its logits cover {width} token ids, the student's {vocab_size} "
                "(model.vocab_size): distil into a student of the teacher's vocab_size"
            )


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
