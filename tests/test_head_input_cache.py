"""The head-input teacher cache: the teachers' logits come back from their stored head inputs, and a run on it
trains as the online run does (the faithful representation of issue 30)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from babykd.config import ConfigError, DistillationConfig
from babykd.data.dataset import ChunkDataset
from babykd.losses import kl_distillation_loss
from babykd.teacher_cache import (
    HEAD_INPUTS_KEY, HEADS_FILE, CachedHeads, CachedTargetsDataset, build_teacher_cache, head_inputs_batch,
    prepare_teacher_cache,
)
from babykd.training import load_data, run_training
from tests.test_distillation import STUDENT, teacher_overrides
from tests.test_teacher_cache import BABYLLAMA, MaskingTeacher

FIXED = ("data.random_offset=false", "distillation.kl_normalization=token", "training.max_steps=6",
         "training.logging_steps=1", "distillation.log_term_shares=false", "training.lr=3e-3")


def test_the_cached_head_inputs_give_back_the_live_teachers_logits(tiny_config, tiny_teachers) -> None:
    """Both architectures (Llama, GPT-2): logits, KL and its gradient as the live teachers give them."""
    from babykd.teachers import load_teachers

    config = tiny_config(BABYLLAMA, "heads-build", STUDENT, *teacher_overrides(tiny_teachers), *FIXED,
                         "distillation.teacher_cache_head_inputs=true")
    data, cfg = load_data(config), config.distillation
    cache = prepare_teacher_cache(cfg, data.train_dataset, data.tokenizer, data.cache_dir, torch.device("cpu"))
    teachers = load_teachers(cfg, data.tokenizer, config.data.seq_length)
    widths = [t.get_output_embeddings().in_features for t in teachers]
    assert cache.built and cache.arrays["head_inputs"].shape == (len(data.train_dataset), 32, sum(widths))
    assert cache.meta["top_k_mass"] == 1.0 and cache.meta["head_inputs"] is True

    item = CachedTargetsDataset(data.train_dataset, cache)[5]
    assert item[HEAD_INPUTS_KEY].dtype == torch.float16  # as stored: half the bytes of float32
    heads = CachedHeads.load(cache.directory / HEADS_FILE)
    recomputed = heads(item[HEAD_INPUTS_KEY][None])
    with torch.no_grad():
        live = [t(input_ids=item["input_ids"][None]).logits for t in teachers]
    for got, want in zip(recomputed, live):
        assert got.dtype == torch.float32
        assert (got - want).abs().max() < 2e-3 * want.abs().max()  # float16 rounding of the head inputs only

    student = torch.randn_like(live[0], requires_grad=True)
    labels = item["input_ids"][None]
    online = kl_distillation_loss(student, live, labels, temperature=2.0)
    cached = kl_distillation_loss(student, recomputed, labels, temperature=2.0)
    assert cached.item() == pytest.approx(online.item(), rel=1e-3)
    cosine = torch.nn.functional.cosine_similarity(
        torch.autograd.grad(cached, student)[0].flatten().double(),
        torch.autograd.grad(online, student)[0].flatten().double(), dim=0)
    assert cosine > 0.9999


def test_a_run_on_the_head_input_cache_trains_as_the_online_run(tiny_config, tiny_teachers) -> None:
    """Same seed, batches and recipe: the logged KL of every step and the trained weights agree with online KD."""
    runs = {}
    for name, extra in (("online", ()), ("heads", ("distillation.teacher_cache_head_inputs=true",))):
        config = tiny_config(BABYLLAMA, f"heads-run-{name}", STUDENT, *teacher_overrides(tiny_teachers), *FIXED,
                             *extra)
        runs[name] = run_training(config)
    kl = {name: [e["loss_kl"] for e in result.history if "loss_kl" in e] for name, result in runs.items()}
    assert len(kl["heads"]) == 6
    np.testing.assert_allclose(kl["heads"], kl["online"], rtol=2e-3)
    online, cached = (AutoModelForCausalLM.from_pretrained(runs[n].run_dir) for n in ("online", "heads"))
    for (name, a), b in zip(online.named_parameters(), cached.parameters()):
        assert (a - b).abs().max() < 1e-3, name


def test_a_teacher_that_changes_its_logits_after_the_head_is_refused(tmp_path: Path) -> None:
    vocab = 12
    dataset = ChunkDataset(np.arange(8 * 6) % vocab, seq_length=6)
    cfg = DistillationConfig(teachers=["masking"], teacher_cache_head_inputs=True)
    with pytest.raises(ValueError, match="not its output head applied"):
        build_teacher_cache(tmp_path / "cache", dataset, [MaskingTeacher(vocab, masked=3)], cfg, "f", progress=False)


def test_batches_after_the_first_run_only_the_bodies_and_store_the_same_head_inputs(
        tiny_config, tiny_teachers) -> None:
    """The checked first batch (full model, hooked head) and the later ones (`base_model` only) agree."""
    from babykd.teachers import load_teachers

    config = tiny_config(BABYLLAMA, "heads-body", STUDENT, *teacher_overrides(tiny_teachers), *FIXED)
    data = load_data(config)
    teachers = load_teachers(config.distillation, data.tokenizer, config.data.seq_length)
    input_ids = torch.stack([data.train_dataset[i]["input_ids"] for i in range(4)])
    with torch.no_grad():
        checked, _ = head_inputs_batch(teachers, input_ids, config.distillation, check=True)
        body_only, _ = head_inputs_batch(teachers, input_ids, config.distillation, check=False)
    assert checked["head_inputs"].shape[-1] == sum(t.get_output_embeddings().in_features for t in teachers)
    torch.testing.assert_close(body_only["head_inputs"], checked["head_inputs"], rtol=0, atol=1e-6)


class ShiftingTeacher(torch.nn.Module):
    """A teacher whose forward changes its body's output before the head: the body alone is not the head's input."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.base_model = Body(vocab)
        self.head = torch.nn.Linear(8, vocab, bias=False)

    def get_output_embeddings(self) -> torch.nn.Linear:
        return self.head

    def forward(self, input_ids: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.head(self.base_model(input_ids).last_hidden_state + 1.0))


class Body(torch.nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, 8)

    def forward(self, input_ids: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(last_hidden_state=self.embed(input_ids))


def test_a_teacher_whose_head_reads_more_than_its_body_gives_is_refused(tmp_path: Path) -> None:
    vocab = 12
    dataset = ChunkDataset(np.arange(8 * 6) % vocab, seq_length=6)
    cfg = DistillationConfig(teachers=["shifting"], teacher_cache_head_inputs=True)
    with pytest.raises(ValueError, match="body's last hidden state is not what its output head reads"):
        build_teacher_cache(tmp_path / "cache", dataset, [ShiftingTeacher(vocab)], cfg, "f", progress=False)


def test_the_head_input_cache_is_one_of_two_representations_and_gives_no_hidden_states(
        tiny_config, tiny_teachers) -> None:
    with pytest.raises(ConfigError, match="set one of them"):
        tiny_config(BABYLLAMA, "heads-both", STUDENT, *teacher_overrides(tiny_teachers), *FIXED,
                    "distillation.teacher_cache_head_inputs=true", "distillation.teacher_cache_top_k=8")
    with pytest.raises(ConfigError, match="teacher_cache_head_inputs caches soft targets only.*weights.hidden"):
        tiny_config("config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml", "heads-dskd", STUDENT,
                    *teacher_overrides(tiny_teachers), *FIXED, "distillation.teacher_cache_head_inputs=true")
