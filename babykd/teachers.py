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
from babykd.errors import TeacherMismatchError
from babykd.losses.terms import ModuleContext, weighted_terms
from babykd.models import max_positions, model_layers_and_width

logger = logging.getLogger(__name__)


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
    """The trainable modules of the weighted terms (projections, aux heads), in one module for the optimizer."""
    student_layers, student_width = model_layers_and_width(student.config)
    shapes = [model_layers_and_width(t.config) for t in teachers]
    context = ModuleContext(
        distillation=cfg, student_layers=student_layers, student_width=student_width,
        vocab_size=student.config.vocab_size, teacher_layers=tuple(layers for layers, _ in shapes),
        teacher_widths=tuple(width for _, width in shapes), teacher_names=tuple(str(name) for name in cfg.teachers),
    )
    built = {term.module_key: term.build_module(context) for term in weighted_terms(cfg.weights)
             if term.build_module is not None and term.module_key is not None}
    return losses.DistillationModules(built)
