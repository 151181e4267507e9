"""Distillation end to end on CPU: every recipe runs on tiny models, the hidden-state term is
really trained (the published code's defect is absent), and bad teacher setups fail early."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, TrainerCallback

from babykd import REPO_ROOT
from babykd.losses import auxiliary_classifier_loss
from babykd.teachers import TeacherMismatchError
from babykd.trainer import EXTRA_MODULES_FILE, KDTrainer
from babykd.run.checkpoints import last_complete_checkpoint
from babykd.training import run_training
from tests.test_training import SignalAtStep

RECIPES = sorted(p.relative_to(REPO_ROOT) for p in (REPO_ROOT / "config/runs/distill").glob("*.yaml"))
STUDENT = f"model={REPO_ROOT / 'config/models/tiny-llama-student.yaml'}"


def teacher_overrides(teachers: list[Path], n: int | None = None) -> list[str]:
    chosen = teachers[: n or len(teachers)]
    return [f"distillation.teachers=[{','.join(str(t) for t in chosen)}]", "distillation.layer_maps=null"]


def recipe_config(tiny_config, recipe: Path, name: str, teachers: list[Path], *extra: str):
    from babykd.config import load_run_config

    n_teachers = len(load_run_config(REPO_ROOT / recipe).distillation.teachers)
    overrides = [STUDENT, *teacher_overrides(teachers, n_teachers), "training.lr=3e-3"]
    if "aux" in recipe.stem.lower():
        overrides.append("distillation.aux_layers=[1,2]")
    return tiny_config(recipe, name, *overrides, *extra)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_runs_on_tiny_models(tiny_config, tiny_teachers, recipe: Path) -> None:
    config = recipe_config(tiny_config, recipe, f"student-{recipe.stem}", tiny_teachers, "training.max_steps=12")
    result = run_training(config)
    logged = [entry for entry in result.history if "loss" in entry]
    active = [name for name, weight in vars(config.distillation.weights).items() if weight > 0]
    for name in active:
        assert all(f"loss_{name}" in entry for entry in logged), f"term {name} not logged"
    print(recipe.stem, {k: v for k, v in logged[-1].items() if k.startswith("loss")})
    assert logged[-1]["loss_ce"] < logged[0]["loss_ce"]
    student = AutoModelForCausalLM.from_pretrained(result.run_dir)
    assert type(student).__name__ in {"LlamaForCausalLM", "GPT2LMHeadModel"}
    assert not any("projection" in key for key in load_file(str(result.run_dir / "model.safetensors")))


def test_hidden_state_term_trains_projections_and_changes_student_gradient(tiny_config, tiny_teachers) -> None:
    from babykd.teachers import build_distillation_modules, load_teachers
    from babykd.training import load_data, training_arguments
    from babykd.models import build_model
    from babykd.trainer import KDTrainer

    recipe = Path("config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml")
    grads = {}
    for weight in (0.0, 0.5):
        config = recipe_config(tiny_config, recipe, f"grad-{weight}", tiny_teachers, f"distillation.weights.hidden={weight}")
        data = load_data(config)
        teachers = load_teachers(config.distillation, data.tokenizer, config.data.seq_length)
        torch.manual_seed(0)
        student = build_model(config.model)
        config.distillation.weights.hidden = 0.5  # same modules in both runs; only the loss weight differs
        extra = build_distillation_modules(config.distillation, student, teachers)
        config.distillation.weights.hidden = weight
        trainer = KDTrainer(
            model=student, args=training_arguments(config, config.output.run_dir),
            train_dataset=data.train_dataset, eval_dataset=data.eval_dataset, teachers=teachers,
            distillation=config.distillation, extra_modules=extra,
        )
        batch = next(iter(trainer.get_train_dataloader()))
        before = [p.detach().clone() for p in extra.parameters()]
        trainer.create_optimizer_and_scheduler(num_training_steps=1)
        loss = trainer.compute_loss(student, batch)
        loss.backward()
        grads[weight] = torch.cat([p.grad.flatten() for p in student.parameters() if p.grad is not None])
        if weight > 0:
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in extra.parameters())
            in_optimizer = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
            assert all(id(p) in in_optimizer for p in extra.parameters()), "projections not given to the optimizer"
            for group in trainer.optimizer.param_groups:
                group["lr"] = 1e-3  # the schedule starts at 0 during warm-up
            trainer.optimizer.step()
            assert any(not torch.equal(b, p) for b, p in zip(before, extra.parameters())), "projections did not move"
    assert not torch.allclose(grads[0.0], grads[0.5]), "hidden-state term has no gradient on the student"


def test_resume_restores_projections(tiny_config, tiny_teachers) -> None:
    recipe = Path("config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml")
    config = recipe_config(tiny_config, recipe, "resume-dskd", tiny_teachers, "training.max_steps=6", "training.save_steps=3")
    run_training(config)
    checkpoint = Path(last_complete_checkpoint(config.output.run_dir / "checkpoints"))
    saved = load_file(str(checkpoint / EXTRA_MODULES_FILE))
    assert saved and any("t0" in key for key in saved)

    trainer = build_trainer(config)
    trainer._load_from_checkpoint(str(checkpoint))
    for key, value in trainer.extra_modules.state_dict().items():
        assert torch.equal(value.cpu(), saved[key]), key


def build_trainer(config) -> KDTrainer:
    """The trainer `run_training` would build for `config` (fresh student and extras), without training."""
    from babykd.models import build_model
    from babykd.teachers import build_distillation_modules, load_teachers
    from babykd.training import load_data, training_arguments

    data = load_data(config)
    teachers = load_teachers(config.distillation, data.tokenizer, config.data.seq_length)
    student = build_model(config.model)
    return KDTrainer(model=student, args=training_arguments(config, config.output.run_dir),
                     train_dataset=data.train_dataset, eval_dataset=data.eval_dataset, teachers=teachers,
                     distillation=config.distillation,
                     extra_modules=build_distillation_modules(config.distillation, student, teachers))


def test_teacher_problems_fail_before_training(tiny_config, tiny_teachers, tmp_path: Path) -> None:
    recipe = Path("config/runs/distill/BabyLlama1-58M-strict.yaml")
    missing = recipe_config(tiny_config, recipe, "bad-path", [tmp_path / "nope", tiny_teachers[1]])
    with pytest.raises(FileNotFoundError, match="teacher checkpoint not found: .*nope"):
        run_training(missing)

    palenka = Path("config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml")
    bad_map = recipe_config(tiny_config, palenka, "bad-map", tiny_teachers,
                            "distillation.layer_maps=[{0: 0, 9: 3}, {0: 0, 4: 3}]")
    with pytest.raises(TeacherMismatchError, match="teacher layer 9"):
        run_training(bad_map)

    too_long = recipe_config(tiny_config, recipe, "too-long", tiny_teachers, "data.seq_length=300",
                             "model.max_position_embeddings=512")
    with pytest.raises(TeacherMismatchError, match="seq_length 300 exceeds its 256 positions"):
        run_training(too_long)

    other_vocab = tmp_path / "other-vocab"
    AutoModelForCausalLM.from_pretrained(tiny_teachers[0]).save_pretrained(other_vocab)
    tokenizer_json = json.loads((tiny_teachers[0] / "tokenizer.json").read_text())
    vocab = tokenizer_json["model"]["vocab"]
    a, b = list(vocab)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    for file in ("tokenizer_config.json",):
        (other_vocab / file).write_text((tiny_teachers[0] / file).read_text())
    (other_vocab / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    mismatch = recipe_config(tiny_config, recipe, "vocab", [other_vocab, tiny_teachers[1]])
    ids = "teacher 30[01], student 30[01]"
    with pytest.raises(TeacherMismatchError, match=f"tokenizer differs .*2 tokens have other ids, e.g. .*{a!r}: {ids}"):
        run_training(mismatch)


# ----------------------------------------------------------------------------- the trainable extras' gradients

AUX = Path("config/runs/distill/AuxDSKD-Llama-58M-strict.yaml")
CONTRASTIVE = Path("config/runs/distill/ContrastiveLlama-58M-strict.yaml")
PALENKA = Path("config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml")
#: Every kind of extra module at once: hidden-state and contrastive projections and auxiliary heads.
ALL_EXTRAS = ("distillation.weights.hidden=0.5", "distillation.weights.contrastive=0.1")


class GradientAudit(TrainerCallback):
    """Record, per optimizer step, the global norm of what the optimizer applies and what is left after it."""

    def __init__(self) -> None:
        self.applied_norms: list[float] = []
        self.left_after_step: list[float] = []

    @staticmethod
    def _grads(optimizer) -> list[torch.Tensor]:  # noqa: ANN001 - HF passes the (accelerate-wrapped) optimizer
        return [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):  # noqa: ANN001
        self.applied_norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in self._grads(optimizer)])).item())

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):  # noqa: ANN001
        self.left_after_step.append(max((g.abs().max().item() for g in self._grads(optimizer)), default=0.0))


@pytest.fixture(scope="module")
def audited_run(tiny_config, tiny_teachers) -> GradientAudit:
    """A short run with every extra module and a clipping norm small enough to clip every step."""
    audit = GradientAudit()
    config = recipe_config(tiny_config, AUX, "audited-extras", tiny_teachers, *ALL_EXTRAS,
                           "training.max_steps=4", "training.max_grad_norm=0.01")
    run_training(config, callbacks=[audit])
    return audit


def test_every_trained_gradient_is_cleared_after_each_optimizer_step(audited_run) -> None:
    """The HF Trainer zeroes only the student: the extras used to apply the sum of all past gradients."""
    assert len(audited_run.left_after_step) == 4
    assert audited_run.left_after_step == [0.0] * 4


def test_gradient_clipping_uses_one_global_norm_over_student_and_extras(audited_run) -> None:
    """Clipping the student alone left the extras' gradients unclipped: a global norm above max_grad_norm."""
    assert len(audited_run.applied_norms) == 4
    for norm in audited_run.applied_norms:
        assert norm == pytest.approx(0.01, rel=1e-4)


@pytest.mark.parametrize("recipe", [PALENKA, CONTRASTIVE, AUX], ids=lambda p: p.stem)
def test_distillation_run_stopped_by_signal_resumes_bit_identical(tiny_config, tiny_teachers, recipe: Path) -> None:
    """Student AND extras of a SIGUSR1-stopped, resumed run equal the uninterrupted run's, bit for bit."""
    overrides = ("training.max_steps=6", "training.save_steps=6", "training.max_grad_norm=0.05")
    reference = run_training(recipe_config(tiny_config, recipe, f"whole-{recipe.stem}", tiny_teachers, *overrides))
    config = recipe_config(tiny_config, recipe, f"resumed-{recipe.stem}", tiny_teachers, *overrides)
    assert run_training(config, callbacks=[SignalAtStep(3)]).preempted
    resumed = run_training(config, resume=True)
    assert not resumed.preempted
    for name in ("model.safetensors", f"checkpoints/checkpoint-6/{EXTRA_MODULES_FILE}"):
        expected, actual = (load_file(str(run.run_dir / name)) for run in (reference, resumed))
        assert expected.keys() == actual.keys() and expected
        for key in expected:
            assert torch.equal(expected[key], actual[key]), f"{name}: {key}"


def test_aux_term_combines_the_teachers_as_configured(tiny_config, tiny_teachers) -> None:
    """The trainer used to leave `distillation.combine` out of the aux term (always averaging logits)."""
    trainer = build_trainer(recipe_config(tiny_config, AUX, "aux-combine", tiny_teachers, "distillation.combine=probs"))
    batch = next(iter(trainer.get_train_dataloader()))
    outputs = trainer.model(input_ids=batch["input_ids"], output_hidden_states=True)
    with torch.no_grad():
        teacher_logits = [teacher(input_ids=batch["input_ids"]).logits for teacher in trainer.teachers]
    expected = {
        combine: auxiliary_classifier_loss(outputs.hidden_states, trainer.extra_modules.aux_heads, teacher_logits,
                                           batch["labels"], trainer.distillation.temperature, combine=combine)
        for combine in ("probs", "logits")
    }
    assert not torch.allclose(expected["probs"], expected["logits"])
    torch.testing.assert_close(trainer.loss_terms(outputs, batch)["aux"], expected["probs"])
