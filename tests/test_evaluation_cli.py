"""The evaluation command's reliability (issue 12, items 7 and 8): stale results and damaged checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from babykd.data.tokenizer import train_tokenizer
from babykd.evaluate import main, parse_args
from babykd.evaluation.aoa import parse_args as aoa_args

CORPUS = ["The cat sat on the mat.", "Who did Mary see yesterday?", "Ali is in the bakery."] * 20
PAIRS = [{"sentence_good": "The cat sat on the mat.", "sentence_bad": "The cat sat mat the on."}]
EWOK = [{"Context1": "Ali is in the bakery.", "Target1": "Ali is inside.", "Target2": "Ali is outside."}]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS, vocab_size=300, min_frequency=1, show_progress=False)


def save_model(path: Path, tokenizer, seed: int) -> Path:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    for folder, records in (("blimp_filtered", PAIRS), ("ewok_filtered", EWOK)):
        (tmp_path / "data" / folder).mkdir(parents=True)
        (tmp_path / "data" / folder / "sub.jsonl").write_text(json.dumps(records[0]) + "\n", encoding="utf-8")
    return tmp_path / "data"


def test_results_of_other_weights_are_dropped(tmp_path, tokenizer, data_dir, capsys):
    model = save_model(tmp_path / "m", tokenizer, seed=0)
    common = ["--data-dir", str(data_dir), "--no-progress", "--device", "cpu"]
    first = main([str(model), "--tasks", "blimp_filtered", "ewok_filtered", *common])
    assert len(first["weights_sha256"]) == 64
    again = main([str(model), "--tasks", "ewok_filtered", *common])  # same weights: blimp kept
    assert set(again["tasks"]) == {"blimp_filtered", "ewok_filtered"}
    save_model(model, tokenizer, seed=1)  # retrained into the same folder
    after = main([str(model), "--tasks", "ewok_filtered", *common])
    assert set(after["tasks"]) == {"ewok_filtered"}  # blimp of the old weights is gone
    assert after["weights_sha256"] != first["weights_sha256"]
    assert "dropped blimp_filtered" in capsys.readouterr().err
    on_disk = json.loads((model / "eval" / "results.json").read_text())
    assert set(on_disk["tasks"]) == {"ewok_filtered"}


def one_line_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in capsys.readouterr().err
    return message


def test_missing_tokenizer_is_one_line_naming_the_folder(tmp_path, tokenizer, data_dir, capsys):
    model = save_model(tmp_path / "m", tokenizer, seed=0)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model / name).unlink()
    message = one_line_error(capsys, [str(model), "--data-dir", str(data_dir), "--tasks", "blimp_filtered"])
    assert message.startswith(f"error: {model}: no tokenizer")


def test_truncated_tokenizer_is_one_line_naming_the_file(tmp_path, tokenizer, data_dir, capsys):
    model = save_model(tmp_path / "m", tokenizer, seed=0)
    path = model / "tokenizer.json"
    path.write_bytes(path.read_bytes()[:500])
    argv = [str(model), "--data-dir", str(data_dir), "--tasks", "blimp_filtered"]
    message = one_line_error(capsys, argv)
    assert message.startswith(f"error: {path}: damaged tokenizer file")
    with pytest.raises(SystemExit):
        main(argv + ["--debug"])
    assert "Traceback" in capsys.readouterr().err  # the traceback only with --debug


def test_max_items_has_one_name(tmp_path):
    with pytest.raises(SystemExit, match="--max-items-per-subtask"):
        main([str(tmp_path), "--max-items", "3"])


def test_flat_data_dir_says_to_pass_it_as_a_task(tmp_path, tokenizer):
    flat = tmp_path / "blimp"
    flat.mkdir()
    (flat / "sub.jsonl").write_text(json.dumps(PAIRS[0]) + "\n", encoding="utf-8")
    model = save_model(tmp_path / "m", tokenizer, seed=0)
    with pytest.raises(SystemExit, match=r"--tasks .*blimp"):
        main([str(model), "--data-dir", str(flat), "--tasks", "blimp_filtered", "--no-progress"])


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


@pytest.mark.parametrize("revision", ["../../../x", "a/b", "..", "chck_1M/../../x"])
def test_revision_outside_the_run_is_refused_with_one_line(tmp_path, tokenizer, data_dir, capsys, revision):
    """`--revision` names a folder under MODEL_DIR/revisions: a path there could read and write outside the run."""
    run = save_model(tmp_path / "a" / "run", tokenizer, seed=0)
    save_model(run / "revisions" / "chck_1M", tokenizer, seed=0)
    save_model(tmp_path / "x", tokenizer, seed=1)  # what ../../../x reaches from run/revisions
    before = files_under(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main([str(run), "--revision", revision, "--data-dir", str(data_dir), "--tasks", "blimp_filtered",
              "--no-progress", "--device", "cpu"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("python -m babykd.evaluate: error: --revision") and repr(revision) in err
    assert "chck_" in err  # the accepted forms
    assert files_under(tmp_path) == before


def test_checkpoint_revision_names_are_accepted(tmp_path):
    args = parse_args([str(tmp_path), "--revision", "chck_10M"])
    assert args.model == str(tmp_path / "revisions" / "chck_10M")
    assert args.output == tmp_path / "eval" / "revisions" / "chck_10M" / "results.json"


def test_no_progress_silences_the_libraries_bars_too(tmp_path, tokenizer, data_dir):
    """transformers draws "Loading weights" on its own; --no-progress must hide it (logs of cluster jobs)."""
    model = save_model(tmp_path / "m", tokenizer, seed=0)
    done = subprocess.run(
        [sys.executable, "-m", "babykd.evaluate", str(model), "--data-dir", str(data_dir), "--tasks",
         "blimp_filtered", "--no-progress", "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "blimp_filtered" in done.stdout  # it scored
    for bar in ("Loading weights", "it/s", "%|", "█"):
        assert bar not in done.stderr, done.stderr


@pytest.mark.parametrize("name", ["../x", "chck_1M/../../x", "chck_1000K"])
def test_aoa_revisions_take_revision_names_only(tmp_path, capsys, name):
    """AoA reads MODEL_DIR/revisions/NAME of each name; one checkpoint has one spelling (chck_1M, not chck_1000K)."""
    with pytest.raises(SystemExit) as exc:
        aoa_args([str(tmp_path), "--revisions", "chck_1M", name])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert repr(name) in err and "chck_<N>[K|M]" in err
    assert aoa_args([str(tmp_path), "--revisions", "chck_10M"]).revisions == ["chck_10M"]
