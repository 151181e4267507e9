"""What runs in which precision under bf16 mixed precision, checked on the CPU (bf16 autocast exists there too).

Decided (README, "Precision"): the student's matmuls run in bf16 autocast and accelerate
upcasts its outputs, so the loss terms read fp32 student logits and hidden states and
store the logits' gradient in fp32 (at BabyLlama's 32×128×16000 that is 2×262 MB and a
fraction of a millisecond of bandwidth per step on an H100/H200: kept, rather than calling
the model around accelerate's and DDP's wrappers); the teachers run in bf16 weights and
give bf16 logits; every reduction is fp32. An evaluation during training runs in the dtype
it asks for, outside the training's autocast.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from babykd.losses.terms import ce as ce_term, hidden as hidden_term, kl as kl_term
from babykd.trainer import KDTrainer, own_precision
from test_distillation import recipe_config

PALENKA = Path("config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml")


@pytest.fixture(scope="module")
def bf16_step(tiny_config, tiny_teachers) -> tuple[dict[str, Any], KDTrainer]:
    """One bf16 training step of DSKD on the CPU, with the dtypes each loss term was given and returned."""
    from babykd.data.collator import FixedChunkCollator
    from babykd.models import build_model
    from babykd.teachers import build_distillation_modules, load_teachers
    from babykd.training import load_data, training_arguments

    config = recipe_config(tiny_config, PALENKA, "bf16-cpu", tiny_teachers, "training.max_steps=1")
    data = load_data(config)
    teachers = load_teachers(config.distillation, data.tokenizer, config.data.seq_length)
    student = build_model(config.model)
    # bf16 is refused on a CPU by the config (not worth it there), but accelerate runs it
    args = dataclasses.replace(training_arguments(config, config.output.run_dir), bf16=True, eval_strategy="no",
                               save_strategy="no")
    seen: dict[str, Any] = {}
    mp = pytest.MonkeyPatch()
    for module, name in ((ce_term, "cross_entropy_loss"), (kl_term, "kl_distillation_loss"),
                         (hidden_term, "hidden_state_loss")):
        original = getattr(module, name)

        def spy(*a: Any, _name: str = name, _original: Any = original, **k: Any) -> torch.Tensor:
            value = _original(*a, **k)
            seen[_name] = (a[0], a[1], value.dtype)
            return value

        mp.setattr(module, name, spy)
    try:
        trainer = KDTrainer(
            model=student, args=args, train_dataset=data.train_dataset, data_collator=FixedChunkCollator(),
            teachers=teachers, distillation=config.distillation,
            extra_modules=build_distillation_modules(config.distillation, student, teachers),
        )
        trainer.train()
    finally:
        mp.undo()
    return seen, trainer


def test_loss_terms_read_fp32_student_outputs_and_bf16_teacher_logits(bf16_step) -> None:
    seen, trainer = bf16_step
    assert trainer.accelerator.mixed_precision == "bf16"
    student_logits, teacher_logits, kl_dtype = seen["kl_distillation_loss"]
    assert student_logits.dtype == torch.float32  # accelerate's upcast of the outputs (kept, see the docstring)
    assert [t.dtype for t in teacher_logits] == [torch.bfloat16] * len(teacher_logits)
    student_hidden, teacher_hidden, hidden_dtype = seen["hidden_state_loss"]
    assert {h.dtype for h in student_hidden} == {torch.float32}
    assert {h.dtype for states in teacher_hidden for h in states} == {torch.bfloat16}
    assert kl_dtype == hidden_dtype == seen["cross_entropy_loss"][2] == torch.float32  # fp32 reductions


def test_an_evaluation_during_training_runs_outside_the_bf16_autocast(bf16_step) -> None:
    _, trainer = bf16_step
    model = trainer.model
    ids = torch.randint(3, model.config.vocab_size, (2, 16))
    with torch.no_grad():
        wrapped = model(input_ids=ids).logits  # bf16 matmuls, upcast
        with own_precision(model) as plain:
            exact = plain(input_ids=ids).logits
        after = model(input_ids=ids).logits
    reference = type(model)(model.config)
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        fp32 = reference(input_ids=ids).logits
    assert torch.equal(exact, fp32) and not torch.equal(wrapped, fp32)
    assert torch.equal(after, wrapped)  # the wrapper is back for the rest of training
