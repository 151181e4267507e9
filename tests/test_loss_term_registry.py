"""The loss-term registry: a new term is one new file in babykd/losses/terms/ plus its YAML weight."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import TrainerState

from babykd import REPO_ROOT
from babykd.config import DistillationConfig, LossWeightsConfig, load_run_config, saved_run_config
from babykd.errors import ConfigError
from babykd.losses import DistillationModules, combine
from babykd.losses.terms import REGISTRY, STUDENT_HIDDEN, TEACHER_HIDDEN, TEACHER_LOGITS, computed_terms, needs_of

#: PaLM's z-loss, as a user would add it: the squared log-normaliser of the student's logits.
TOY_TERM = '''"""z-loss: keeps the student's log-normaliser near 0 (PaLM)."""

from babykd.errors import ConfigError
from babykd.losses.terms.base import LossTerm, option


def compute(step, module):
    return step.student_logits.float().logsumexp(-1).pow(2).mean() * step.distillation.zloss_scale


def validate(cfg, where):
    if cfg.zloss_scale <= 0:
        raise ConfigError(f"{where}: distillation.zloss_scale must be positive")


TERM = LossTerm(name="zloss", compute=compute, options=(option("zloss_scale", float, 1.0, "a multiplier"),),
                validate=validate)
'''
RECIPE = REPO_ROOT / "config/runs/distill/BabyLlama1-58M-strict.yaml"
STUDENT = REPO_ROOT / "config/models/tiny-llama-student.yaml"


def test_the_config_trainer_and_modules_derive_from_the_registry():
    assert [f.name for f in LossWeightsConfig.__dataclass_fields__.values()] == list(REGISTRY)
    assert list(REGISTRY)[:5] == ["ce", "kl", "hidden", "contrastive", "aux"]  # the sum's order, as published
    options = {name for term in REGISTRY.values() for name, _, _ in term.options}
    assert options <= set(DistillationConfig.__dataclass_fields__)
    published = load_run_config(REPO_ROOT / "config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml")
    terms = computed_terms(published.distillation.weights)
    assert [t.name for t in terms] == ["ce", "kl", "hidden"]
    assert needs_of(terms, published.distillation) == {STUDENT_HIDDEN, TEACHER_HIDDEN, TEACHER_LOGITS}
    cached = load_run_config(RECIPE, ["distillation.teacher_cache_top_k=8", "data.random_offset=false"]).distillation
    assert needs_of(computed_terms(cached.weights), cached) == {"cached teacher targets"}
    assert DistillationModules().of(REGISTRY["ce"]) is None


def test_a_term_with_zero_weight_is_out_of_the_sum_and_an_unknown_weight_key_is_named():
    weights = LossWeightsConfig(ce=1.0, kl=0.5)
    terms = {"ce": torch.tensor(2.0), "kl": torch.tensor(4.0), "hidden": torch.tensor(float("nan"))}
    assert combine(terms, weights).item() == 4.0
    with pytest.raises(ConfigError, match=r"unknown key 'distillation.weights.hiden' \(did you mean"):
        load_run_config(RECIPE, ["distillation.weights.hiden=0.5"])
    with pytest.raises(ConfigError, match="contrastive_tau must be positive"):
        load_run_config(RECIPE, ["distillation.contrastive_tau=0"])


@pytest.fixture()
def toy_term_file():
    """The one new file; removed afterwards so the package is as it was."""
    path = REPO_ROOT / "babykd" / "losses" / "terms" / "zloss.py"
    assert not path.exists()
    path.write_text(TOY_TERM, encoding="utf-8")
    yield path
    path.unlink()


def test_a_new_term_is_one_file_and_a_weight_trained_logged_and_benchmarked(toy_term_file, tiny_config, tiny_teachers,
                                                                           tmp_path: Path):
    data = tiny_config(RECIPE, "zloss-probe", f"model={STUDENT}").data  # the tests' tiny corpus, tokenizer and cache
    setting = [f"data={REPO_ROOT / 'config/data/tiny.yaml'}", f"data.corpus={data.corpus}",
               f"data.tokenizer_dir={data.tokenizer_dir}", f"data.cache_dir={data.cache_dir}", "data.seq_length=32"]
    teachers = f"distillation.teachers=[{','.join(str(t) for t in tiny_teachers)}]"
    train = [sys.executable, str(REPO_ROOT / "distill.py"), str(RECIPE), "--set", *setting, teachers,
             f"model={STUDENT}", f"output.root={tmp_path}", "output.name=zloss", "training.max_steps=1",
             "training.batch_size=4", "training.per_device_batch_size=4", "training.logging_steps=1",
             "training.warmup_steps=0", "training.progress_bar=false",
             "distillation.weights.zloss=0.01", "distillation.zloss_scale=2.0"]
    run = subprocess.run(train, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    state = TrainerState.load_from_json(str(next((tmp_path / "zloss").rglob("trainer_state.json"))))
    logged = [entry for entry in state.log_history if "loss_zloss" in entry]
    assert logged and logged[0]["loss_zloss"] > 0 and "loss_kl" in logged[0]
    saved = json.dumps(saved_run_config(tmp_path / "zloss" / "run_config.yaml"))
    assert '"zloss": 0.01' in saved and '"zloss_scale": 2.0' in saved

    bench = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks/bench_term_shares.py"), "--recipes", str(RECIPE), "--json",
         "--teachers", *map(str, tiny_teachers), "--batch", "2",
         "--set", *setting, "distillation.weights.zloss=0.01"],
        capture_output=True, text=True, cwd=tmp_path)
    assert bench.returncode == 0, bench.stderr[-3000:]
    rows = {row["term"]: row for row in map(json.loads, bench.stdout.splitlines())}
    assert set(rows) == {"ce", "kl", "zloss"} and rows["zloss"]["weight"] == 0.01 and 0 < rows["zloss"]["share"] < 1

    bad = subprocess.run([*train[:-1], "distillation.zloss_scale=-1"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "distillation.zloss_scale must be positive" in bad.stderr
    assert "Traceback" not in bad.stderr



def test_the_cosine_hidden_term_is_scale_free_and_the_upper_term_keeps_the_upper_pairs():
    from babykd.losses import HiddenStateProjections, hidden_state_loss, uniform_layer_map
    from babykd.losses.terms.hidden_upper import upper_half

    torch.manual_seed(0)
    student = [torch.randn(2, 5, 4) for _ in range(3)]
    projections = HiddenStateProjections([4], 4, [{0: 0, 2: 2}])
    teacher = [[torch.randn(2, 5, 4) for _ in range(3)]]
    scaled = [[10.0 * h for h in teacher[0]]]
    mse = [hidden_state_loss(student, states, projections).item() for states in (teacher, scaled)]
    cosine = [hidden_state_loss(student, states, projections, distance="cosine").item() for states in (teacher, scaled)]
    assert mse[1] > 50 * mse[0]  # the MSE grows with the teacher's scale ...
    assert cosine == pytest.approx([cosine[0]] * 2, abs=1e-6) and 0 < cosine[0] < 2  # ... the cosine does not
    assert upper_half(uniform_layer_map(6, 4), 4) == {3: 2, 5: 3, 6: 4}


@pytest.mark.parametrize("term", ["hidden_cosine", "hidden_upper"])
def test_each_hidden_variant_trains_from_its_yaml_weight_and_records_its_gradient_share(tiny_config, tiny_teachers,
                                                                                       term):
    from babykd.losses import read_term_shares
    from babykd.training import run_training

    teachers = f"distillation.teachers=[{','.join(str(t) for t in tiny_teachers)}]"
    config = tiny_config(REPO_ROOT / "config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.yaml", f"variant-{term}",
                         f"model={STUDENT}", teachers, "distillation.layer_maps=null", "training.max_steps=4",
                         "training.logging_steps=1", f"distillation.weights.{term}=0.5")
    result = run_training(config)
    assert all(f"loss_{term}" in entry for entry in result.history if "loss" in entry)
    shares = read_term_shares(result.run_dir)
    assert [record["step"] for record in shares] == [0, 2, 3]
    assert all(set(record["share"]) == {"ce", "kl", term} and record["share"][term] > 0 for record in shares)
    assert sum(shares[0]["share"].values()) == pytest.approx(1.0)
