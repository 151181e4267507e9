"""The built-in demo end to end (`python -m babykd.demo --fast`): every stage, above-chance results, reruns."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Sequence

import pytest
from transformers import AutoModelForCausalLM

from babykd.demo import DEMO_RUNS, PRESETS, REAL_RUNS, main
from babykd.rules import revision_name, scaled_schedule
from babykd.run.words_seen import saved_revisions
from tests.conftest import shared_or_skip

#: 500 generated pairs (5 phenomena x 100): at chance (0.5) the standard error is about 0.022.
ABOVE_CHANCE = 0.58


def run_demo(args: Sequence[str]) -> str:
    """Run the demo's command line in-process; returns what it printed (asserts it succeeded)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(list(args)) == 0
    return buffer.getvalue()


def scores(out: Path, task: str) -> dict[str, float]:
    """Each demo model's mean accuracy on `task`, from the results files the demo wrote."""
    found = {}
    for name in DEMO_RUNS:
        record = json.loads((out / "models" / name / "eval" / "results.json").read_text(encoding="utf-8"))
        found[name] = record["tasks"][task]["score"]
    return found


@pytest.fixture(scope="module")
def fast_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The --fast demo, run once for the module: its output directory and what it printed."""
    out = tmp_path_factory.mktemp("demo") / "out"
    return out, run_demo(["--fast", "--out", str(out)])


def test_demo_trains_every_model_above_chance(fast_demo: tuple[Path, str]) -> None:
    out, printed = fast_demo
    accuracy = scores(out, "demo_pairs")
    assert set(accuracy) == {"teacher-gpt2", "teacher-llama", "student-kd", "student-dskd"}
    assert all(value > ABOVE_CHANCE for value in accuracy.values()), accuracy
    for name in DEMO_RUNS:  # standard HF checkpoints
        model = AutoModelForCausalLM.from_pretrained(out / "models" / name)
        assert model.config.model_type == ("gpt2" if name == "teacher-gpt2" else "llama")
    table = (out / "results.md").read_text(encoding="utf-8")
    assert all(f"| {name} |" in table for name in DEMO_RUNS)
    assert "sv_agreement_relative_clause" in table and "demo_pairs (mean)" in table
    assert table in printed
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "results.csv").read_text(encoding="utf-8").splitlines()) == 1 + len(DEMO_RUNS)
    assert printed.count("Once upon a time") == 2  # the sampled continuations


def test_students_are_smaller_than_their_teachers(fast_demo: tuple[Path, str]) -> None:
    out, _ = fast_demo
    size = {name: AutoModelForCausalLM.from_pretrained(out / "models" / name).num_parameters() for name in DEMO_RUNS}
    assert max(size["student-kd"], size["student-dskd"]) < min(size["teacher-gpt2"], size["teacher-llama"])


def test_students_save_revisions_at_the_word_schedule_scaled_to_the_corpus(fast_demo: tuple[Path, str]) -> None:
    out, _ = fast_demo
    marks = scaled_schedule(PRESETS["fast"].train_words)  # 100k words: chck_10K ... chck_100K, chck_200K ...
    for name in ("student-kd", "student-dskd"):
        record = json.loads((out / "models" / name / "provenance.json").read_text(encoding="utf-8"))
        expected = [revision_name(m) for m in marks if m <= record["words_seen"]]
        assert len(expected) >= 10
        assert [p.name for p in saved_revisions(out / "models" / name)] == expected
        assert record["lineage_words_seen"] > record["words_seen"]
    assert saved_revisions(out / "models" / "teacher-gpt2") == []


def test_rerun_skips_finished_stages_and_adds_official_tasks(fast_demo: tuple[Path, str]) -> None:
    out, _ = fast_demo
    eval_data = shared_or_skip("evaluation_data")
    printed = run_demo(["--fast", "--out", str(out), "--eval-data", str(eval_data), "--max-items", "1"])
    assert printed.count("skipped") == 1 + len(DEMO_RUNS)  # the corpus and every training run
    assert "blimp_filtered" in (out / "results.md").read_text(encoding="utf-8")
    record = json.loads((out / "models" / "student-kd" / "eval" / "results.json").read_text(encoding="utf-8"))
    assert {"demo_pairs", "blimp_filtered", "blimp_supplement", "ewok_filtered"} <= set(record["tasks"])
    assert record["tasks"]["blimp_filtered"]["max_items_per_subtask"] == 1
    again = run_demo(["--fast", "--out", str(out), "--eval-data", str(eval_data), "--max-items", "1"])
    assert again.count("scored earlier") == len(DEMO_RUNS)


def test_another_size_into_the_same_output_is_refused(fast_demo: tuple[Path, str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = fast_demo
    with pytest.raises(SystemExit) as exited:
        main(["--out", str(out)])  # the default size over the --fast corpus
    assert exited.value.code == 2
    assert "use another --out" in capsys.readouterr().err


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    printed = run_demo(["--dry-run", "--out", str(tmp_path / "out")])
    assert [line.split()[2].rstrip(":") for line in printed.splitlines() if line.startswith("stage train")] \
        == list(DEMO_RUNS)
    assert "lr: 0.003" in printed and "max_steps: 800" in printed
    assert not (tmp_path / "out").exists()


def test_real_dry_run_plans_the_published_recipe_on_the_shared_corpus(tmp_path: Path) -> None:
    corpus = shared_or_skip("corpus", "substitute_10M.zip")
    eval_data = shared_or_skip("evaluation_data")
    printed = run_demo(["--real", str(corpus), "--eval-data", str(eval_data), "--dry-run", "--out", str(tmp_path)])
    trained = [line.split()[2].rstrip(":") for line in printed.splitlines() if line.startswith("stage train")]
    assert trained == [Path(run).name for run in REAL_RUNS]
    assert "vocab_size: 16000" in printed and "seq_length: 128" in printed
    assert "blimp_filtered" in printed and "ewok_filtered" in printed


def test_eval_data_without_tasks_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--dry-run", "--out", str(tmp_path / "out"), "--eval-data", str(tmp_path)])
    assert exited.value.code == 2
    assert "blimp_filtered/" in capsys.readouterr().err
