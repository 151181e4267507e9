"""Shared fixtures: a small generated corpus, a shared tokenizer, tiny run configs, tiny teachers.

Everything is built once per test session on the CPU, from data the project
generates itself (no downloads), so the suite runs on a clean machine.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest

from babykd import REPO_ROOT  # before torch: sets the OpenMP wait policy torch's libgomp reads on load
import torch  # noqa: E402,I001

from babykd.config import RunConfig, load_run_config
from babykd.data.grammar import DemoCorpus, generate_demo_corpus

SHARED = Path(os.environ.get("BABYKD_SHARED", REPO_ROOT.parent / "shared"))
# Encoded evaluation requests are cached on disk (babykd.evaluation.request_cache): a folder of this session's, never ~/.cache.
os.environ.setdefault("BABYKD_EVAL_CACHE", tempfile.mkdtemp(prefix="babykd-eval-requests-"))

# Tests share 2 cores; more threads than the cores this process may use only adds contention.
torch.set_num_threads(min(2, len(os.sched_getaffinity(0))))


def shared_or_skip(*parts: str) -> Path:
    """A path under ../shared, or skip the test with a clear message."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared not found: {path} (set BABYKD_SHARED to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory: pytest.TempPathFactory) -> DemoCorpus:
    """A small corpus from the project's own grammar (BabyLM 2024 layout) plus minimal pairs."""
    return generate_demo_corpus(
        tmp_path_factory.mktemp("demo"), train_words=30_000, dev_words=5_000, pairs_per_task=60, seed=0
    )


@pytest.fixture(scope="session")
def shared_data_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tokenizer and token cache for every tiny run (teachers and students must share a tokenizer)."""
    root = tmp_path_factory.mktemp("data")
    return {"tokenizer_dir": root / "tokenizer", "cache_dir": root / "cache"}


TinyConfig = Callable[..., RunConfig]


@pytest.fixture(scope="session")
def tiny_config(
    demo_corpus: DemoCorpus, shared_data_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> TinyConfig:
    """Load a run config and shrink it to CPU size: `tiny_config(path, name, *overrides)`."""
    out_root = tmp_path_factory.mktemp("runs")

    def make(path: str | Path, name: str, *overrides: str, **kwargs: Any) -> RunConfig:
        base = [
            f"data={REPO_ROOT / 'config/data/tiny.yaml'}",
            f"output.root={out_root}",
            f"output.name={name}",
        ]
        shrink = [
            f"data.corpus={demo_corpus.corpus_dir}",
            f"data.tokenizer_dir={shared_data_dirs['tokenizer_dir']}",
            f"data.cache_dir={shared_data_dirs['cache_dir']}",
            "data.seq_length=32",
            "training.batch_size=8",
            "training.per_device_batch_size=8",
            "training.max_steps=30",
            "training.warmup_steps=3",
            "training.logging_steps=5",
            "training.save_steps=1000",
            "training.progress_bar=false",
        ]
        return load_run_config(REPO_ROOT / path, [*base, *shrink, *overrides])

    return make


@pytest.fixture(scope="session")
def tiny_teachers(tiny_config: TinyConfig) -> list[Path]:
    """Two briefly pretrained teachers of different architectures (Llama and GPT-2)."""
    from babykd.training import run_training

    runs = []
    for arch in ("llama", "gpt2"):
        config = tiny_config(f"config/runs/tiny/pretrain-tiny-{arch}.yaml", f"teacher-{arch}", "training.lr=3e-3")
        runs.append(run_training(config).run_dir)
    return runs
