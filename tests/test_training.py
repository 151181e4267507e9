"""Pretraining on CPU: the loss falls, checkpoints load with the Auto classes, runs are
deterministic, and a run stopped by a signal resumes to the same final weights."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from babykd.training import is_finished, run_training
from babykd.run.checkpoints import COMPLETE_MARKER, last_complete_checkpoint

LLAMA = "config/runs/tiny/pretrain-tiny-llama.yaml"


def losses_logged(history: list[dict[str, Any]]) -> list[float]:
    return [entry["loss"] for entry in history if "loss" in entry]


def test_tiny_pretraining_learns_and_saves_standard_checkpoint(tiny_config, tiny_teachers) -> None:
    run_dir = tiny_teachers[0]
    state = json.loads((run_dir / "provenance.json").read_text())
    assert state["global_steps"] == 30 and state["git_commit"] and state["versions"]["torch"]
    assert is_finished(run_dir)
    # the loss of the first logged step vs the last one (the closing note quotes these)
    config = tiny_config(LLAMA, "loss-curve")
    result = run_training(config)
    curve = losses_logged(result.history)
    print(f"tiny pretraining loss: first {curve[0]:.3f} -> last {curve[-1]:.3f}")
    assert curve[-1] < curve[0] - 1.0
    assert result.metrics["eval_loss"] < curve[0]

    model = AutoModelForCausalLM.from_pretrained(result.run_dir)
    tokenizer = AutoTokenizer.from_pretrained(result.run_dir)
    assert (result.run_dir / "model.safetensors").is_file()
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    ids = tokenizer("the dog", return_tensors="pt").input_ids
    assert model(ids).logits.shape[-1] == model.config.vocab_size
    assert (result.run_dir / "run_config.yaml").is_file()
    assert any((result.run_dir / "logs").iterdir()), "TensorBoard events expected"
    assert not (result.run_dir / "checkpoints" / "runs").exists(), "final eval metrics belong in logs/ too"


def test_same_seed_gives_identical_weights(tiny_config) -> None:
    weights = []
    for name in ("det-a", "det-b"):
        result = run_training(tiny_config(LLAMA, name, "training.max_steps=8"))
        weights.append(load_file(str(result.run_dir / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


class SignalAtStep(TrainerCallback):
    """Send ourselves SIGUSR1 (what SLURM sends before a time limit) at a given step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - HF callback signature
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGUSR1)


class SlowStep(TrainerCallback):
    """Make one step take a second, so a segment's share of the wall time is recognisable."""

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - HF callback signature
        if state.global_step == 2:
            time.sleep(1.0)


def test_signal_saves_checkpoint_and_resume_reproduces_uninterrupted_run(tiny_config) -> None:
    overrides = ("training.max_steps=12", "data.random_offset=true")
    reference = run_training(tiny_config(LLAMA, "uninterrupted", *overrides))

    config = tiny_config(LLAMA, "interrupted", *overrides)
    stopped = run_training(config, callbacks=[SlowStep(), SignalAtStep(5)])
    assert stopped.preempted and not is_finished(stopped.run_dir)
    checkpoint = last_complete_checkpoint(stopped.run_dir / "checkpoints")
    assert checkpoint is not None and checkpoint.endswith("checkpoint-5")

    # an incomplete (killed mid-save) newer checkpoint is ignored on resume
    broken = stopped.run_dir / "checkpoints" / "checkpoint-9"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"truncated")
    assert not (broken / COMPLETE_MARKER).exists()

    first_segment = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    first_segment_s = first_segment["stateful_callbacks"]["TrainingClock"]["args"]["previous_s"]
    assert 1.0 < first_segment_s <= stopped.wall_time_s

    resumed = run_training(config, resume=True)
    assert not resumed.preempted and is_finished(resumed.run_dir)
    # the reported training time covers both segments, not only the last one
    assert resumed.wall_time_s > first_segment_s
    provenance_s = json.loads((resumed.run_dir / "provenance.json").read_text())["wall_time_s"]
    assert provenance_s == pytest.approx(resumed.wall_time_s, abs=0.01)
    expected = load_file(str(reference.run_dir / "model.safetensors"))
    actual = load_file(str(resumed.run_dir / "model.safetensors"))
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_tokenizer_larger_than_model_vocab_is_an_error(tiny_config) -> None:
    with pytest.raises(ValueError, match="tokenizer has .* tokens but model.vocab_size is 500"):
        run_training(tiny_config(LLAMA, "small-vocab", "model.vocab_size=500", "data.vocab_size=500"))


def test_evaluation_section_scores_minimal_pairs_during_training(tiny_config, demo_corpus) -> None:
    config = tiny_config(
        LLAMA, "with-eval", "training.max_steps=6",
        f"evaluation={{tasks: [{demo_corpus.pairs_dir}], every_n_steps: 3, each_epoch: false, max_items_per_subtask: 10}}",
    )
    result = run_training(config)
    scored = [entry for entry in result.history if "eval_demo_pairs" in entry]
    assert [entry["step"] for entry in scored] == [3, 6]
    assert all(0.0 <= entry["eval_demo_pairs"] <= 1.0 for entry in scored)


def test_resume_from_the_final_checkpoint_trains_no_extra_step(tiny_config) -> None:
    """A job killed after its last checkpoint but before the final save resumes to exactly that checkpoint."""
    config = tiny_config(LLAMA, "killed-after-last-checkpoint", "training.max_steps=6", "training.save_steps=3")
    first = run_training(config)
    final = load_file(str(first.run_dir / "model.safetensors"))
    (first.run_dir / "provenance.json").unlink()  # as if killed between the last checkpoint and the end
    (first.run_dir / "model.safetensors").unlink()
    assert last_complete_checkpoint(first.run_dir / "checkpoints").endswith("checkpoint-6")

    resumed = run_training(config, resume=True)
    state = json.loads((resumed.run_dir / "provenance.json").read_text())
    assert state["global_steps"] == 6
    actual = load_file(str(resumed.run_dir / "model.safetensors"))
    for key in final:
        assert torch.equal(final[key], actual[key]), key
