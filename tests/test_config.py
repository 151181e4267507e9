"""Config loading: every shipped config validates; bad input names the file and the key."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from babykd import REPO_ROOT
from babykd.config import (
    ConfigError,
    DistillationConfig,
    ModelConfig,
    TrainingConfig,
    derive_batch_layout,
    load_model_config,
    load_run_config,
    parse_overrides,
)
from babykd.training import training_arguments

RUN_CONFIGS = sorted((REPO_ROOT / "config" / "runs").rglob("*.yaml"))
MODEL_CONFIGS = sorted((REPO_ROOT / "config" / "models").glob("*.yaml"))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def minimal_run(tmp_path: Path) -> Path:
    return write(
        tmp_path / "run.yaml",
        """
model: config/models/tiny-llama.yaml
data: {corpus: corpus_dir, vocab_size: 2000, seq_length: 64}
training: {lr: 1.0e-3, batch_size: 8}
output: {name: my-run, root: out}
""",
    )


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_run_config_validates(path: Path) -> None:
    config = load_run_config(path)
    assert config.output.name
    assert Path(config.data.corpus).is_absolute()


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.stem)
def test_every_model_config_validates(path: Path) -> None:
    assert load_model_config(path).name == path.stem


def test_published_recipes_are_in_the_configs() -> None:
    gpt = load_run_config(REPO_ROOT / "config/runs/pretrain/GPT2-705M-strict.yaml")
    assert (gpt.training.lr, gpt.training.batch_size, gpt.training.epochs) == (2.5e-4, 128, 6)
    assert gpt.training.scheduler == "cosine" and gpt.training.warmup_steps > 0
    assert gpt.model.d_ff == 6144 and gpt.model.n_layer == 24 and gpt.data.seq_length == 128
    llama = load_run_config(REPO_ROOT / "config/runs/pretrain/Llama-360M-strict.yaml")
    assert (llama.training.lr, llama.training.batch_size, llama.training.epochs) == (3e-4, 128, 4)
    baby = load_run_config(REPO_ROOT / "config/runs/distill/BabyLlama1-58M-strict.yaml")
    assert baby.distillation is not None
    assert (baby.distillation.weights.ce, baby.distillation.weights.kl, baby.distillation.temperature) == (0.5, 0.5, 2.0)
    assert (baby.training.lr, baby.training.batch_size, baby.training.epochs) == (2.5e-4, 32, 6)
    assert (baby.training.warmup_steps, baby.training.weight_decay) == (200, 0.1)
    palenka = load_run_config(REPO_ROOT / "config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml")
    assert palenka.distillation is not None
    assert (palenka.distillation.weights.kl, palenka.distillation.weights.hidden) == (0.1, 0.5)
    assert palenka.distillation.layer_maps[0][23] == 15 and palenka.distillation.layer_maps[1][3] == 2


def test_unknown_key_names_file_key_and_suggestion(tmp_path: Path, minimal_run: Path) -> None:
    text = minimal_run.read_text().replace("training: {lr: 1.0e-3", "training: {lrr: 1.0e-3, lr: 1.0e-3")
    bad = write(tmp_path / "typo.yaml", text)
    with pytest.raises(ConfigError) as error:
        load_run_config(bad)
    message = str(error.value)
    assert "typo.yaml" in message and "training.lrr" in message and "did you mean 'training.lr'" in message


def test_wrong_type_names_key_and_expected_type(tmp_path: Path, minimal_run: Path) -> None:
    bad = write(tmp_path / "type.yaml", minimal_run.read_text().replace("batch_size: 8", "batch_size: eight"))
    with pytest.raises(ConfigError, match=r"type\.yaml: training\.batch_size must be an integer, got 'eight'"):
        load_run_config(bad)


def test_missing_required_key(tmp_path: Path, minimal_run: Path) -> None:
    bad = write(tmp_path / "missing.yaml", minimal_run.read_text().replace("lr: 1.0e-3, ", ""))
    with pytest.raises(ConfigError, match=r"missing\.yaml: missing required key 'training\.lr'"):
        load_run_config(bad)


def test_literal_choices_are_listed(tmp_path: Path, minimal_run: Path) -> None:
    bad = write(tmp_path / "sched.yaml", minimal_run.read_text().replace("batch_size: 8}", "batch_size: 8, scheduler: cosin}"))
    with pytest.raises(ConfigError, match=r"training\.scheduler must be one of \['cosine'"):
        load_run_config(bad)


def test_missing_files_are_named(tmp_path: Path, minimal_run: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_run_config(tmp_path / "nope.yaml")
    bad = write(tmp_path / "model.yaml", minimal_run.read_text().replace("tiny-llama.yaml", "no-such-model.yaml"))
    with pytest.raises(ConfigError, match=r"model\.yaml: model: config file not found: .*no-such-model\.yaml"):
        load_run_config(bad)


def test_cross_field_checks(tmp_path: Path, minimal_run: Path) -> None:
    bad = write(tmp_path / "seq.yaml", minimal_run.read_text().replace("seq_length: 64", "seq_length: 4096"))
    with pytest.raises(ConfigError, match="seq_length .*exceeds model.max_position_embeddings"):
        load_run_config(bad)
    with pytest.raises(ConfigError, match="divisible by model.n_head"):
        load_run_config(minimal_run, ["model.n_head=5"])


def test_overrides_change_values_and_resolve_paths_against_cwd(
    minimal_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_run_config(
        minimal_run, ["training.lr=1e-4", "data.corpus=scratch/babylm", "model.n_layer=2", "training.max_steps=7"]
    )
    assert config.training.lr == pytest.approx(1e-4)
    assert config.data.corpus == str(tmp_path / "scratch" / "babylm")
    assert config.model.n_layer == 2 and config.training.max_steps == 7
    # paths written in the YAML resolve against the repository root, not the working directory
    assert config.output.root == str(REPO_ROOT / "out")


def test_override_of_unknown_key_fails(minimal_run: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'training.learning_rate'"):
        load_run_config(minimal_run, ["training.learning_rate=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["training.lr"])


def test_whole_section_override_swaps_the_model(minimal_run: Path) -> None:
    config = load_run_config(minimal_run, [f"model={REPO_ROOT / 'config/models/tiny-gpt2.yaml'}"])
    assert config.model.architecture == "gpt2"


@pytest.mark.parametrize(
    ("batch", "cap", "world", "expected"),
    [(128, 128, 1, (128, 1)), (128, 32, 1, (32, 4)), (128, 32, 8, (16, 1)), (32, 12, 1, (8, 4)), (128, None, 2, (64, 1))],
)
def test_global_batch_is_split_over_devices(batch: int, cap: int | None, world: int, expected: tuple[int, int]) -> None:
    layout = derive_batch_layout(TrainingConfig(lr=1.0, batch_size=batch, per_device_batch_size=cap), world)
    assert (layout.per_device, layout.accumulation) == expected
    assert layout.per_device * layout.accumulation * world == batch


def test_global_batch_must_divide_over_devices() -> None:
    with pytest.raises(ConfigError, match="not divisible by the number of processes"):
        derive_batch_layout(TrainingConfig(lr=1.0, batch_size=30), 4)


def float_keys(cls: type, prefix: str) -> list[str]:
    """Dotted keys of every float field below dataclass `cls`."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if hints[f.name] is float:
            keys.append(f"{prefix}.{f.name}")
        elif dataclasses.is_dataclass(hints[f.name]):
            keys += float_keys(hints[f.name], f"{prefix}.{f.name}")
    return keys


FLOAT_KEYS = [
    key for section, cls in (("model", ModelConfig), ("training", TrainingConfig), ("distillation", DistillationConfig))
    for key in float_keys(cls, section)
]


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_rejected_in_every_float_field(tmp_path: Path, minimal_run: Path, value: str) -> None:
    assert {"training.lr", "distillation.weights.kl", "distillation.temperature"} <= set(FLOAT_KEYS)
    run = write(tmp_path / "kd.yaml", minimal_run.read_text() + "distillation: {teachers: [t], weights: {kl: 1.0}}\n")
    for key in FLOAT_KEYS:
        with pytest.raises(ConfigError, match=rf"kd\.yaml: {re.escape(key)} must be a finite number"):
            load_run_config(run, [f"{key}={value}"])
    text = run.read_text().replace("lr: 1.0e-3", f"lr: {value}")
    with pytest.raises(ConfigError, match=r"inf\.yaml: training\.lr must be a finite number"):
        load_run_config(write(tmp_path / "inf.yaml", text))


@pytest.mark.parametrize("section", ["distillation: {teachers: [t], weigths: {kl: 1.0}}",
                                     "evaluation: {taks: [blimp_filtered]}"])
def test_error_inside_an_optional_section_names_the_inner_key(tmp_path: Path, minimal_run: Path, section: str) -> None:
    bad = write(tmp_path / "inner.yaml", minimal_run.read_text() + section + "\n")
    with pytest.raises(ConfigError) as error:
        load_run_config(bad)
    name, typo = ("distillation", "weigths") if "weigths" in section else ("evaluation", "taks")
    right = "weights" if typo == "weigths" else "tasks"
    assert str(error.value).startswith(f"{bad}: unknown key '{name}.{typo}' (did you mean '{name}.{right}'?)")


@pytest.mark.parametrize(("override", "message"), [
    ("training.adam_beta1=1.5", r"training\.adam_beta1 must be in \[0, 1\), got 1\.5"),
    ("training.adam_beta2=-0.1", r"training\.adam_beta2 must be in \[0, 1\)"),
    ("training.adam_epsilon=0", "training.adam_epsilon must be positive"),
    ("training.logging_steps=0", "training.logging_steps must be >= 1, got 0"),
    ("training.save_steps=0", "training.save_steps must be >= 1"),
    ("training.save_total_limit=0", "training.save_total_limit must be >= 1"),
    ("training.dataloader_workers=-1", "training.dataloader_workers must be >= 0"),
    ("training.max_grad_norm=-1", "training.max_grad_norm must be >= 0"),
    ("model.n_kv_head=0", r"model\.n_kv_head \(0\) must be a positive divisor of model\.n_head"),
    ("model.n_kv_head=3", r"model\.n_kv_head \(3\) must be a positive divisor"),
    ("model.norm_eps=0", "model.norm_eps must be positive"),
    ("model.rope_theta=-1", "model.rope_theta must be positive"),
    ("evaluation.tasks=[blimp_filterd]", r"evaluation\.tasks\[0\]: unknown task 'blimp_filterd': not one of"),
    ("evaluation.every_n_steps=0", "evaluation.every_n_steps must be >= 1"),
    ("evaluation.max_items_per_subtask=0", "evaluation.max_items_per_subtask must be >= 1"),
    ("output.name=", "output.name must be one folder name .* got ''"),
    ("output.name=../../escape", "output.name must be one folder name .* got '../../escape'"),
    ("output.name=..", "output.name must be one folder name"),
    ("output.name=1.50", r"output\.name must be a string, got 1\.5 \(quote it\)"),
])
def test_out_of_range_settings_are_refused_at_load(minimal_run: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"run\.yaml: {message}"):
        load_run_config(minimal_run, [override])


def test_a_name_that_looks_like_a_number_stays_as_written_and_numbers_still_parse(minimal_run: Path) -> None:
    config = load_run_config(minimal_run, ["output.name=1e3", "training.lr=1e-4", "training.save_total_limit=null",
                                           "training.max_grad_norm=null"])
    assert config.output.name == "1e3" and config.output.run_dir.name == "1e3"
    assert config.training.lr == pytest.approx(1e-4) and config.training.save_total_limit is None
    assert config.training.max_grad_norm is None and training_arguments(config, Path("run")).max_grad_norm == 0.0
