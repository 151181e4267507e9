"""Encoded requests are reused per tokenizer content and data, in memory and on disk, and never stale."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest

from babykd.data.tokenizer import train_tokenizer
from babykd.evaluation import ranking, request_cache
from babykd.evaluation.request_cache import cached_requests

CORPUS = ["The cat sat on the mat.", "Box 0 contains the apple. Box 1 contains nothing.", "Who did Mary see?"] * 10
ITEMS = [
    ranking.Candidates("a", ("The cat sat.", "The mat sat."), ("The cat sat.", "The mat sat.")),
    ranking.Candidates("b", ("Box 0 contains the apple.", "Box 0 contains nothing."), (" the apple.", " nothing.")),
]


@pytest.fixture(scope="module")
def tokenizers():
    return {size: train_tokenizer(CORPUS, vocab_size=size, min_frequency=1, show_progress=False) for size in (300, 320)}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty disk folder and memory; `cache.builds` counts the encodings actually run."""
    monkeypatch.setenv("BABYKD_EVAL_CACHE", str(tmp_path))
    monkeypatch.setattr(request_cache, "_memory", OrderedDict())
    encode, builds = ranking._encode_candidates, []

    def counting(tokenizer, items):
        builds.append(sum(len(item.sentences) for item in items))
        return encode(tokenizer, items)

    monkeypatch.setattr(ranking, "_encode_candidates", counting)
    return {"dir": tmp_path, "builds": builds, "encode": encode}


def fresh_process(monkeypatch):
    """What a new process sees: the disk folder, an empty memory."""
    monkeypatch.setattr(request_cache, "_memory", OrderedDict())


def test_requests_are_encoded_once_per_tokenizer_and_data(tokenizers, cache, monkeypatch):
    tok = tokenizers[300]
    expected = cache["encode"](tok, ITEMS)
    assert ranking.candidate_requests(tok, ITEMS) == expected
    assert ranking.candidate_requests(copy.deepcopy(tok), ITEMS) == expected  # same content, another object: memory
    assert len(list(cache["dir"].glob("*.npz"))) == 1
    fresh_process(monkeypatch)
    assert ranking.candidate_requests(tok, ITEMS) == expected  # from disk
    assert cache["builds"] == [4]


def test_another_tokenizer_text_or_kind_is_a_miss(tokenizers, cache):
    ranking.candidate_requests(tokenizers[300], ITEMS)
    ranking.candidate_requests(tokenizers[320], ITEMS)  # other vocabulary
    ranking.candidate_requests(tokenizers[300], ITEMS[:1])  # other data
    sentences = ("Box 0 contains the apple!", "Box 0 contains nothing.")
    changed = [ranking.Candidates("b", sentences, ("the apple!", "nothing."))]
    ranking.candidate_requests(tokenizers[300], ITEMS[:1] + changed)  # one text changed
    assert cache["builds"] == [4, 4, 2, 4]
    pairs, items = [("a b", "b")], [ranking.Candidates("c", ("a b", "a c"), ("b", "c"))]
    first = cached_requests(tokenizers[300], "kind 1", pairs, lambda: [])
    second = cached_requests(tokenizers[300], "kind 2", pairs, lambda: cache["encode"](tokenizers[300], items))
    assert first == [] and second != []
    assert len(list(cache["dir"].glob("*.npz"))) == 6


def test_a_changed_post_processor_is_a_miss(tokenizers, cache):
    """The start token lives in the post-processor: a tokenizer saved before it must not reuse the ids."""
    from tokenizers import processors

    tok = tokenizers[300]
    old = copy.deepcopy(tok)
    old.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    assert ranking.candidate_requests(tok, ITEMS) != ranking.candidate_requests(old, ITEMS)
    assert cache["builds"] == [4, 4]


def test_a_damaged_file_is_rebuilt_and_rewritten(tokenizers, cache, monkeypatch):
    tok = tokenizers[300]
    expected = ranking.candidate_requests(tok, ITEMS)
    (path,) = cache["dir"].glob("*.npz")
    path.write_bytes(b"not a zip")
    fresh_process(monkeypatch)
    assert ranking.candidate_requests(tok, ITEMS) == expected
    fresh_process(monkeypatch)
    assert ranking.candidate_requests(tok, ITEMS) == expected
    assert cache["builds"] == [4, 4]  # the rewritten file served the third call


def test_off_keeps_nothing_on_disk(tokenizers, cache, monkeypatch):
    monkeypatch.setenv("BABYKD_EVAL_CACHE", "off")
    ranking.candidate_requests(tokenizers[300], ITEMS)
    fresh_process(monkeypatch)
    ranking.candidate_requests(tokenizers[300], ITEMS)
    assert cache["builds"] == [4, 4] and not list(cache["dir"].iterdir())


def test_the_2024_scorer_encodes_once_per_process(tokenizers, cache, monkeypatch):
    """The Trainer callback scores the same items at every evaluation: the second encoding is a memory hit."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from babykd.evaluation import scorer
    from babykd.evaluation.tasks import Item

    tok = tokenizers[300]
    encode, calls = scorer.encode_requests, []
    monkeypatch.setattr(scorer, "encode_requests", lambda *a: calls.append(1) or encode(*a))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, max_position_embeddings=64)).eval()
    items = [Item("", "The cat sat.", "The mat sat."), Item("Box 0 contains", "the apple.", "nothing.")]
    first = scorer.score_items(model, tok, items, progress=False)
    assert (scorer.score_items(model, tok, items, progress=False) == first).all() and calls == [1]


def test_a_slow_tokenizer_is_never_cached(cache):
    from types import SimpleNamespace

    builds = []
    for _ in range(2):
        cached_requests(SimpleNamespace(is_fast=False), "kind", [("a", "b")], lambda: builds.append(1) or [])
    assert builds == [1, 1] and not list(cache["dir"].iterdir())
