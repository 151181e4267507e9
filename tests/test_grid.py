"""Grid search: stable expansion and names, validation errors that name the grid file and key,
real tiny points that are skipped once finished and resumed when interrupted, and a summary
that ranks by the student's dev cross-entropy, never by the weighted training objective."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from babykd import REPO_ROOT
from babykd.config import ConfigError, RunConfig, load_run_config
from babykd.evaluation.report import write_results
from babykd.grid import format_value, load_grid, main, rank, read_point, summary_path
from babykd.losses.shares import TERM_SHARES_FILE, TermShareLog
from babykd.training import PROVENANCE_FILE
from test_distillation import STUDENT, teacher_overrides

PALENKA_GRID = REPO_ROOT / "config/grid/palenka-L-H.yaml"
PALENKA = REPO_ROOT / "config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml"
LLAMA = REPO_ROOT / "config/runs/tiny/pretrain-tiny-llama.yaml"


def write_grid(path: Path, axes: dict, name: str = "tiny-L{kl}-H{hidden}", base: Path = PALENKA, **extra) -> Path:
    path.write_text(yaml.safe_dump({"base": str(base), "name": name, "axes": axes, **extra}, sort_keys=False))
    return path


def fake_run(run_dir: Path, eval_loss: float | None, train_loss: float, blimp: float | None = None,
             **record: object) -> None:
    """A finished run as run_training leaves it (`record`: more provenance), plus what the weighted objective was."""
    metrics = {"train_loss": train_loss} if eval_loss is None else {"eval_loss": eval_loss, "train_loss": train_loss}
    run_dir.mkdir(parents=True)
    (run_dir / PROVENANCE_FILE).write_text(json.dumps({"global_steps": 10, "final_metrics": metrics, **record}))
    if blimp is not None:
        write_results(run_dir / "eval" / "results.json", {"model": str(run_dir), "tasks": {
            "blimp_filtered": {"score": blimp, "stderr": 0.01, "max_items_per_subtask": None}}})


# ----------------------------------------------------------------------------- expansion


def test_shipped_grid_is_the_25_run_grid_with_the_standalone_names() -> None:
    grid = load_grid(PALENKA_GRID)
    weights = [0.1, 0.3, 0.5, 0.7, 0.9]
    assert [p.name for p in grid.points] == [
        f"PalenkaLlama1-58M-strict-L{kl}-H{hidden}" for kl in weights for hidden in weights
    ]
    assert grid.points[7].overrides == ["distillation.weights.kl=0.3", "distillation.weights.hidden=0.5"]
    assert load_grid(PALENKA_GRID).points == grid.points  # deterministic
    for hidden in (0.1, 0.3, 0.5):  # a run trained from a standalone config is the same grid point
        standalone = load_run_config(REPO_ROOT / f"config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H{hidden}.yaml")
        point = next(p for p in grid.points if p.name == standalone.output.name)
        assert grid.config(point.index).to_dict() == standalone.to_dict()
    config = grid.config(24, ["output.root=/scratch/models"])
    assert (config.distillation.weights.kl, config.distillation.weights.hidden) == (0.9, 0.9)
    assert config.output.run_dir == Path("/scratch/models/PalenkaLlama1-58M-strict-L0.9-H0.9")


def test_names_carry_no_float_noise_and_values_round_trip(tmp_path: Path, capsys) -> None:
    assert [format_value(v) for v in (0.1 + 0.2, 1e-5, 2.0, 3, True, "x")] == ["0.3", "1e-05", "2", "3", "true", "x"]
    path = write_grid(tmp_path / "lr.yaml", {"training.lr": [0.30000000000000004, 1.0e-4, 2.5e-4], "training.seed": [0, 1]},
                      name="lr{lr}-s{training.seed}", base=LLAMA)
    grid = load_grid(path)
    assert [p.name for p in grid.points] == ["lr0.3-s0", "lr0.3-s1", "lr0.0001-s0", "lr0.0001-s1", "lr0.00025-s0", "lr0.00025-s1"]
    assert grid.config(0).training.lr == 0.30000000000000004  # the name is rounded, the value is not
    assert grid.config(3).training.lr == 1e-4 and grid.config(3).training.seed == 1
    assert main(["list", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "2\tlr0.0001-s0\ttraining.lr=0.0001 training.seed=0"
    assert len(lines) == 6


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"axes": {"training.lr": [0.1]}, "name": "x", "base": str(LLAMA), "seed": 1}, "unknown key 'seed'"),
        ({"axes": {"training.lr": [0.1]}, "base": str(LLAMA)}, "missing required key 'name'"),
        ({"axes": {}, "name": "x", "base": str(LLAMA)}, "axes must be a non-empty mapping"),
        ({"axes": {"training.lr": []}, "name": "x", "base": str(LLAMA)}, r"axes.training.lr must be a non-empty list"),
        ({"axes": {"training.lr": [[0.1]]}, "name": "x", "base": str(LLAMA)}, "values must be numbers, strings or booleans"),
        ({"axes": {"training.lr": [0.1, 0.1]}, "name": "{lr}", "base": str(LLAMA)}, "repeats a value"),
        ({"axes": {"training.lr": [0.1]}, "name": "x", "base": "config/runs/nope.yaml"}, "run config not found"),
        ({"axes": {"output.root": ["a"]}, "name": "x", "base": str(LLAMA)}, "output location is not a grid axis"),
        ({"axes": {"training.lr": [0.1, 0.2], "training.seed": [0]}, "name": "r{lr}-{sed}", "base": str(LLAMA)},
         r"placeholder \{sed\} names no axis"),
        ({"axes": {"training.lr": [0.1, 0.2], "training.seed": [0, 1]}, "name": "r{lr}", "base": str(LLAMA)},
         "points 0 and 1 are both named 'r0.1'"),
        ({"axes": {"training.lrr": [0.1]}, "name": "x", "base": str(LLAMA)},
         r"axes.training.lrr is not a valid setting of .*pretrain-tiny-llama.yaml.*did you mean 'training.lr'"),
        ({"axes": {"distillation.weights.kl": [0.0, 0.5]}, "name": "k{kl}",
          "base": "config/runs/distill/BabyLlama1-58M-strict.yaml"},
         r"point 0 \(k0\): .*weights are all zero"),
    ],
)
def test_bad_grid_files_name_the_file_and_the_key(tmp_path: Path, content: dict, message: str) -> None:
    if "weights are all zero" in message:  # BabyLlama's recipe is CE + KL: zero both for point 0
        content["axes"]["distillation.weights.ce"] = [0.0]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    with pytest.raises(ConfigError, match=message) as error:
        load_grid(path)
    assert str(path) in str(error.value)


def test_cli_rejects_overrides_of_axis_keys_and_bad_indices(capsys) -> None:
    assert main(["list", str(PALENKA_GRID), "--set", "distillation.weights.kl=0.2"]) == 2
    assert "--set distillation.weights.kl" in capsys.readouterr().err
    assert main(["run", str(PALENKA_GRID), "25"]) == 2
    assert "no point 25; the grid has points 0..24" in capsys.readouterr().err


# ----------------------------------------------------------------------------- ranking


def test_summary_ranks_by_dev_ce_never_by_the_weighted_objective(tmp_path: Path, capsys) -> None:
    """As in the published grid: the smallest weights have the smallest weighted loss but not the best CE."""
    path = write_grid(tmp_path / "g.yaml", {"distillation.weights.kl": [0.1, 0.5, 0.9], "distillation.weights.hidden": [0.1, 0.9]})
    root = tmp_path / "runs"
    grid = load_grid(path, [f"output.root={root}"])
    outcomes = {  # name: (dev CE, weighted training loss, BLiMP)
        "tiny-L0.1-H0.1": (3.50, 3.60, None),
        "tiny-L0.1-H0.9": (3.30, 4.40, 0.61),
        "tiny-L0.5-H0.1": (3.20, 4.90, 0.64),
        "tiny-L0.5-H0.9": (3.20, 5.80, 0.66),  # same CE as L0.5-H0.1: BLiMP breaks the tie
        "tiny-L0.9-H0.1": (None, 6.00, None),  # finished without an eval set: listed, never ranked
        "tiny-L0.9-H0.9": (math.nan, math.nan, None),  # diverged: ranked last
    }
    for name, (ce, weighted, blimp) in outcomes.items():
        fake_run(root / name, ce, weighted, blimp)
    TermShareLog(root / "tiny-L0.5-H0.9" / TERM_SHARES_FILE, resumed=False).add(0, {"ce": 5.0, "kl": 4.0, "hidden": 1.0})
    TermShareLog(root / "tiny-L0.5-H0.9" / TERM_SHARES_FILE, resumed=True).add(9, {"ce": 4.0, "kl": 4.0, "hidden": 2.0})
    assert main(["summary", str(path), "--finalists", "2", "--set", f"output.root={root}"]) == 0
    out = capsys.readouterr().out
    ranked = [line.split(" | ")[1] for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert ranked == ["tiny-L0.5-H0.9", "tiny-L0.5-H0.1", "tiny-L0.1-H0.9", "tiny-L0.1-H0.1", "tiny-L0.9-H0.9"]
    by_weighted = sorted((w, n) for n, (ce, w, _) in outcomes.items() if ce is not None and not math.isnan(ce))
    assert by_weighted[0][1] == "tiny-L0.1-H0.1" != ranked[0]  # the case the weighted ranking gets wrong
    assert "Finalists (top 2 by dev CE): tiny-L0.5-H0.9, tiny-L0.5-H0.1" in out
    assert "| – | tiny-L0.9-H0.1 | 0.9 | 0.1 | – |" in out and "finished |" in out
    assert "| 5 | tiny-L0.9-H0.9 | 0.9 | 0.9 | nan |" in out
    assert "| 3.2000 | 24.53 | 0.660 | kl 40/40 · hidden 10/20 | 10 | finished |" in out  # shares at steps 0 and 9
    assert "| 3.2000 | 24.53 | 0.640 | – | 10 | finished |" in out  # a point that measured none
    assert "6 points, 6 finished, 0 pending" in out
    assert summary_path(grid, [f"output.root={root}"]).read_text() == out  # written next to the runs as well


def test_summary_names_the_code_versions_of_a_point_resumed_under_changed_code(tmp_path: Path, capsys) -> None:
    path = write_grid(tmp_path / "lr.yaml", {"training.lr": [0.001, 0.003]}, name="lr{lr}", base=LLAMA)
    root = tmp_path / "runs"
    first = {"commit": "b" * 40, "diff_sha256": None, "first_step": 0, "last_step": 4}
    fake_run(root / "lr0.001", 3.2, 3.3, code_versions=[first, {**first, "diff_sha256": "d" * 64, "first_step": 4,
                                                                  "last_step": 10}])
    fake_run(root / "lr0.003", 3.1, 3.2, code_versions=[{**first, "last_step": 10}])
    assert main(["summary", str(path), "--set", f"output.root={root}"]) == 0
    out = capsys.readouterr().out
    assert "\nPoints resumed under changed code:\n" in out
    assert "- lr0.001: trained by 2 code versions: bbbbbbb steps 0–4, bbbbbbb+dirty(dddddddd) steps 4–10\n" in out
    assert "lr0.003:" not in out  # one version: nothing to say


# ----------------------------------------------------------------------------- real tiny runs


@pytest.fixture
def tiny_grid(tiny_config, tiny_teachers, tmp_path: Path) -> tuple[Path, list[str]]:
    """A 2x2 Palenka grid on tiny models, and the `--set` list that shrinks every point."""
    reference = tiny_config(PALENKA, "grid-reference", STUDENT, *teacher_overrides(tiny_teachers), "training.lr=3e-3")
    overrides = [*sections_as_overrides(reference, "model", "data", "training", "distillation"),
                 f"output.root={tmp_path / 'runs'}", "training.max_steps=4", "training.save_steps=2",
                 "data.eval_chunks=8"]
    return write_grid(tmp_path / "tiny.yaml", {"distillation.weights.kl": [0.1, 0.9],
                                               "distillation.weights.hidden": [0.1, 0.9]}), overrides


def sections_as_overrides(config: RunConfig, *sections: str) -> list[str]:
    """`--set` strings that give every point these sections of a (tiny) config."""
    raw = config.to_dict()
    return [f"{section}={yaml.safe_dump(raw[section], default_flow_style=True, width=math.inf).strip()}"
            for section in sections]


def test_grid_points_run_skip_when_finished_resume_when_interrupted(tiny_grid, capsys, caplog) -> None:
    path, overrides = tiny_grid
    grid = load_grid(path, overrides)
    for index in (0, 3):
        assert main(["run", str(path), str(index), "--set", *overrides]) == 0
    capsys.readouterr()
    runs = {i: grid.config(i, overrides) for i in range(4)}
    assert runs[3].distillation.weights.kl == 0.9 and runs[3].model.name == "tiny-llama-student"
    finished = runs[0].output.run_dir
    stamps = {f: (finished / f).stat().st_mtime_ns for f in (PROVENANCE_FILE, "model.safetensors")}

    assert main(["run", str(path), "0", "--set", *overrides]) == 0  # resubmitted: nothing retrained
    assert "already finished" in capsys.readouterr().out
    assert {f: (finished / f).stat().st_mtime_ns for f in stamps} == stamps

    # point 3 as if preempted after its checkpoint at step 2: the requeued task resumes there
    interrupted = runs[3].output.run_dir
    os.remove(interrupted / PROVENANCE_FILE)
    shutil.rmtree(interrupted / "checkpoints" / "checkpoint-4")
    assert read_point(grid.points[3], interrupted).status == "pending (checkpoint 2)"
    saved_config = (interrupted / "run_config.yaml").read_text()
    changed = ["--set", *overrides, "training.lr=1.234e-3"]  # resubmitted with another setting
    assert main(["run", str(path), "3", *changed]) == 2
    assert re.search(r"^error: .* differs from its run_config.yaml at training.lr: .*--allow-config-change",
                     capsys.readouterr().err, re.M)
    assert (interrupted / "run_config.yaml").read_text() == saved_config
    assert not (interrupted / PROVENANCE_FILE).exists()
    with caplog.at_level("INFO", logger="babykd.training"):
        assert main(["run", str(path), "3", *changed, "--allow-config-change"]) == 0
    assert any("resuming from" in r.message and r.message.endswith("checkpoint-2") for r in caplog.records)
    record = json.loads((interrupted / PROVENANCE_FILE).read_text())
    assert record["global_steps"] == 4 and record["config_changes"][0]["step"] == 2
    assert record["config_changes"][0]["changes"]["training.lr"]["to"] == 1.234e-3

    write_results(finished / "eval" / "results.json", {"model": str(finished), "tasks": {
        "blimp_filtered": {"score": 0.5625, "stderr": 0.02, "max_items_per_subtask": 200}}})
    assert main(["summary", str(path), "--set", *overrides]) == 0
    out = capsys.readouterr().out
    dev_ce = {i: json.loads((runs[i].output.run_dir / PROVENANCE_FILE).read_text())["final_metrics"]["eval_loss"]
              for i in (0, 3)}
    results = [read_point(p, runs[p.index].output.run_dir) for p in grid.points]
    assert [r.point.index for r in rank(results)] == sorted((0, 3), key=dev_ce.get)
    shares = r" \| kl \d+/\d+/\d+ · hidden \d+/\d+/\d+ \| "  # measured by the run at steps 0, 2 and 3
    assert re.search(re.escape(f"| {dev_ce[0]:.4f} | {math.exp(dev_ce[0]):.2f} | 0.562*") + shares + r"4 \| finished \|", out)
    assert out.count("| pending |") == 2 and "2 finished, 2 pending" in out


def test_summary_shows_a_point_the_divergence_guard_stopped_and_leaves_it_out_of_the_ranking(
    tiny_config, tmp_path: Path, capsys
) -> None:
    """A diverged point is not "pending" (resubmitted, it diverges again): stopped, with its step and why."""
    path = write_grid(tmp_path / "lr.yaml", {"training.lr": [0.001, 0.003, 0.01, 1e11]}, name="lr{lr}", base=LLAMA)
    reference = tiny_config(LLAMA, "grid-lr-reference", "training.warmup_steps=0", "training.logging_steps=1",
                            "training.max_steps=4", "training.save_steps=2")
    overrides = [*sections_as_overrides(reference, "model", "data", "training"), f"output.root={tmp_path / 'runs'}"]
    grid = load_grid(path, overrides)
    for index, dev_ce in ((0, 3.3), (1, 3.1)):
        fake_run(grid.config(index, overrides).output.run_dir, dev_ce, dev_ce + 0.5)
    assert main(["run", str(path), "3", "--set", *overrides]) == 2  # lr 1e11: the divergence guard stops it
    assert "the weights became NaN/inf at step 2" in capsys.readouterr().err

    assert main(["summary", str(path), "--set", *overrides]) == 0
    out = capsys.readouterr().out
    assert ("| – | lr100000000000 | 100000000000 | – | – | – | – | 2 | "
            "stopped at step 2: the weights became NaN/inf |") in out
    assert "| – | lr0.01 | 0.01 | – | – | – | – | – | pending |" in out
    ranked = [line.split(" | ")[1] for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert ranked == ["lr0.003", "lr0.001"]
    assert "# Grid lr: 4 points, 2 finished, 1 stopped, 1 pending" in out
    assert "\n1 point stopped (diverged): excluded from the ranking\n" in out
    results = [read_point(p, grid.config(p.index, overrides).output.run_dir) for p in grid.points]
    assert [r.point.index for r in rank(results)] == [1, 0]
