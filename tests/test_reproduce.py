"""The reproduction pipeline end to end at tiny scale: stages, skip-on-rerun, table, baselines, findings."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest

from babykd import grid_report, reproduce
from babykd.evaluation.report import read_results
from babykd.grid import Grid, GridPoint, PointResult, format_value
from conftest import shared_or_skip


@pytest.mark.slow
@pytest.mark.parametrize("budget", ["lease", "cpu", "cpu-grid"], ids=["lease-smoke", "cpu-smoke", "cpu-grid-smoke"])
def test_reproduction_writes_table_with_seeds_and_provenance(demo_corpus, tmp_path: Path, capsys, budget: str) -> None:
    """A budget's plan and tasks at tiny scale (`--smoke`): lease's 2025-protocol BLiMP/EWoK on full sets, cpu's
    whole fast 2025 suite (entity tracking, WUG, reading), cpu-grid's also with its grid screened (a few points),
    each through the pipeline a real study runs."""
    eval_data, suite_data = shared_or_skip("evaluation_data"), shared_or_skip("evaluation_data_2025.zip")
    out = tmp_path / "runs"
    args = [str(demo_corpus.corpus_dir), "--budget", budget, "--smoke", "--seeds", "2", "--out", str(out),
            "--eval-data", str(eval_data), "--suite-data", str(suite_data)]
    reproduce.main(args)
    text = (out / "RESULTS.md").read_text()
    assert (out / "RESULTS.png").stat().st_size > 1000
    loaded = reproduce.load_budget(budget)
    recipes, columns = loaded.plan, loaded.evaluation.columns
    arms = _assert_confirmation(out, text, loaded)
    rows = [line for line in text.splitlines() if any(f" | {role} | " in line for role in reproduce.ROLES)]
    assert len(rows) == len(recipes.teachers) + len(recipes.baselines) + len(recipes.students) + arms
    assert f"| dev CE | {' | '.join(columns)} | seeds |" in text
    assert "## Tasks not scored" not in text and not any("n/a" in row.split(" | ", 6)[-1] for row in rows)
    student = next(line for line in rows if line.startswith(f"| {recipes.students[0]} |"))
    assert " ± " in student and student.rstrip().endswith("| 2 |")  # mean ± sd over 2 seeds
    assert all(f"{c.label}: dev CE" in text for c in loaded.comparisons) and "paired seeds" in text
    assert "Unigram model of the train split" in text and "chance is 0.5" in text
    assert "Teacher GPT2-705M-strict reached dev CE" in text  # against the student alone
    assert "corpus_sha256" in text and "git_commit" in text and "training.max_steps=8" in text
    assert "## Wall time per stage" in text and "| evaluate every model |" in text
    scope = f"## What this scale can and cannot say\n\n{(loaded.scope or '').strip()}\n"
    assert (scope in text) == (loaded.scope is not None)
    per_run = (out / "RESULTS.csv").read_text().splitlines()
    assert len(per_run) == 1 + len(reproduce.plan(2, recipes)) + 2 * arms and per_run[0].startswith("model,role,seed")
    _assert_grid_report(out, text, loaded)

    # a rerun skips every finished stage and evaluation
    capsys.readouterr()
    reproduce.main(args)
    log = capsys.readouterr().out
    assert log.count("done already, skipped") == len(reproduce.plan(2, recipes)) + 2 * arms
    assert "evaluating" not in log

    # a finished run whose config is not the budget's (an edited budget) is named, not skipped
    saved = out / reproduce.plan(2, recipes)[0].run_name / "run_config.yaml"
    saved.write_text(saved.read_text().replace("  lr: ", "  lr: 1.0e-09 #", 1))
    with pytest.raises(SystemExit, match=r"finished run of another config .*training\.lr"):
        reproduce.main(args)


def _assert_confirmation(out: Path, text: str, budget: reproduce.Budget) -> int:
    """The confirmation's arms (how many): chosen from the finished screen, trained on both seeds, compared."""
    if budget.confirmation is None:
        assert "## Confirmation arms" not in text and not (out / "confirmation.json").exists()
        return 0
    choice = json.loads((out / "confirmation.json").read_text())
    names = [arm["name"] for arm in choice["arms"]]
    ranked = [point["dev_ce"] for point in choice["ranked"]]
    assert ranked == sorted(ranked) and len(ranked) == reproduce.SMOKE_GRID_POINTS * len(budget.confirmation.screens)
    alpha = format_value(choice["alpha"])
    control = f"logit-kd-L{alpha}"
    assert names[0] == control and f"{control}-cached" in names and f"{control}-fixed" in names
    assert any(("cosine" in name or "upper" in name) and name.endswith(f"-L{alpha}") for name in names)  # a variant
    assert len(choice["variants"]) == reproduce.SMOKE_GRID_POINTS * len(budget.confirmation.variants)
    assert "## Confirmation arms" in text and all(f"- `{name}`: " in text for name in names)
    table = text.splitlines()
    assert all(any(line.startswith(f"| {name} | student | ") for line in table) for name in names)
    assert f"{control}: teacher cache vs online teachers (fixed chunks): dev CE" in text
    assert f"PalenkaLlama1-58M-strict-L0.1-H0.5 vs {control}: dev CE" in text
    assert f"| PalenkaLlama1-58M-strict-L0.1-H0.5 vs {control} | " in text  # the paired-difference table
    verdict = text[text.index("## What this says"):]
    assert f"(`{control}`) against the student alone (`Llama-58M-strict`): dev CE" in verdict
    assert "hidden-term arm" in verdict and "teacher cache against the same recipe with online teachers" in verdict
    for name in names:
        assert (out / f"{name}-seed1" / "eval" / "results.json").is_file()
    assert all(f"## Grid {Path(v.file).stem}\n" in text for v in budget.confirmation.variants)
    return len(names)


def test_a_chosen_point_that_is_a_recipe_of_the_plan_is_not_trained_twice(tmp_path: Path) -> None:
    from babykd.confirmation import Arm, same_as_plan

    budget = reproduce.load_budget("cpu-grid")
    stages, recipe = reproduce.plan(1, budget.plan), "PalenkaLlama1-58M-strict-L0.1-H0.5"
    corpus = tmp_path / "corpus.zip"

    def arm(hidden: float) -> Arm:
        return Arm("point", recipe, ("distillation.weights.kl=0.1", f"distillation.weights.hidden={hidden}"), "")

    assert same_as_plan(arm(0.5), budget, stages, corpus, tmp_path) == recipe
    assert same_as_plan(arm(0.3), budget, stages, corpus, tmp_path) is None


def _assert_grid_report(out: Path, text: str, budget: reproduce.Budget) -> None:
    """Each screened grid: its section with every smoke point finished and its shares, its heat map, its CSV lines."""
    assert ("## Grid " in text) == bool(budget.grids) == (out / "RESULTS-grid.csv").is_file()
    for screen in budget.grids:
        stem = Path(screen.file).stem
        assert f"## Grid {stem}\n" in text and f"{reproduce.SMOKE_GRID_POINTS} of its" in text
        assert (out / f"RESULTS-grid-{stem}.png").stat().st_size > 1000 and f"(RESULTS-grid-{stem}.png)" in text
    points = [line for line in text.splitlines() if line.endswith("| finished |") and " · hidden " in line]
    assert len(points) == reproduce.SMOKE_GRID_POINTS * len(budget.grids)
    assert all("| – |" not in line for line in points)  # every score and share there
    if budget.grids:
        lines = (out / "RESULTS-grid.csv").read_text().splitlines()
        header, values = lines[0].split(","), [line.split(",") for line in lines[1:]]
        variants = len(budget.confirmation.variants) if budget.confirmation else 0
        assert len(values) == len(points) + reproduce.SMOKE_GRID_POINTS * variants and "share_hidden_mid" in header
        hidden = [i for i, name in enumerate(header) if name.startswith("share_hidden") and name.endswith("_mid")]
        assert all(any(row[i] for i in hidden) and row[header.index("dev_ce")] for row in values)  # each its term


def test_plan_orders_teachers_before_students() -> None:
    stages = reproduce.plan(3)
    roles = [s.role for s in stages]
    assert roles.index("student") > max(i for i, r in enumerate(roles) if r in {"teacher", "baseline"})
    assert {s.run_name for s in stages if s.role == "teacher"} == set(reproduce.TEACHERS)
    assert sum(1 for s in stages if s.recipe == "BabyLlama1-58M-strict") == 3


def test_budgets_validate_and_students_point_at_trained_teachers(tmp_path: Path) -> None:
    assert {"tiny", "lease", "fast", "full", "cpu"} <= set(reproduce.budget_names())
    for name in reproduce.budget_names():
        reproduce.load_budget(name)
    stage = reproduce.Stage("DistilledGPT-44M-strict", "student", 1)
    config = reproduce.stage_config(stage, reproduce.load_budget("tiny"), tmp_path / "corpus", tmp_path)
    assert config.distillation.teachers == [str(tmp_path / "GPT2-44M-strict-seed0"),
                                            str(tmp_path / "Llama-60M-strict-seed0")]
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


def test_cpu_budget_pairs_four_recipes_on_the_same_batches_under_bigger_teachers() -> None:
    """Per seed the four runs differ only in their loss: same student, init seed, data, batch and steps."""
    from babykd.models import SUITE_LONGEST_INPUT, build_model, count_parameters

    budget = reproduce.load_budget("cpu")
    stages = reproduce.plan(3, budget.plan)
    assert len(stages) == 2 + 3 * 4
    configs = {s.run_name: reproduce.stage_config(s, budget, Path("/corpus.zip"), Path("/runs"))
               for s in stages if s.seed == 1 or s.role == "teacher"}
    seed1 = [c for name, c in configs.items() if name.endswith("seed1")]
    assert len(seed1) == 4 and all(c.training.seed == 1 for c in seed1)
    assert len({(repr(c.model), repr(c.data), repr(c.training)) for c in seed1}) == 1  # optimiser, steps, batch
    student = count_parameters(build_model(seed1[0].model))
    for teacher in (configs[name] for name in budget.plan.teachers):
        assert count_parameters(build_model(teacher.model)) > 1.5 * student
        assert teacher.training.max_steps > seed1[0].training.max_steps
    assert configs["GPT2-705M-strict"].model.max_position_embeddings >= SUITE_LONGEST_INPUT
    working = configs["PalenkaLlama1-58M-strict-L0.1-H0.5-seed1"].distillation
    ablated = configs["PalenkaLlama1-58M-strict-L0.1-H0-seed1"].distillation
    assert working.weights.hidden > 0 and ablated.weights.hidden == 0
    assert dataclasses.replace(working, weights=ablated.weights) == ablated  # nothing else differs
    assert budget.evaluation.fast and "entity_tracking_fast" in budget.evaluation.columns


@pytest.mark.parametrize("text, error", [
    ("plan: {students: [NoSuchRecipe]}", r"bad.yaml: plan: student recipe 'NoSuchRecipe' not found"),
    ("role_overrides: {teachers: [training.lr=1]}", r"bad.yaml: role_overrides.teachers: not a role"),
    ("evaluation: {tasks: [blimp, entity_tracking]}", r"bad.yaml: evaluation.tasks: \['blimp'\]: choose from"),
    ("evaluation: {tasks: [comps], fast: true}", r"bad.yaml: evaluation.tasks: comps has no fast set"),
    ("comparisons: [{label: x, a: BabyLlama1-58M-strict, b: NoSuchRecipe}]",
     r"bad.yaml: comparisons\[0\].b: 'NoSuchRecipe' is not trained by this budget's plan"),
    ("scope: '  '", r"bad.yaml: scope: empty"),
], ids=["recipe", "role", "task", "fast", "comparison", "scope"])
def test_a_bad_budget_fails_with_file_and_key(tmp_path: Path, monkeypatch, text: str, error: str) -> None:
    from babykd.config import ConfigError

    monkeypatch.setattr(reproduce, "BUDGETS_DIR", tmp_path)
    (tmp_path / "bad.yaml").write_text(f"description: x\n{text}\n")
    with pytest.raises(ConfigError, match=error):
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
    table = reproduce.markdown(rows, reproduce.EVAL_TASKS).splitlines()
    assert len({line.count("|") for line in table}) == 1  # header, separator and rows: same column count
    assert "words seen (model / lineage) | wall time (s) | dev CE |" in table[0]
    assert table[2].startswith("| GPT2-705M-strict | teacher | 1,000 | 2,000 | 10,000,000 / 10,000,000 | 1 | 3.000 |")
    assert table[5].startswith("| PalenkaLlama1-58M-strict-L0.1-H0.5 | student | 1,000 | 2,000 | n/a / n/a | 1 | "
                               "3.950 ± 0.132 | 0.700 ± 0.010 (0.0100)")
    text = reproduce.findings(rows, reproduce.load_budget("full").comparisons, reproduce.EVAL_TASKS)
    # scores per seed: +0.10, +0.09, +0.08 -> mean 9.0 points, sd 1.0: far above its standard error
    assert ("blimp_filtered +9.00 points (3 paired seeds, sd 1.00; 3/3 seeds favour it; exceeds seed noise: better)"
            in text)
    # dev CE per seed: -0.1, +0.05, -0.1 -> mean -0.05, sd 0.087, 2·SE 0.1: not above it
    assert "dev CE -0.05 nats (3 paired seeds, sd 0.09; 2/3 seeds favour it; within seed noise)" in text
    assert "Teacher GPT2-705M-strict reached dev CE 3.000 against Llama-58M-strict (no teachers) 4.100 ± 0.100: " \
           "lower by 1.100 nats." in text
    assert "beats GPT2-705M-strict by 10.0 points (exceeds its seed spread)" in text


def test_csv_has_one_line_per_run_and_leaves_missing_figures_empty() -> None:
    rows = [_row("A", "student", [0.5, 0.6], [3.0, 3.1], (100, 200)), _row("B", "teacher", [0.7])]
    lines = reproduce.csv_table(rows, reproduce.EVAL_TASKS).splitlines()
    assert lines[0] == "model,role,seed,parameters,train_tokens,words_seen,lineage_words_seen,dev_ce," + \
        ",".join(reproduce.EVAL_TASKS)
    assert lines[1] == "A,student,0,1000,2000,100,200,3,0.5,0.5,0.5"
    assert lines[3] == "B,teacher,0,1000,2000,,,,0.7,0.7,0.7"


def test_zero_seeds_is_an_error_not_the_budget_default(tmp_path: Path) -> None:
    """`--seeds 0` once fell back to the budget's seeds (0 is falsy) and started training."""
    with pytest.raises(SystemExit, match="--seeds must be at least 1"):
        reproduce.main([str(tmp_path), "--budget", "tiny", "--seeds", "0", "--out", str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()


def test_unigram_baseline_is_add_one_smoothed_on_predicted_dev_tokens(monkeypatch) -> None:
    """Train tokens [0, 0, 1] over 3 types: p = (3, 2, 1)/6; the dev chunk [0, 1, 2] predicts its last two."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    import babykd.training

    data = SimpleNamespace(train_dataset=SimpleNamespace(tokens=np.array([0, 0, 1])), tokenizer=[0, 1, 2],
                           eval_dataset=[{"input_ids": torch.tensor([0, 1, 2])}])
    monkeypatch.setattr(babykd.training, "load_data", lambda config: data)
    assert reproduce.unigram_dev_ce(None) == pytest.approx(-(math.log(2 / 6) + math.log(1 / 6)) / 2)


def test_baselines_name_the_models_not_below_the_unigram_model_or_chance() -> None:
    rows = [_row("A", "student", [0.6, 0.6], [3.0, 3.1]), _row("B", "student", [0.5, 0.49], [6.5, 6.4])]
    text = reproduce.baselines(rows, 6.0, reproduce.EVAL_TASKS)
    assert "dev CE 6.000. Not below it: B." in text
    assert "- blimp_filtered: chance is 0.5 (two candidates per item); mean at or below it: B." in text
    for row, rho in zip(rows, ([0.3, 0.1], [0.05, -0.1])):
        row.scores["wug_past_tense_fast"] = rho
    text = reproduce.baselines(rows, 6.0, [*reproduce.EVAL_TASKS, "wug_past_tense_fast", "reading_fast"])
    assert "- wug_past_tense_fast: no relation to the human judgements is ρ = 0; mean at or below it: B." in text
    assert "reading_fast" not in text  # an in-sample R² gain has no floor to compare with


@pytest.mark.slow
def test_a_model_that_cannot_be_loaded_is_an_error_per_task_and_the_others_are_scored(
        tiny_teachers: list[Path], tmp_path: Path) -> None:
    """evaluate_runs goes through babykd.evaluate: a damaged run is named in its results' errors, not a crash."""
    suite_data = shared_or_skip("evaluation_data_2025.zip")
    good, damaged = tmp_path / "good", tmp_path / "damaged"
    shutil.copytree(tiny_teachers[0], good, ignore=shutil.ignore_patterns("eval", "checkpoints"))
    shutil.copytree(tiny_teachers[0], damaged, ignore=shutil.ignore_patterns("eval", "checkpoints"))
    (damaged / "tokenizer.json").write_text("{not json")
    evaluation = reproduce.EvaluationBudget(tasks=["blimp_filtered", "ewok_filtered"], fast=True,
                                            max_items_per_subtask=2)
    reproduce.evaluate_runs([damaged, good], evaluation, None, suite_data, tmp_path)
    scored = read_results(good / "eval" / "results.json")
    assert set(scored["tasks"]) == {"blimp_filtered_fast", "ewok_filtered_fast"} and not scored["errors"]
    assert scored["dtype"] == "fp32" and "git_commit" in scored  # the record babykd.evaluate writes
    failed = read_results(damaged / "eval" / "results.json")
    assert failed["tasks"] == {} and set(failed["errors"]) == {"blimp_filtered_fast", "ewok_filtered_fast"}
    assert all("damaged tokenizer file" in why for why in failed["errors"].values())
    assert set(json.loads((tmp_path / reproduce.STAGE_TIMES).read_text())) == {"evaluate damaged", "evaluate good"}


def _grid_rows() -> tuple[Grid, list[grid_report.GridRow]]:
    """A fabricated 2 x 2 alpha x beta grid: two finished points (one without shares), one pending, one diverged."""
    axes = (("distillation.weights.kl", (0.1, 0.5)), ("distillation.weights.hidden", (0.5, 2.0)))
    points = tuple(GridPoint(i, f"g-L{format_value(kl)}-H{format_value(h)}", ((axes[0][0], kl), (axes[1][0], h)))
                   for i, (kl, h) in enumerate([(0.1, 0.5), (0.1, 2.0), (0.5, 0.5), (0.5, 2.0)]))
    grid = Grid(Path("config/grid/g.yaml"), Path("base.yaml"), "g-L{kl}-H{hidden}", axes, points)
    shares = tuple({"step": step, "share": {"ce": 0.2, "kl": 0.7 - hidden, "hidden": 0.1 + hidden}}
                   for step, hidden in ((0, 0.0), (4, 0.2), (7, 0.3)))
    row = grid_report.GridRow
    rows = [
        row(PointResult(points[0], Path("r0"), "finished", 3.5, 0.61, steps=8, term_shares=shares),
            {"blimp_filtered_fast": 0.61, "ewok_filtered_fast": 0.52}),
        row(PointResult(points[1], Path("r1"), "finished", 3.25, 0.58, steps=8), {"blimp_filtered_fast": 0.58}),
        row(PointResult(points[2], Path("r2"), "pending (checkpoint 4)")),
        row(PointResult(points[3], Path("r3"), "stopped at step 3: loss is nan", steps=3)),
    ]
    return grid, rows


def test_grid_section_ranks_points_by_dev_ce_with_scores_and_shares_and_dashes_for_missing_data() -> None:
    grid, rows = _grid_rows()
    columns = ["blimp_filtered_fast", "ewok_filtered_fast"]
    text = grid_report.section(grid, rows, columns, ["training.max_steps=300"], "R-grid.csv", "R-grid-g.png")
    assert "## Grid g" in text and "4 of its 4 points screened" in text and "`training.max_steps=300`" in text
    assert "2 finished, 1 stopped (diverged), 1 pending" in text and "![grid g](R-grid-g.png)" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len({line.count("|") for line in table}) == 1
    assert table[0].startswith("| rank | run | kl | hidden | dev CE | blimp_filtered [fast] | ewok_filtered [fast] |")
    assert table[1].startswith("| 1 | g-L0.1-H2 | 0.1 | 2 | 3.2500 | 0.580 | – | – | 8 | finished |")
    assert table[2].startswith("| 2 | g-L0.1-H0.5 | 0.1 | 0.5 | 3.5000 | 0.610 | 0.520 | "
                               "kl 70/50/40 · hidden 10/30/40 |")
    assert table[3] == "| – | g-L0.5-H0.5 | 0.5 | 0.5 | – | – | – | – | – | pending (checkpoint 4) |"
    assert table[4].startswith("| – | g-L0.5-H2 |") and table[4].endswith("| 3 | stopped at step 3: loss is nan |")
    bare = grid_report.section(grid, rows, columns, [], "R-grid.csv", None)
    assert "overrides): 2 finished" in bare and "No heat map: the grid has 2 axes" in bare


def test_grid_heat_map_and_csv_draw_every_cell_and_leave_missing_values_blank() -> None:
    grid, rows = _grid_rows()
    assert grid_report._mid_shares(rows[0].result) == "kl 50% · hidden 30%"
    assert grid_report._mid_shares(rows[2].result) == ""  # pending: no shares
    assert grid_report._cell_of(grid, rows[1].result) == (0, 1) and grid_report._cell_of(grid, rows[2].result) == (1, 0)
    picture = grid_report.heatmap(grid, rows)
    assert picture is not None and picture.startswith(b"\x89PNG") and len(picture) > 1000
    line = dataclasses.replace(grid, axes=grid.axes[1:])  # one axis: one row; three axes: no plane
    point = dataclasses.replace(rows[1].result.point, values=rows[1].result.point.values[1:])
    alone = dataclasses.replace(rows[1], result=dataclasses.replace(rows[1].result, point=point))
    assert grid_report._cell_of(line, alone.result) == (0, 1) and grid_report.heatmap(line, [alone]) is not None
    assert grid_report.heatmap(dataclasses.replace(grid, axes=(*grid.axes, ("training.lr", (1e-3,)))), rows) is None
    lines = grid_report.csv_table([(grid, rows)], ["blimp_filtered_fast"]).splitlines()
    assert lines[0] == ("grid,index,run,status,steps,distillation.weights.kl,distillation.weights.hidden,dev_ce,"
                        "blimp_filtered_fast," + ",".join(f"share_{t}_{s}" for t in ("ce", "kl", "hidden")
                                                          for s in ("first", "mid", "last")))
    assert lines[1] == "g,0,g-L0.1-H0.5,finished,8,0.1,0.5,3.5,0.61,0.2,0.2,0.2,0.7,0.5,0.4,0.1,0.3,0.4"
    assert lines[2] == "g,1,g-L0.1-H2,finished,8,0.1,2,3.25,0.58" + "," * 9
    assert lines[3] == "g,2,g-L0.5-H0.5,pending (checkpoint 4),,0.5,0.5,," + "," * 9
