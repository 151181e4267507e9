"""CPU smoke of benchmarks/bench_training.py: it runs on the tiny configs, prints JSON lines, appends results.

The speed figures of a CPU run at tiny shapes mean little; what is checked is
that every scenario runs in both modes, that both modes compute the same loss
on the first batch (the benchmark's own equality check, fp32 on CPU), that the
chunked KL needs less memory than the published form, and the FLOP convention.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from babykd import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "bench_training.py"
TRAINING = ("babyllama", "dskd", "pretrain-gpt2-705m", "pretrain-llama-360m")


def load_benchmark() -> ModuleType:
    """The script as a module (registered first: its dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location("bench_training", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path]:
    results = tmp_path_factory.mktemp("bench") / "training.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # one thread: the box is shared
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--shapes", "tiny", "--steps", "2", "--warmup", "1",
         "--results", str(results)],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = [json.loads(line) for line in completed.stdout.splitlines()]  # every stdout line is JSON
    return lines, results


def test_every_scenario_runs_in_both_modes_with_cpu_figures(smoke_run: tuple[list[dict], Path]) -> None:
    lines, _ = smoke_run
    env, records = lines[0]["env"], lines[1:]
    assert env["device"].startswith("CPU") and env["peak_bf16_tflops"] is None
    assert {"torch", "transformers"} <= set(env["versions"]) and env["date"]
    for scenario in (*TRAINING, "loss-kl", "loss-ce"):
        modes = {r["mode"]: r for r in records if r["scenario"] == scenario}
        assert set(modes) == {"reference", "ours", "ours/reference"}, (scenario, modes)
        for mode in ("reference", "ours"):
            record = modes[mode]
            assert "error" not in record, record
            assert record["device"].startswith("CPU") and record["tokens_per_s"] > 0
            assert record["mfu"] is None  # no GPU peak applies on a CPU
            if scenario in TRAINING:
                assert record["tflops"] > 0 and record["precision"] == "fp32"
                assert record["steps"] == 2 and record["batch_size"] == 4 and record["seq_length"] == 32
        assert modes["ours/reference"]["speedup"] > 0


def test_both_modes_compute_the_same_first_batch_loss(smoke_run: tuple[list[dict], Path]) -> None:
    lines, _ = smoke_run
    comparisons = {r["scenario"]: r for r in lines[1:] if r["mode"] == "ours/reference"}
    for scenario, record in comparisons.items():
        assert record["loss_match"] is True, record
    assert comparisons["babyllama"]["loss_keys"] == ["loss", "loss_ce", "loss_kl"]
    assert comparisons["dskd"]["loss_keys"] == ["loss", "loss_ce", "loss_hidden", "loss_kl"]
    for scenario in ("loss-kl", "loss-ce"):
        assert comparisons[scenario]["grad_max_abs_diff"] <= 1e-4 * comparisons[scenario]["grad_max_abs"]


def test_chunked_kl_needs_less_memory_than_the_published_form(smoke_run: tuple[list[dict], Path]) -> None:
    lines, _ = smoke_run
    kl = {r["mode"]: r for r in lines[1:] if r["scenario"] == "loss-kl"}
    if kl["reference"]["peak_mem_increase_gb"] is None:
        pytest.skip("peak RSS is not measurable here (needs glibc and Linux /proc)")
    # Reference: several fp32 [1024, 16000] tensors (65 MB each) live at once; ours: one gradient buffer.
    assert kl["ours"]["peak_mem_increase_gb"] < 0.6 * kl["reference"]["peak_mem_increase_gb"]


def test_results_file_gets_every_printed_record_with_its_environment(smoke_run: tuple[list[dict], Path]) -> None:
    lines, results = smoke_run
    appended = [json.loads(line) for line in results.read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "env"} for r in appended] == lines[1:]
    assert all(r["env"] == lines[0]["env"] for r in appended)


def test_mode_and_scenario_names_are_checked() -> None:
    bench = load_benchmark()
    assert bench.parse_args(["--modes", "reference,ours+compile"]).modes == ["reference", "ours+compile"]
    for bad in (["--modes", "ours+nosync"], ["--modes", "ours+turbo"], ["--modes", "reference+compile"],
                ["--scenarios", "babyllma"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_peak_table_and_flop_convention_reproduce_the_issue_figures() -> None:
    """7.8% MFU at 32.8k tokens/s (distillation) and 19.3% at 46.7k (GPT2-705M) on an H100 SXM."""
    bench = load_benchmark()
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", None) == 989.0
    assert bench.peak_tflops("NVIDIA H100 PCIe", None) == 756.0
    assert bench.peak_tflops("NVIDIA A100-SXM4-80GB", None) == 312.0
    assert bench.peak_tflops("Tesla T4", None) is None and bench.peak_tflops("Tesla T4", 65.0) == 65.0
    from babykd.config import load_model_config
    from babykd.models import build_model

    with torch.device("meta"):
        n = {
            name: bench.matmul_parameters(build_model(load_model_config(REPO_ROOT / f"config/models/{name}.yaml")))
            for name in ("Llama-58M", "Llama-360M", "GPT2-705M")
        }
    distill = (6 * n["Llama-58M"] + 2 * (n["Llama-360M"] + n["GPT2-705M"])) * 32.8e3 / 989e12
    pretrain = 6 * n["GPT2-705M"] * 46.7e3 / 989e12
    assert round(distill, 3) == 0.078 and round(pretrain, 3) == 0.193


def test_each_comparison_is_printed_as_soon_as_both_sides_exist(smoke_run: tuple[list[dict], Path]) -> None:
    """A stage killed at its limit keeps every ratio measured so far: none waits for the scenario's end."""
    lines, _ = smoke_run
    modes = [line.get("mode") for line in lines if line.get("scenario") == "babyllama"]
    assert modes[:3] == ["reference", "ours", "ours/reference"]


def test_ours_is_the_trainer_users_run(tmp_path: Path) -> None:
    """The collator, words-seen ledger, divergence guard, preemption check and TensorBoard of `run_training`."""
    from babykd.data.collator import FixedChunkCollator
    from babykd.run.divergence import DivergenceGuard
    from babykd.run.preemption import PreemptionCallback
    from transformers.integrations import TensorBoardCallback

    bench = load_benchmark()
    options = bench.parse_args(["--steps", "1", "--warmup", "1"])
    scenario = bench.TRAINING_SCENARIOS["babyllama"]
    config = bench.scenario_config(scenario, "tiny", options, tmp_path)
    proto = bench.build_prototypes(config, scenario, "tiny", 0, "cpu")
    dataset = bench.RandomTokens(4, 32, config.model.vocab_size, 0)
    trainer = bench.ours_trainer(config, proto, dataset, tmp_path / "ours", [], None, [])
    assert isinstance(trainer.data_collator, FixedChunkCollator) and trainer.words_seen is not None
    kinds = {type(callback) for callback in trainer.callback_handler.callbacks}
    assert {DivergenceGuard, PreemptionCallback, TensorBoardCallback} <= kinds
