"""The GPU path, checked against the CPU: run by `pytest -m gpu` inside the GPU lease kit.

Nothing else in the suite runs on a GPU, and a GPU comes only as a short lease,
so these tests compare what CUDA computes with what the fp32 CPU path (the one
CI tests) computes on the same batch, in one process:

* one bf16 training step of pretraining and of every distillation recipe:
  finite, and the first-batch loss, each loss term and the gradient norm close
  to the fp32 CPU step's;
* KD and DSKD interrupted by a signal and resumed on CUDA end bit-identical to
  the uninterrupted run;
* the evaluator's per-item decisions in fp32 on CUDA equal the CPU's on 2,000
  BLiMP/supplement/EWoK items;
* the offline teacher cache built on CUDA equals the one built on the CPU;
* steps of pretraining and of every recipe make no host-device sync (CUDA's sync
  debug mode set to "error" outside logging and saving steps).

Tests run cheapest first, so a run stopped at the kit's time limit still has
the distinct checks; the per-recipe steps come last.

Without a GPU every test here is skipped, except when
``BABYKD_GPU_TEST_DEVICE=cpu`` is set: then "the GPU" is the CPU and the same
comparisons run CPU against CPU. That proves nothing about CUDA; it is how the
kit's CPU smoke (`tests/test_gpu_lease.py`) keeps this file from rotting.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from babykd.training import is_finished, run_training
from conftest import shared_or_skip
from test_distillation import RECIPES, recipe_config
from test_training import LLAMA, SignalAtStep

DEVICE = os.environ.get("BABYKD_GPU_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else None)
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE is None, reason="needs a CUDA GPU (BABYKD_GPU_TEST_DEVICE=cpu runs the CPU smoke)"),
]
#: bf16 autocast against fp32: the logits differ by bf16 rounding (~0.4% relative), the terms a little more.
RTOL, ATOL = 2e-2, 1e-3
#: The gradient norm sums every parameter's bf16-rounded gradient: a looser bound.
GRAD_RTOL = 5e-2
EVAL_ITEMS = 2000


@contextlib.contextmanager
def on_cpu() -> Iterator[None]:
    """Run the project's own device choice as it is made on a machine without CUDA (fp32, CPU)."""
    saved = torch.cuda.is_available
    torch.cuda.is_available = lambda: False  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.cuda.is_available = saved  # type: ignore[assignment]


@contextlib.contextmanager
def device_context(device: str) -> Iterator[None]:
    with on_cpu() if device == "cpu" else contextlib.nullcontext():
        yield


def first_step(make_config: Any, device: str, tag: str) -> dict[str, float]:
    """The first logged step (before any update) of a one-step run: loss, each term, gradient norm."""
    config = make_config(tag)
    with device_context(device):
        result = run_training(config)
    entry = next(e for e in result.history if "loss" in e)
    return {k: float(v) for k, v in entry.items() if k in {"loss", "grad_norm"} or k.startswith("loss_")}


def assert_close_steps(gpu: dict[str, float], cpu: dict[str, float]) -> None:
    assert set(gpu) == set(cpu), (gpu, cpu)
    for key, expected in cpu.items():
        value = gpu[key]
        rtol = GRAD_RTOL if key == "grad_norm" else RTOL
        assert math.isfinite(value), f"{key} is {value} on {DEVICE}"
        assert abs(value - expected) <= rtol * abs(expected) + ATOL, f"{key}: {DEVICE} {value} vs CPU fp32 {expected}"


def test_bf16_pretraining_step_matches_fp32_cpu(tiny_config) -> None:
    def make(tag: str) -> Any:
        return tiny_config(LLAMA, f"gpu-pretrain-{tag}", "training.max_steps=1")

    assert_close_steps(first_step(make, DEVICE, "device"), first_step(make, "cpu", "cpu"))


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """fp32 matmuls without TF32 (training turns TF32 on process-wide; a fresh `babykd.evaluate` has it off)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_evaluator_decisions_equal_on_device_and_cpu(tiny_teachers) -> None:
    from babykd.evaluation.scorer import score_items
    from babykd.evaluation.tasks import DEFAULT_TASKS, load_tasks

    data = shared_or_skip("evaluation_data")
    tasks = load_tasks(DEFAULT_TASKS, data, max_items_per_subtask=EVAL_ITEMS // 80)
    items = [item for task in tasks for sub in task.subtasks for item in sub.items]
    assert len(items) >= EVAL_ITEMS, f"only {len(items)} items in {data}"
    items = items[:EVAL_ITEMS]
    model = AutoModelForCausalLM.from_pretrained(tiny_teachers[0], dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_teachers[0])
    cpu = score_items(model, tokenizer, items, progress=False)
    with exact_fp32():
        device = score_items(model.to(DEVICE), tokenizer, items, progress=False)
    margin = cpu[:, 0] - cpu[:, 1]
    flipped = ((cpu[:, 0] >= cpu[:, 1]) != (device[:, 0] >= device[:, 1])) & (np.abs(margin) > 1e-4)
    assert not flipped.any(), f"{int(flipped.sum())} of {len(items)} decisions differ (not near-ties)"
    assert np.abs(cpu - device).max() < 1e-3


def test_teacher_cache_built_on_device_equals_cpu(tiny_config, tiny_teachers, tmp_path: Path) -> None:
    from babykd.teacher_cache import build_teacher_cache
    from babykd.teachers import load_teachers
    from babykd.training import load_data

    recipe = Path("config/runs/distill/BabyLlama1-58M-strict.yaml")
    config = recipe_config(tiny_config, recipe, "gpu-cache", tiny_teachers, "distillation.teacher_cache_top_k=16")
    data = load_data(config)
    caches = {}
    for device in ("cpu", DEVICE):
        teachers = [t.to(device).eval() for t in load_teachers(config.distillation, data.tokenizer, config.data.seq_length)]
        with exact_fp32():
            caches[device] = build_teacher_cache(tmp_path / device, data.train_dataset, teachers,
                                                 config.distillation, "test", progress=False)
    cpu, device = caches["cpu"], caches[DEVICE]
    same_ids = np.asarray(cpu.ids) == np.asarray(device.ids)
    assert same_ids.mean() > 0.999, f"top-k ids agree on {same_ids.mean():.4%} of slots"
    # where ids differ, the two tokens were tied to within rounding
    diff = np.abs(np.asarray(cpu.log_probs, dtype=np.float32) - np.asarray(device.log_probs, dtype=np.float32))
    assert diff[same_ids].max() <= 2e-3 and (diff[~same_ids].max() if (~same_ids).any() else 0.0) <= 1e-2
    assert cpu.meta["top_k_mass"] == pytest.approx(device.meta["top_k_mass"], abs=1e-4)


class SyncDebugWindow(TrainerCallback):
    """CUDA's sync debug mode "error" from the end of step `first` to the end of step `last`.

    Steps in between neither log nor save (logging at steps 1 and 5): any host-device sync
    there raises, naming the op. The dispatch counter of tests/test_step_syncs.py checks the
    same on the CPU; this sees what only CUDA does (blocking copies, a non-fused optimizer).
    """

    def __init__(self, first: int = 2, last: int = 4) -> None:
        self.first, self.last = first, last

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.first:
            torch.cuda.set_sync_debug_mode("error")
        elif state.global_step == self.last:
            torch.cuda.set_sync_debug_mode("default")


SYNC_STEPS = ("training.max_steps=5", "training.logging_steps=5", "training.save_steps=1000")


@pytest.mark.skipif(DEVICE == "cpu", reason="CUDA's sync debug mode (tests/test_step_syncs.py counts on the CPU)")
@pytest.mark.parametrize("recipe", [*RECIPES, Path(LLAMA)], ids=lambda p: p.stem)
def test_training_steps_make_no_host_device_sync(tiny_config, tiny_teachers, recipe: Path) -> None:
    if "distill" in str(recipe):
        config = recipe_config(tiny_config, recipe, f"gpu-syncs-{recipe.stem}", tiny_teachers, *SYNC_STEPS)
    else:
        config = tiny_config(recipe, "gpu-syncs-pretrain", *SYNC_STEPS)
    try:
        run_training(config, callbacks=[SyncDebugWindow()])
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model.safetensors"))


@pytest.mark.parametrize("recipe", ["BabyLlama1-58M-strict", "PalenkaLlama1-58M-strict-L0.1-H0.5"])
def test_kd_and_dskd_resume_bit_exact(tiny_config, tiny_teachers, recipe: str) -> None:
    path = Path(f"config/runs/distill/{recipe}.yaml")
    overrides = ("training.max_steps=6", "training.save_steps=3", "data.random_offset=true")

    def config(name: str) -> Any:
        return recipe_config(tiny_config, path, f"gpu-resume-{recipe}-{name}", tiny_teachers, *overrides)

    reference = run_training(config("uninterrupted"))
    interrupted = config("interrupted")
    assert run_training(interrupted, callbacks=[SignalAtStep(3)]).preempted
    resumed = run_training(interrupted, resume=True)
    assert is_finished(resumed.run_dir)
    expected, actual = _weights(reference.run_dir), _weights(resumed.run_dir)
    differing = [k for k in expected if not torch.equal(expected[k], actual[k])]
    if differing:  # say whether resuming is at fault or the device is not deterministic at all
        again = _weights(run_training(config("uninterrupted-again")).run_dir)
        nondeterministic = [k for k in expected if not torch.equal(expected[k], again[k])]
        pytest.fail(f"{len(differing)} tensors differ after resume (e.g. {differing[0]}); two uninterrupted runs "
                    f"differ in {len(nondeterministic)} tensors" + (" (the device is not deterministic)"
                                                                   if nondeterministic else ""))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_bf16_distillation_step_matches_fp32_cpu(tiny_config, tiny_teachers, recipe: Path) -> None:
    def make(tag: str) -> Any:
        return recipe_config(tiny_config, recipe, f"gpu-{recipe.stem}-{tag}", tiny_teachers, "training.max_steps=1")

    gpu, cpu = first_step(make, DEVICE, "device"), first_step(make, "cpu", "cpu")
    assert any(key.startswith("loss_") and key != "loss_ce" for key in cpu), f"{recipe.stem}: no distillation term"
    assert_close_steps(gpu, cpu)
