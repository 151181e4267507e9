"""The reproduction pipeline end to end at the tiny budget: stages, skip-on-rerun, table, findings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from babykd import reproduce
from conftest import shared_or_skip


@pytest.mark.slow
@pytest.mark.parametrize("budget, extra", [("tiny", []), ("lease", ["--smoke"])], ids=["tiny", "lease-smoke"])
def test_reproduction_writes_table_with_seeds_and_provenance(demo_corpus, tmp_path: Path, capsys, budget: str,
                                                             extra: list[str]) -> None:
    """The tiny budget, and the lease budget's plan at tiny scale (`--smoke`), through the same pipeline."""
    eval_data = shared_or_skip("evaluation_data")
    out = tmp_path / "runs"
    args = [str(demo_corpus.corpus_dir), "--budget", budget, *extra, "--seeds", "2", "--out", str(out),
            "--eval-data", str(eval_data)]
    reproduce.main(args)
    text = (out / "RESULTS.md").read_text()
    assert (out / "RESULTS.png").stat().st_size > 1000
    recipes = reproduce.load_budget(budget).plan
    rows = [line for line in text.splitlines() if any(f" | {role} | " in line for role in reproduce.ROLES)]
    assert len(rows) == len(recipes.teachers) + len(recipes.baselines) + len(recipes.students)
    student = next(line for line in rows if line.startswith("| BabyLlama1-58M-strict |"))
    assert " ± " in student and student.rstrip().endswith("| 2 |")  # mean ± sd over 2 seeds
    assert "working hidden-state term vs as-published" in text and "paired seeds" in text
    assert "corpus_sha256" in text and "git_commit" in text and "training.max_steps=8" in text
    assert "## Wall time per stage" in text and "| evaluate every model |" in text
    per_run = (out / "RESULTS.csv").read_text().splitlines()
    assert len(per_run) == 1 + len(reproduce.plan(2, recipes)) and per_run[0].startswith("model,role,seed")

    # a rerun skips every finished stage and evaluation
    capsys.readouterr()
    reproduce.main(args)
    log = capsys.readouterr().out
    assert log.count("done already, skipped") == len(reproduce.plan(2, recipes))
    assert "evaluating" not in log


def test_plan_orders_teachers_before_students() -> None:
    stages = reproduce.plan(3)
    roles = [s.role for s in stages]
    assert roles.index("student") > max(i for i, r in enumerate(roles) if r in {"teacher", "baseline"})
    assert {s.run_name for s in stages if s.role == "teacher"} == set(reproduce.TEACHERS)
    assert sum(1 for s in stages if s.recipe == "BabyLlama1-58M-strict") == 3


def test_budgets_validate_and_students_point_at_trained_teachers(tmp_path: Path) -> None:
    assert {"tiny", "lease", "fast", "full"} <= set(reproduce.budget_names())
    for name in reproduce.budget_names():
        reproduce.load_budget(name)
    stage = reproduce.Stage("DistilledGPT-44M-strict", "student", 1)
    config = reproduce.stage_config(stage, reproduce.load_budget("tiny"), tmp_path / "corpus", tmp_path)
    assert config.distillation.teachers == [str(tmp_path / "GPT2-44M-strict-seed0"), str(tmp_path / "Llama-60M-strict-seed0")]
    assert config.output.name == "DistilledGPT-44M-strict-seed1" and config.training.seed == 1
    assert config.model.name == "tiny-gpt2"


def test_lease_budget_trains_teachers_longer_and_every_recipe_of_the_question() -> None:
    """Teachers bigger and longer-trained than the student alone; students and baseline see the same tokens."""
    budget = reproduce.load_budget("lease")
    stages = {s.run_name: s for s in reproduce.plan(3, budget.plan)}
    assert len(stages) == 2 + 3 * (1 + 5)
    configs = {name: reproduce.stage_config(stage, budget, Path("/corpus.zip"), Path("/runs"))
               for name, stage in stages.items() if name.endswith(("strict", "seed0"))}
    teachers = [configs[name] for name in budget.plan.teachers]
    alone, kd = configs["Llama-58M-strict-seed0"], configs["BabyLlama1-58M-strict-seed0"]
    assert {t.model.architecture for t in teachers} == {"gpt2", "llama"}
    assert all(t.training.max_steps > alone.training.max_steps for t in teachers)
    assert (alone.model, alone.training.max_steps, alone.training.batch_size) == \
        (kd.model, kd.training.max_steps, kd.training.batch_size)
    working = configs["PalenkaLlama1-58M-strict-L0.1-H0.5-seed0"].distillation
    published = configs["PalenkaLlama1-58M-strict-L0.1-H0.5-as-published-seed0"].distillation
    assert working.weights.hidden > 0 and published.weights.hidden == 0
    assert configs["AuxDSKD-Llama-58M-strict-seed0"].distillation.aux_layers == [1, 2, 3]


def test_a_budget_naming_an_unknown_recipe_or_role_fails_with_file_and_key(tmp_path: Path, monkeypatch) -> None:
    from babykd.config import ConfigError

    monkeypatch.setattr(reproduce, "BUDGETS_DIR", tmp_path)
    (tmp_path / "bad.yaml").write_text("description: x\nplan: {students: [NoSuchRecipe]}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: plan: student recipe 'NoSuchRecipe' not found"):
        reproduce.load_budget("bad")
    (tmp_path / "bad.yaml").write_text("description: x\nrole_overrides: {teachers: [training.lr=1]}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: role_overrides.teachers: not a role"):
        reproduce.load_budget("bad")


def _row(label: str, role: str, per_seed: list[float], dev_ce: list[float] | None = None,
         words: tuple[int | None, int | None] = (None, None)) -> reproduce.ModelRow:
    scores = {t: list(per_seed) for t in reproduce.EVAL_TASKS}
    scores[reproduce.DEV_CE] = list(dev_ce or [math.nan] * len(per_seed))
    return reproduce.ModelRow(label, role, 1000, 2000, 1.0, scores, {t: 0.01 for t in reproduce.EVAL_TASKS},
                              seeds=list(range(len(per_seed))), words_seen=words[0], lineage_words_seen=words[1])


def test_table_columns_line_up_and_findings_pair_differences_by_seed() -> None:
    rows = [
        _row("GPT2-705M-strict", "teacher", [0.60], [3.0], (10_000_000, 10_000_000)),
        _row("Llama-58M-strict", "baseline", [0.55, 0.56, 0.57], [4.0, 4.1, 4.2]),
        _row("PalenkaLlama1-58M-strict-L0.1-H0.5-as-published", "student", [0.60, 0.62, 0.61], [3.9, 4.0, 4.1]),
        _row("PalenkaLlama1-58M-strict-L0.1-H0.5", "student", [0.70, 0.71, 0.69], [3.8, 4.05, 4.0]),
    ]
    table = reproduce.markdown(rows).splitlines()
    assert len({line.count("|") for line in table}) == 1  # header, separator and rows: same column count
    assert "words seen (model / lineage) | wall time (s) | dev CE |" in table[0]
    assert table[2].startswith("| GPT2-705M-strict | teacher | 1,000 | 2,000 | 10,000,000 / 10,000,000 | 1 | 3.000 |")
    assert table[5].startswith("| PalenkaLlama1-58M-strict-L0.1-H0.5 | student | 1,000 | 2,000 | n/a / n/a | 1 | "
                               "3.950 ± 0.132 | 0.700 ± 0.010 (0.0100)")
    text = reproduce.findings(rows)
    # scores per seed: +0.10, +0.09, +0.08 -> mean 9.0 points, sd 1.0: far above its standard error
    assert "blimp_filtered +9.00 points (3 paired seeds, sd 1.00; 3/3 seeds favour it; exceeds seed noise: better)" in text
    # dev CE per seed: -0.1, +0.05, -0.1 -> mean -0.05, sd 0.087, 2·SE 0.1: not above it
    assert "dev CE -0.05 nats (3 paired seeds, sd 0.09; 2/3 seeds favour it; within seed noise)" in text
    assert "Teacher GPT2-705M-strict reached dev CE 3.000 against Llama-58M-strict (no teachers) 4.100 ± 0.100: " \
           "lower by 1.100 nats." in text
    assert "beats GPT2-705M-strict by 10.0 points (exceeds its seed spread)" in text


def test_csv_has_one_line_per_run_and_leaves_missing_figures_empty() -> None:
    rows = [_row("A", "student", [0.5, 0.6], [3.0, 3.1], (100, 200)), _row("B", "teacher", [0.7])]
    lines = reproduce.csv_table(rows).splitlines()
    assert lines[0] == "model,role,seed,parameters,train_tokens,words_seen,lineage_words_seen,dev_ce," + \
        ",".join(reproduce.EVAL_TASKS)
    assert lines[1] == "A,student,0,1000,2000,100,200,3,0.5,0.5,0.5"
    assert lines[3] == "B,teacher,0,1000,2000,,,,0.7,0.7,0.7"


def test_zero_seeds_is_an_error_not_the_budget_default(tmp_path: Path) -> None:
    """`--seeds 0` once fell back to the budget's seeds (0 is falsy) and started training."""
    with pytest.raises(SystemExit, match="--seeds must be at least 1"):
        reproduce.main([str(tmp_path), "--budget", "tiny", "--seeds", "0", "--out", str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()
