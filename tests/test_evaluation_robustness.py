"""Issue 19, evaluation side: one task that cannot be scored never costs the others; stale scores never shown.

A tiny GPT-2 with a 24-position table stands for every GPT-2 the seeds built (256 positions against
entity-tracking items of up to 430 tokens): the same crash, at test size.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from babykd import REPO_ROOT
from babykd.config import load_model_config
from babykd.data.tokenizer import train_tokenizer
from babykd.evaluate import main
from babykd.evaluation import ranking
from babykd.evaluation.report import collect, write_results
from babykd.evaluation.stats import spearman
from babykd.export import score_lines
from babykd.models import SUITE_LONGEST_INPUT, build_model
from babykd.run.start import StartPlan
from babykd.rules import REVISIONS_DIR
from babykd.training import begin_run

CORPUS = ["The cat sat on the mat.", "Box 0 contains the apple. Box 1 contains nothing.", "Who did Mary see?"] * 20
PAIRS = [
    {"sentence_good": "The cat sat on the mat.", "sentence_bad": "The cat sat mat the on."},
    {"sentence_good": "Who did Mary see?", "sentence_bad": "Who did Mary see?"},  # identical: a tie
]
SHORT = {"numops": 0, "input_prefix": "Box 0 contains ", "options": ["the apple.", "nothing."]}
LONG = {"numops": 1, "input_prefix": "Box 0 contains the apple. " * 6 + "Box 0 contains ", "options": ["the apple.", "nothing."]}
POSITIONS = 24


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gpt2") / "model"
    tokenizer = train_tokenizer(CORPUS, vocab_size=300, min_frequency=1, show_progress=False)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, n_positions=POSITIONS,
                        bos_token_id=1, eos_token_id=2)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    write_jsonl(tmp_path / "legacy" / "blimp_filtered" / "sub.jsonl", PAIRS)
    write_jsonl(tmp_path / "suite" / "full_eval" / "entity_tracking" / "regular.jsonl", [SHORT, LONG])
    write_jsonl(tmp_path / "suite" / "fast_eval" / "blimp_fast" / "sub.jsonl", PAIRS)
    return {"legacy": tmp_path / "legacy", "suite": tmp_path / "suite"}


def fails_in_one_line(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    message = str(exc.value)
    assert message.startswith("error: ") and "\n" not in message
    assert "Traceback" not in capsys.readouterr().err
    return message


def test_gpt2_configs_hold_the_suite_longest_input():
    configs = [p for p in (REPO_ROOT / "config").rglob("*.yaml") if "architecture: gpt2" in p.read_text()]
    assert len(configs) >= 5  # published sizes, tiny (demo, CI), lease
    for path in configs:
        assert load_model_config(path).max_position_embeddings >= SUITE_LONGEST_INPUT, path


def test_a_short_position_table_warns_when_the_model_is_built(caplog):
    cfg = load_model_config(REPO_ROOT / "config/models/tiny-gpt2.yaml")
    with caplog.at_level(logging.WARNING, logger="babykd.models"):
        build_model(cfg)
        assert not caplog.records
        build_model(type(cfg)(**{**cfg.__dict__, "max_position_embeddings": 256}))
    assert "256 positions cannot hold" in caplog.text and "max_position_embeddings" in caplog.text


def test_a_task_longer_than_the_positions_is_its_own_error_and_the_others_are_written(model_dir, data, capsys):
    output = model_dir.parent / "out" / "results.json"
    message = fails_in_one_line([
        str(model_dir), "--tasks", "blimp_filtered", "entity_tracking", "wug_past_tense", "--data-dir", str(data["legacy"]),
        "--suite-data", str(data["suite"]), "--output", str(output), "--no-progress", "--device", "cpu",
    ], capsys)
    # file:line of the longest item, the model's limit, and the data missing for the third task
    assert f"entity_tracking: {data['suite']}/full_eval/entity_tracking/regular.jsonl:2: an input of" in message
    assert f"exceeds the model's {POSITIONS} positions (1 of 2 items do)" in message
    assert "wug_past_tense: task 'wug_past_tense': no full_eval/wug_past_tense/*.jsonl" in message
    written = json.loads(output.read_text())
    assert set(written["tasks"]) == {"blimp_filtered"} and set(written["errors"]) == {"entity_tracking", "wug_past_tense"}
    with pytest.raises(SystemExit):  # again, to read the summary line and the warning
        main([str(model_dir), "--tasks", "blimp_filtered", "entity_tracking", "--data-dir", str(data["legacy"]),
              "--suite-data", str(data["suite"]), "--output", str(output), "--no-progress"])
    out, err = capsys.readouterr()
    assert "| blimp_filtered " in out.replace(": blimp", "| blimp") and "| entity_tracking NOT SCORED" in out
    assert "warning: blimp_filtered: 1 item(s) tie" in err


def test_2024_names_the_file_and_line_of_an_overlong_choice_not_the_sentence(model_dir, data, tmp_path, capsys):
    sentence = " ".join(["the cat sat on the mat"] * 107)  # 642 words
    user = write_jsonl(tmp_path / "long" / "long.jsonl", [PAIRS[0], {"sentence_good": sentence, "sentence_bad": sentence}])
    output = tmp_path / "r.json"
    message = fails_in_one_line([
        str(model_dir), "--protocol", "2024", "--tasks", "blimp_filtered", str(user.parent), "ewok_filtered",
        "--data-dir", str(data["legacy"]), "--output", str(output), "--no-progress",
    ], capsys)
    assert f"long: {user}:2: a choice of" in message and "the cat sat on the mat the cat" not in message
    written = json.loads(output.read_text())  # the missing EWoK folder is an error of its own
    assert set(written["tasks"]) == {"blimp_filtered"} and set(written["errors"]) == {"long", "ewok_filtered"}


def test_revision_output_keeps_predictions_and_submission_beside_it(model_dir, data, tmp_path, capsys):
    revision = model_dir.parent / "run"
    (revision / REVISIONS_DIR).mkdir(parents=True, exist_ok=True)
    if not (revision / REVISIONS_DIR / "chck_1M").exists():
        (revision / REVISIONS_DIR / "chck_1M").symlink_to(model_dir)
    output = tmp_path / "a" / "b" / "out.json"
    main([str(revision), "--fast", "--revision", "chck_1M", "--tasks", "blimp_filtered", "--suite-data", str(data["suite"]),
          "--output", str(output), "--no-progress"])
    written = {p.relative_to(output.parent).as_posix() for p in tmp_path.rglob("*.json") if "suite" not in p.parts}
    assert written == {"out.json", "predictions/chck_1M/blimp.json", "all_full_preds_and_fast_scores_causal.json"}


def test_report_and_model_card_leave_out_scores_of_other_weights(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"weights one")
    results = run / "eval" / "results.json"
    write_results(results, {"model": str(run), "tasks": {"blimp_filtered": {"score": 0.7}}})
    assert len(collect([run])) == 1 and "| blimp_filtered | 0.7000 |" in score_lines(run)
    (run / "model.safetensors").write_bytes(b"weights two")  # retrained into the same folder
    assert collect([run]) == []
    assert "scored on other weights" in capsys.readouterr().err
    assert any("not scored on these weights" in line for line in score_lines(run)) and not any("0.7000" in line for line in score_lines(run))


def test_a_fresh_start_drops_the_scores_of_the_revisions_it_deletes(tiny_config, tmp_path):
    config = tiny_config(REPO_ROOT / "config/runs/tiny/pretrain-tiny-llama.yaml", "fresh-eval")
    run_dir = config.output.run_dir
    kept = write_jsonl(run_dir / "eval" / "predictions" / "main" / "blimp.json", [{}])
    stale = [write_jsonl(run_dir / "eval" / REVISIONS_DIR / "chck_1M" / "results.json", [{}]),
             write_jsonl(run_dir / "eval" / "predictions" / "chck_1M" / "blimp.json", [{}])]
    begin_run(config, run_dir, StartPlan(None))
    assert kept.is_file() and not any(p.exists() for p in stale)


def test_wug_preferences_tie_near_one_as_in_float32():
    """The pipeline's float32 softmax: 1 - 2e-9 and 1 - 1e-11 are both 1.0, and Spearman averages their ranks."""
    items = [ranking.Candidates(f"u{i}", ("a", "b"), ("a", "b"), {"ratio": r}) for i, r in enumerate((0.9, 0.1, 0.5))]
    scores = [np.array([0.0, -20.0]), np.array([0.0, -25.0]), np.array([0.0, 0.0])]
    rho, prefs = ranking.wug_correlation(items, scores)
    assert prefs == [1.0, 1.0, 0.5]
    assert rho == pytest.approx(spearman(np.array([1.0, 1.0, 0.5]), np.array([0.9, 0.1, 0.5])), abs=1e-15)
    assert rho != pytest.approx(spearman(np.array([2.0, 3.0, 1.0]), np.array([0.9, 0.1, 0.5])), abs=1e-6)
