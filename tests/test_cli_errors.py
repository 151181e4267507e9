"""Data and I/O errors read like config errors: one line naming the path and the cause;
the traceback only with --debug."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from babykd.cli import train_main
from babykd.config import RunConfig
from babykd.data.corpus import CorpusError
from babykd.data.tokenizer import save_tokenizer, train_tokenizer
from babykd.training import is_finished
from test_atomic import file_size_limit
from test_data_corpus import CORRUPTIBLE, deflated_zip

LLAMA = "config/runs/tiny/pretrain-tiny-llama.yaml"


def train_command(config: RunConfig, tmp_path: Path, *flags: str) -> str:
    """Run `train.py CONFIG FLAGS` in-process; the one-line message it exits with."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    with pytest.raises(SystemExit) as exited:
        train_main([str(path), *flags], "test")
    message = str(exited.value.code)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_truncated_corpus_zip_is_one_line_and_debug_shows_the_traceback(tiny_config, tmp_path: Path) -> None:
    data = deflated_zip(tmp_path / "whole.zip", CORRUPTIBLE)
    (tmp_path / "babylm.zip").write_bytes(data[: len(data) // 2])
    config = tiny_config(LLAMA, "bad-zip", f"data.corpus={tmp_path / 'babylm.zip'}")
    message = train_command(config, tmp_path)
    assert message.startswith(f"error: {tmp_path / 'babylm.zip'}: corrupt or truncated zip (zipfile.BadZipFile")
    with pytest.raises(CorpusError):
        train_main([str(tmp_path / "run.yaml"), "--debug"], "test")


def test_truncated_tokenizer_json_names_the_folder(tiny_config, tmp_path: Path) -> None:
    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer = train_tokenizer(["the dog runs", "a cat sits"] * 20, vocab_size=300, show_progress=False)
    save_tokenizer(tokenizer, tokenizer_dir)
    whole = (tokenizer_dir / "tokenizer.json").read_text()
    (tokenizer_dir / "tokenizer.json").write_text(whole[: len(whole) // 2])  # a copy that was cut short
    config = tiny_config(LLAMA, "bad-tokenizer", f"data.tokenizer_dir={tokenizer_dir}",
                         f"data.cache_dir={tmp_path / 'c'}")
    message = train_command(config, tmp_path)
    assert message.startswith(f"error: {tokenizer_dir}: the saved tokenizer cannot be loaded (JSONDecodeError")


def test_disk_full_while_saving_a_checkpoint_names_the_run_folder(tiny_config, tiny_teachers, tmp_path: Path) -> None:
    # the tokenizer and caches exist (tiny_teachers built them); the first file over 256 kB is the checkpoint
    config = tiny_config(LLAMA, "disk-full", "training.max_steps=2", "training.save_steps=1")
    with file_size_limit(256 * 1024):
        message = train_command(config, tmp_path)
    assert message.startswith(f"error: {config.output.run_dir}: writing failed with ")
    assert "File too large" in message
    assert not is_finished(config.output.run_dir)


def test_a_start_over_a_finished_run_names_resume_and_fresh(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(LLAMA, "finished-before")
    config.output.run_dir.mkdir(parents=True)
    (config.output.run_dir / "provenance.json").write_text("{}")
    assert train_command(config, tmp_path) == (
        f"error: {config.output.run_dir} holds a finished run: add --resume to continue it, or --fresh to delete it "
        "and start over (--debug shows the traceback)"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for a machine without a CUDA GPU")
def test_bf16_without_a_gpu_is_a_one_line_config_error(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(LLAMA, "bf16-on-cpu", "training.precision=bf16")
    assert train_command(config, tmp_path).startswith("config error: training.precision=bf16 needs a CUDA GPU")
    assert not (config.output.run_dir / "run_config.yaml").exists()


def test_evaluation_data_missing_at_training_start_is_one_line(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(LLAMA, "no-eval-data", "evaluation.tasks=[blimp_filtered]", f"evaluation.data_dir={tmp_path}")
    assert train_command(config, tmp_path).startswith("error: ")
    assert not (config.output.run_dir / "run_config.yaml").exists()
