"""Offline KD: cached top-k teacher targets equal the live ones, are rebuilt when stale, and train a student."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from babykd import REPO_ROOT
from babykd.config import ConfigError, DistillationConfig
from babykd.data.dataset import ChunkDataset, EpochShuffleSampler
from babykd.data.tokenizer import train_tokenizer
from babykd.losses import combined_teacher_log_probs, kl_distillation_loss, sparse_kl_distillation_loss, top_k_targets
from babykd.teacher_cache import (
    IDS_KEY, LOG_PROBS_KEY, CachedTargetsDataset, TeacherCache, build_teacher_cache, cache_fingerprint,
    prepare_teacher_cache,
)
from babykd.training import load_data
from test_step_syncs import syncs_in_one_step
from tests.test_distillation import STUDENT, teacher_overrides

BABYLLAMA = "config/runs/distill/BabyLlama1-58M-strict.yaml"


def test_sparse_kl_with_the_whole_vocabulary_is_the_dense_kl() -> None:
    torch.manual_seed(0)
    batch, length, vocab = 2, 6, 13
    student = torch.randn(batch, length, vocab, requires_grad=True)
    teachers = [torch.randn(batch, length, vocab), torch.randn(batch, length, vocab)]
    labels = torch.randint(0, vocab, (batch, length))
    labels[0, 4] = -100
    targets = combined_teacher_log_probs([t.reshape(-1, vocab) for t in teachers], 2.0).reshape(batch, length, vocab)
    ids, log_q = top_k_targets(targets, vocab)
    for normalization in ("token", "reference"):
        dense = kl_distillation_loss(student, teachers, labels, temperature=2.0, normalization=normalization)
        sparse = sparse_kl_distillation_loss(student, ids, log_q, labels, temperature=2.0,
                                             normalization=normalization, chunk_rows=5)
        torch.testing.assert_close(sparse, dense)
        torch.testing.assert_close(torch.autograd.grad(sparse, student)[0], torch.autograd.grad(dense, student)[0])


def autograd_sparse_kl(student: torch.Tensor, ids: torch.Tensor, log_q: torch.Tensor, labels: torch.Tensor,
                       temperature: float) -> torch.Tensor:
    """The coarsened KL written plainly, token-normalised, for autograd to differentiate."""
    scored = labels[:, 1:] != -100
    scaled = student[:, :-1].float() / temperature
    normaliser = scaled.logsumexp(-1, keepdim=True)
    ids, log_q = ids[:, :-1].long(), log_q[:, :-1].float()
    q = log_q.exp()
    kl = (q * (log_q - (scaled.gather(-1, ids) - normaliser))).sum(-1)
    q_rest = (1 - q.sum(-1)).clamp(min=0)
    log_p_rest = (scaled.scatter(-1, ids, torch.finfo(torch.float32).min).logsumexp(-1)
                  - normaliser.squeeze(-1)).clamp(min=-69.0)
    kl = kl + torch.where(q_rest > 0, q_rest * (q_rest.clamp(min=1e-38).log() - log_p_rest), 0.0)
    return (kl * scored).sum() / scored.sum() * temperature**2


@pytest.mark.parametrize("case", ["rest", "no rest mass", "rest clamped", "ignored labels"])
def test_the_fused_sparse_kl_gradient_is_autograds(case: str) -> None:
    """The closed-form gradient (one pass, no recompute) against autograd of the plain formula."""
    torch.manual_seed(3)
    batch, length, vocab, k = 2, 7, 40, 6
    student = torch.randn(batch, length, vocab) * 3
    teacher = torch.log_softmax(torch.randn(batch, length, vocab) * 2, dim=-1)
    labels = torch.randint(0, vocab, (batch, length))
    ids, log_q = top_k_targets(teacher, k)
    if case == "no rest mass":  # the teacher's top k hold all of it
        log_q = torch.log_softmax(log_q, dim=-1)
    if case == "rest clamped":  # the student has (almost) no mass outside the teacher's top k
        student.scatter_(-1, ids, 400.0)
    if case == "ignored labels":
        labels[0, 2:5] = -100
    student.requires_grad_(True)
    fused = sparse_kl_distillation_loss(student, ids, log_q.half(), labels, temperature=2.0, chunk_rows=3)
    plain = autograd_sparse_kl(student, ids, log_q.half(), labels, 2.0)
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(torch.autograd.grad(fused, student)[0], torch.autograd.grad(plain, student)[0])


def test_sparse_kl_by_hand_on_a_truncated_target() -> None:
    student = torch.tensor([[[0.0, 1.0, 2.0], [0.0, 0.0, 0.0]]])
    teacher = torch.log(torch.tensor([[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]]))
    ids, log_q = top_k_targets(teacher, 2)
    assert ids[0, 0].tolist() == [0, 1] and torch.allclose(log_q[0, 0].exp(), torch.tensor([0.5, 0.3]))
    # token normalisation scores position 0 only (position 1 has no next token); T = 1.
    # Outcomes: token 0, token 1, and the rest (token 2).
    p = torch.softmax(student[0, 0], dim=-1)
    q, p_coarse = torch.tensor([0.5, 0.3, 0.2]), torch.stack([p[0], p[1], p[2]])
    expected = (q * (q / p_coarse).log()).sum()
    got = sparse_kl_distillation_loss(student, ids, log_q, torch.zeros(1, 2, dtype=torch.long), temperature=1.0)
    torch.testing.assert_close(got, expected)


def test_sparse_kl_is_zero_when_the_student_matches_the_teacher() -> None:
    torch.manual_seed(1)
    logits = torch.randn(2, 8, 50, requires_grad=True)
    ids, log_q = top_k_targets(torch.log_softmax(logits.detach() / 2.0, dim=-1), 5)
    loss = sparse_kl_distillation_loss(logits, ids, log_q, torch.zeros(2, 8, dtype=torch.long), temperature=2.0)
    assert abs(loss.item()) < 1e-5
    assert torch.autograd.grad(loss, logits)[0].abs().max() < 1e-5


@pytest.fixture(scope="module")
def cached_config(tiny_config, tiny_teachers):
    return tiny_config(BABYLLAMA, "student-cached", STUDENT, *teacher_overrides(tiny_teachers), "training.lr=3e-3",
                       "distillation.teacher_cache_top_k=8", "distillation.kl_normalization=token",
                       "training.max_steps=20")


def test_cache_holds_the_live_teachers_top_k_and_is_reused(cached_config, tiny_teachers) -> None:
    from babykd.teachers import load_teachers

    data = load_data(cached_config)
    cfg = cached_config.distillation
    cache_dir = data.cache_dir
    cache = prepare_teacher_cache(cfg, data.train_dataset, data.tokenizer, cache_dir, torch.device("cpu"))
    assert cache.built and cache.ids.shape == (len(data.train_dataset), 32, 8)
    assert 0 < cache.meta["top_k_mass"] <= 1

    teachers = load_teachers(cfg, data.tokenizer, 32)
    chunk = data.train_dataset[3]["input_ids"][None]
    with torch.no_grad():
        live = combined_teacher_log_probs([t(input_ids=chunk).logits[0] for t in teachers], cfg.temperature)
    ids, log_q = top_k_targets(live, 8)
    assert np.array_equal(cache.ids[3], ids.numpy())
    np.testing.assert_allclose(cache.log_probs[3].astype(np.float32), log_q.numpy(), atol=2e-3)

    item = CachedTargetsDataset(data.train_dataset, cache)[3]
    assert item[IDS_KEY].dtype == torch.uint16 and item[LOG_PROBS_KEY].dtype == torch.float16  # widened on the device
    assert item[LOG_PROBS_KEY].shape == (32, 8)
    again = prepare_teacher_cache(cfg, data.train_dataset, data.tokenizer, cache_dir, torch.device("cpu"))
    assert not again.built and again.directory == cache.directory

    cfg.temperature = 1.0  # other settings: another fingerprint, so another cache, never the stale one
    try:
        assert cache_fingerprint(data.train_dataset, cfg) != cache.meta["fingerprint"]
    finally:
        cfg.temperature = 2.0


def test_student_trains_on_cached_targets(cached_config) -> None:
    """Also: a step of the offline path (targets widened on the device, the sparse KL) reads nothing from it."""
    counts, result = syncs_in_one_step(cached_config)
    assert not counts, f"offline KD: host-device syncs in a training step: {dict(counts)}"
    logged = [entry for entry in result.history if "loss" in entry]
    assert all("loss_kl" in entry for entry in logged)
    assert logged[-1]["loss_ce"] < logged[0]["loss_ce"] - 0.5
    assert json.loads((result.run_dir / "provenance.json").read_text())["global_steps"] == 20


def test_cache_refuses_terms_that_need_live_teachers(tiny_config, tiny_teachers) -> None:
    palenka = "config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml"
    with pytest.raises(ConfigError, match="distillation.weights.hidden"):
        tiny_config(palenka, "cached-dskd", STUDENT, *teacher_overrides(tiny_teachers),
                    "distillation.teacher_cache_top_k=8")
    with pytest.raises(ConfigError, match="data.random_offset"):
        tiny_config(BABYLLAMA, "cached-offset", STUDENT, *teacher_overrides(tiny_teachers),
                    "distillation.teacher_cache_top_k=8", "data.random_offset=true")


def test_fidelity_benchmark_is_exact_at_the_whole_vocabulary(cached_config) -> None:
    import sys

    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from bench_teacher_cache import measure

    from babykd.models import build_model

    torch.manual_seed(0)
    records = measure(cached_config, build_model(cached_config.model), [4, 64, cached_config.model.vocab_size], 1)
    *top_k, whole, heads = records
    assert whole["top_k_mass"] == pytest.approx(1.0, abs=1e-3)
    assert whole["kl_ratio"] == pytest.approx(1.0, abs=5e-3) and whole["grad_cosine"] == pytest.approx(1.0, abs=1e-4)
    masses = [r["top_k_mass"] for r in (*top_k, whole)]
    assert masses == sorted(masses) and masses[0] < 1.0
    assert [r["bytes_per_position"] for r in (*top_k, whole)] == [4 * r["k"] for r in (*top_k, whole)]
    # The head-input cache: the online loss up to float16 rounding, at 2 bytes per head-input dimension.
    assert heads["k"] == "head_inputs" and heads["kl_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert heads["grad_cosine"] > 0.9999 and heads["bytes_per_position"] % 2 == 0


class MaskingTeacher(torch.nn.Module):
    """A teacher that forbids some vocabulary entries (logit -inf), as a constrained-vocabulary model does."""

    def __init__(self, vocab: int, masked: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, 8)
        self.head = torch.nn.Linear(8, vocab, bias=False)
        self.masked = masked

    def get_output_embeddings(self) -> torch.nn.Linear:
        return self.head

    def forward(self, input_ids: torch.Tensor) -> SimpleNamespace:
        logits = self.head(self.embed(input_ids))
        logits[..., : self.masked] = float("-inf")
        return SimpleNamespace(logits=logits)


def test_cache_of_a_masking_teacher_at_k_equal_vocabulary_gives_a_finite_loss(tmp_path: Path) -> None:
    """float32's floor for a masked entry is -inf in float16; stored as is, q·log q was 0·(−inf) = NaN."""
    torch.manual_seed(0)
    vocab, length = 20, 6
    dataset = ChunkDataset(np.arange(4 * length) % vocab, seq_length=length)
    cfg = DistillationConfig(teachers=["masking"], teacher_cache_top_k=vocab)
    cache = build_teacher_cache(tmp_path / "cache", dataset, [MaskingTeacher(vocab, masked=3)], cfg, "f",
                                progress=False)
    assert np.isfinite(cache.log_probs).all()
    items = [CachedTargetsDataset(dataset, cache)[i] for i in range(len(dataset))]
    batch = {key: torch.stack([item[key] for item in items]) for key in ("labels", IDS_KEY, LOG_PROBS_KEY)}
    student = torch.randn(len(dataset), length, vocab, requires_grad=True)
    for normalization in ("token", "reference"):
        loss = sparse_kl_distillation_loss(student, batch[IDS_KEY], batch[LOG_PROBS_KEY], batch["labels"],
                                           normalization=normalization)
        (grad,) = torch.autograd.grad(loss, student)
        assert torch.isfinite(loss) and loss > 0 and torch.isfinite(grad).all(), normalization


def test_cache_build_in_staged_batches_writes_every_chunk_once(cached_config, tmp_path: Path) -> None:
    """Batches written one step late from two alternating host buffers: a batch size that does not
    divide the chunks, or one larger than them, gives the same arrays and the same mass."""
    from babykd.teachers import load_teachers
    from babykd.training import load_data

    data = load_data(cached_config)
    cfg = cached_config.distillation
    teachers = [t.eval() for t in load_teachers(cfg, data.tokenizer, cached_config.data.seq_length)]
    chunks = ChunkDataset(data.train_dataset.tokens[: 40 * 32], 32)  # 40 chunks: a second's work
    built = {size: build_teacher_cache(tmp_path / str(size), chunks, teachers, cfg, "test", batch_size=size,
                                       progress=False)
             for size in (7, 64)}
    small, whole = built.values()
    assert np.array_equal(small.ids, whole.ids) and np.array_equal(small.log_probs, whole.log_probs)
    assert small.meta["top_k_mass"] == pytest.approx(whole.meta["top_k_mass"], abs=1e-6)
    assert np.asarray(small.log_probs[-1]).min() < 0  # the last, short batch was written


@pytest.fixture
def small_teacher(tmp_path: Path) -> tuple[Path, PreTrainedTokenizerBase]:
    """A one-layer Llama teacher folder with its tokenizer (also the student's): built in a second, no training."""
    tokenizer = train_tokenizer(["the cat sat on the mat .", "who did mary see ?"] * 20, vocab_size=300,
                                min_frequency=1, show_progress=False)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64)
    path = tmp_path / "teacher"
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, tokenizer


def small_cache(teacher: Path, tokenizer: PreTrainedTokenizerBase, data_cache_dir: Path) -> TeacherCache:
    dataset = ChunkDataset(np.arange(6 * 16) % len(tokenizer), seq_length=16)
    cfg = DistillationConfig(teachers=[str(teacher)], teacher_cache_top_k=4)
    return prepare_teacher_cache(cfg, dataset, tokenizer, data_cache_dir, torch.device("cpu"))


def test_a_teachers_edited_config_or_tokenizer_is_another_teacher(small_teacher, tmp_path: Path) -> None:
    """Its weights untouched, a teacher with another RoPE base predicts otherwise: the old cache was reused."""
    teacher, tokenizer = small_teacher
    first = small_cache(teacher, tokenizer, tmp_path / "cache")
    config_file = teacher / "config.json"
    config_file.touch()  # the same content, a new mtime: the same teacher
    assert small_cache(teacher, tokenizer, tmp_path / "cache").directory == first.directory

    config = json.loads(config_file.read_text())
    config["rope_parameters"]["rope_theta"] = 10.0
    config_file.write_text(json.dumps(config))
    edited = small_cache(teacher, tokenizer, tmp_path / "cache")
    assert edited.built and edited.meta["fingerprint"] != first.meta["fingerprint"]
    assert not np.array_equal(edited.log_probs, first.log_probs)  # the edit does change the targets

    tokenizer_file = teacher / "tokenizer_config.json"
    tokenizer_file.write_text(tokenizer_file.read_text().replace("}", ', "model_max_length": 16}', 1))
    assert small_cache(teacher, tokenizer, tmp_path / "cache").meta["fingerprint"] != edited.meta["fingerprint"]


@pytest.mark.parametrize("damaged", ["ids.npy", "log_probs.npy", "meta.json"])
def test_a_damaged_cache_file_is_named_in_one_line_and_the_cache_rebuilt(
    small_teacher, tmp_path: Path, caplog: pytest.LogCaptureFixture, damaged: str
) -> None:
    teacher, tokenizer = small_teacher
    first = small_cache(teacher, tokenizer, tmp_path / "cache")
    expected, path = np.array(first.log_probs), first.directory / damaged
    del first  # its memory maps: reading a truncated mapped file is a crash, not an error
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a copy or a disk that lost its tail

    with caplog.at_level("WARNING", logger="babykd.teacher_cache"):
        rebuilt = small_cache(teacher, tokenizer, tmp_path / "cache")
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and str(path) in warnings[0] and "\n" not in warnings[0], warnings
    assert rebuilt.built and np.array_equal(rebuilt.log_probs, expected)


def test_a_run_builds_only_the_chunks_it_reads_and_a_second_seed_adds_only_its_own(small_teacher, tmp_path: Path):
    """The cache is filled for the head of the run's permutation; another run sharing it adds what it lacks."""
    teacher, tokenizer = small_teacher
    dataset = ChunkDataset(np.arange(40 * 16) % len(tokenizer), seq_length=16)
    cfg = DistillationConfig(teachers=[str(teacher)], teacher_cache_top_k=4)
    reads = [EpochShuffleSampler(len(dataset), seed=seed).indices_read(6 * 2) for seed in (0, 1)]  # 6 steps of 2
    assert all(len(r) == 12 for r in reads) and not np.array_equal(*reads)
    first = prepare_teacher_cache(cfg, dataset, tokenizer, tmp_path, torch.device("cpu"), chunks=reads[0])
    assert first.filled.sum() == 12 and first.filled[reads[0]].all()
    assert first.meta["builds"][0]["chunks_built"] == 12 and first.meta["builds"][0]["seconds"] >= 0
    with pytest.raises(RuntimeError, match="no targets"):
        CachedTargetsDataset(dataset, first)[int(np.setdiff1d(np.arange(40), reads[0])[0])]

    second = prepare_teacher_cache(cfg, dataset, tokenizer, tmp_path, torch.device("cpu"), chunks=reads[1])
    new = np.setdiff1d(reads[1], reads[0])
    assert second.directory == first.directory and second.meta["builds"][1]["chunks_built"] == len(new)
    assert second.filled.sum() == 12 + len(new)
    full = build_teacher_cache(tmp_path / "full", dataset, [AutoModelForCausalLM.from_pretrained(teacher)], cfg,
                               second.meta["fingerprint"], progress=False)
    union = np.union1d(*reads)
    assert np.array_equal(second.ids[union], full.ids[union])  # the same targets as a whole-corpus build
    np.testing.assert_array_equal(second.log_probs[union], full.log_probs[union])
    again = prepare_teacher_cache(cfg, dataset, tokenizer, tmp_path, torch.device("cpu"), chunks=reads[0])
    assert not again.built  # nothing missing: the teachers are not even loaded
    assert EpochShuffleSampler(40, seed=0).indices_read(41).tolist() == list(range(40))  # past one epoch: all
