"""Data-parallel training through the standard launcher, on CPU with the gloo backend.

`torchrun --nproc_per_node 2 train.py` with global batch 8 (4 per process) must follow the
single-process loss trajectory with batch 8, because the project's `EpochShuffleSampler` and
accelerate's batch sharding give rank r the r-th half of every global batch. Distillation with
the teachers loaded on every rank must complete too.

Each torchrun run reads a tokenizer and token cache the in-process reference run has already
built: two ranks preparing the data at once would race on the same files (see the report).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
import yaml
from accelerate.data_loader import prepare_data_loader
from torch.utils.data import DataLoader, Subset
from transformers import AutoModelForCausalLM

from babykd import REPO_ROOT
from babykd.config import RunConfig
from babykd.models import build_model
from babykd.trainer import EXTRA_MODULES_FILE, KDTrainer
from babykd.training import PROVENANCE_FILE, load_data, run_training, training_arguments
from test_distillation import STUDENT, teacher_overrides

LLAMA = "config/runs/tiny/pretrain-tiny-llama.yaml"
PALENKA = "config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml"
STEPS = 10
#: Measured: <= 1.1e-7 (1-2 float32 ulps of a loss near 7): only the order of float sums differs.
REL_TOLERANCE = 1e-5
SHORT_RUN = (f"training.max_steps={STEPS}", "training.logging_steps=1", f"training.save_steps={STEPS}",
             "training.warmup_steps=2")


@pytest.fixture(scope="module")
def cpu_only() -> Iterator[None]:
    """The references run on the CPU like the gloo workers, also on a machine with a GPU."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", lambda: False)
        yield


def torchrun(script: str, config: RunConfig, name: str, tmp_path: Path) -> Path:
    """`torchrun --nproc_per_node 2 SCRIPT CONFIG --set output.name=NAME` on CPU; the run directory."""
    config_file = tmp_path / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO_ROOT / script), str(config_file), "--set", f"output.name={name}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    return Path(config.output.root) / name


def logged_steps(run_dir: Path) -> list[dict[str, Any]]:
    """The per-step training logs of a run (trainer_state.json of its last checkpoint)."""
    state = json.loads((run_dir / "checkpoints" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return [entry for entry in state["log_history"] if "loss" in entry]


def relative_differences(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str = "loss") -> list[float]:
    assert [e["step"] for e in a] == [e["step"] for e in b] == list(range(1, STEPS + 1))
    return [abs(x[key] - y[key]) / abs(x[key]) for x, y in zip(a, b)]


def dev_ce(run_dir: Path) -> float:
    return json.loads((run_dir / PROVENANCE_FILE).read_text())["final_metrics"]["eval_loss"]


@pytest.fixture(scope="module")
def pretraining(tiny_config, cpu_only, tmp_path_factory) -> tuple[Path, Path]:
    """(single-process run, 2-process run) of the same tiny Llama config."""
    config = tiny_config(LLAMA, "ddp-reference", *SHORT_RUN)
    single = run_training(config).run_dir
    return single, torchrun("train.py", config, "ddp-2proc", tmp_path_factory.mktemp("ddp"))


@pytest.mark.slow
def test_two_processes_follow_the_single_process_loss_trajectory(pretraining) -> None:
    single, ddp = pretraining
    a, b = logged_steps(single), logged_steps(ddp)
    differences = relative_differences(a, b)
    print("pretraining loss, max relative difference 1 vs 2 processes:", max(differences))
    assert max(differences) < REL_TOLERANCE
    assert abs(dev_ce(single) - dev_ce(ddp)) / dev_ce(single) < REL_TOLERANCE
    assert a[-1]["loss"] < a[0]["loss"] - 0.5  # a trajectory, not a flat line
    # each process iterated over half the data: an epoch took as many steps as with one process
    assert [e["epoch"] for e in a] == [e["epoch"] for e in b]
    checkpoint = ddp / "checkpoints" / f"checkpoint-{STEPS}"
    assert json.loads((checkpoint / "trainer_state.json").read_text())["train_batch_size"] == 4
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert AutoModelForCausalLM.from_pretrained(ddp).config.model_type == "llama"


@pytest.mark.slow
def test_logged_loss_terms_are_means_over_all_processes(pretraining) -> None:
    _, ddp = pretraining
    steps = logged_steps(ddp)
    assert all(abs(e["loss_ce"] - e["loss"]) < 1e-5 for e in steps)  # pretraining: the CE term is the loss


def sharded_batches(trainer: KDTrainer, world_size: int, epoch: int) -> list[torch.Tensor]:
    """The samples of every optimizer step of `epoch` when `world_size` processes read the trainer's data.

    The sampler, collator and drop_last are the trainer's; the sharding is accelerate's, with the
    settings the trainer's accelerator passes to it (what `accelerator.prepare` does under torchrun).
    """
    accelerator = trainer.accelerator
    loaders = [
        prepare_data_loader(
            DataLoader(trainer.train_dataset, batch_size=trainer.args.train_batch_size // world_size,
                       sampler=trainer._get_train_sampler(), collate_fn=trainer.data_collator,
                       drop_last=trainer.args.dataloader_drop_last),
            num_processes=world_size, process_index=rank, split_batches=accelerator.split_batches,
            put_on_device=False, rng_types=accelerator.rng_types.copy(), dispatch_batches=accelerator.dispatch_batches,
            even_batches=accelerator.even_batches, use_seedable_sampler=accelerator.use_seedable_sampler,
            data_seed=accelerator.dataloader_config.data_seed,
        )
        for rank in range(world_size)
    ]
    for loader in loaders:
        loader.set_epoch(epoch)
    return [torch.cat([b["input_ids"] for b in step]) for step in zip(*loaders, strict=True)]


def single_process_batches(trainer: KDTrainer, epoch: int) -> list[torch.Tensor]:
    loader = trainer.get_train_dataloader()
    loader.set_epoch(epoch)
    return [batch["input_ids"] for batch in loader]


@pytest.fixture(scope="module")
def reference_trainer(tiny_config, cpu_only):
    """A single-process KDTrainer over the tiny training set (global batch 8), and its data."""
    config = tiny_config(LLAMA, "ddp-sharding")
    data = load_data(config)

    def make(train_dataset) -> KDTrainer:
        return KDTrainer(model=build_model(config.model), args=training_arguments(config, config.output.run_dir),
                         train_dataset=train_dataset, eval_dataset=data.eval_dataset)

    return make, data


def assert_same_global_batches(trainer: KDTrainer, epochs: int = 2) -> None:
    for epoch in range(epochs):
        single, sharded = single_process_batches(trainer, epoch), sharded_batches(trainer, 2, epoch)
        assert len(single) == len(sharded)
        for step, (one, two) in enumerate(zip(single, sharded)):
            assert torch.equal(one, two), f"epoch {epoch} step {step}: the 2 processes read other samples"


def test_each_rank_reads_its_half_of_every_global_batch_across_epochs(reference_trainer) -> None:
    make, data = reference_trainer
    trainer = make(data.train_dataset)
    assert len(data.train_dataset) % 8 == 0
    assert_same_global_batches(trainer)
    first = [single_process_batches(trainer, epoch)[0] for epoch in (0, 1)]
    assert not torch.equal(*first), "the sampler must reshuffle each epoch on every rank"


def test_last_partial_global_batch_matches_single_process(reference_trainer) -> None:
    make, data = reference_trainer
    assert_same_global_batches(make(Subset(data.train_dataset, range(len(data.train_dataset) - 4))))


@pytest.fixture(scope="module")
def distillation(tiny_config, tiny_teachers, cpu_only, tmp_path_factory) -> tuple[Path, Path]:
    """(single-process, 2-process) DSKD runs (KL + trained hidden-state projections) with two teachers."""
    config = tiny_config(PALENKA, "ddp-distill-reference", STUDENT, *teacher_overrides(tiny_teachers),
                         "training.lr=3e-3", *SHORT_RUN)
    single = run_training(config).run_dir
    return single, torchrun("distill.py", config, "ddp-distill-2proc", tmp_path_factory.mktemp("ddp-distill"))


@pytest.mark.slow
def test_distillation_with_teachers_on_every_rank_completes(distillation) -> None:
    single, ddp = distillation
    assert (ddp / PROVENANCE_FILE).is_file()
    assert (ddp / "checkpoints" / f"checkpoint-{STEPS}" / EXTRA_MODULES_FILE).is_file()
    a, b = logged_steps(single), logged_steps(ddp)
    assert all(f"loss_{term}" in e for e in b for term in ("ce", "kl", "hidden"))
    assert b[-1]["loss"] < b[0]["loss"]
    assert max(relative_differences(a, b)[:2]) < REL_TOLERANCE  # before the first update with lr > 0
    assert abs(dev_ce(single) - dev_ce(ddp)) / dev_ce(single) < 1e-2
    assert AutoModelForCausalLM.from_pretrained(ddp).config.model_type == "llama"


@pytest.mark.slow
def test_distillation_follows_the_single_process_loss_trajectory(distillation) -> None:
    single, ddp = distillation
    differences = relative_differences(logged_steps(single), logged_steps(ddp))
    print("distillation loss, max relative difference 1 vs 2 processes:", max(differences))
    assert max(differences) < REL_TOLERANCE
