"""Token cache: contents, reuse, rebuild on any input change, detection of damaged arrays."""

import json
import logging

import numpy as np
import pytest

from babykd.data.cache import cache_paths, encode_documents, load_or_build, token_dtype
from babykd.data.tokenizer import train_tokenizer

DOCS = ["what's that?\nit's a chicken.", "Dorothy lived in Kansas.", "yeah."]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(DOCS * 10, vocab_size=300, show_progress=False)


@pytest.fixture
def stem(tmp_path):
    return tmp_path / "cache" / "train-eos"


def test_stream_is_documents_with_eos_after_each(tokenizer, stem):
    cache = load_or_build(stem, DOCS, tokenizer)
    expected = []
    for doc in DOCS:
        expected += tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert cache.tokens.tolist() == expected
    assert cache.tokens.dtype == np.uint16 and isinstance(cache.tokens, np.memmap)
    assert cache.meta["length"] == len(expected) and cache.meta["documents"] == 3


def test_boundary_option_none_glues_documents(tokenizer):
    glued = encode_documents(DOCS, tokenizer, "none")
    assert glued.tolist() == sum((tokenizer(d, add_special_tokens=False)["input_ids"] for d in DOCS), [])
    with pytest.raises(ValueError, match="document_boundaries must be one of"):
        encode_documents(DOCS, tokenizer, "bos")


def test_dtype_follows_vocabulary_size():
    assert token_dtype(16000) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


def test_unchanged_inputs_reuse_the_cache(tokenizer, stem):
    first = load_or_build(stem, DOCS, tokenizer)
    array_path, meta_path = cache_paths(stem)
    mtimes = (array_path.stat().st_mtime_ns, meta_path.stat().st_mtime_ns)
    again = load_or_build(stem, list(DOCS), tokenizer)
    assert first.built and not again.built
    assert (array_path.stat().st_mtime_ns, meta_path.stat().st_mtime_ns) == mtimes
    assert again.tokens.tolist() == first.tokens.tolist()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda docs, tok: (docs[:-1] + ["yeah!"], tok, "eos"), id="text"),
        pytest.param(
            lambda docs, tok: (["what's that?", "it's a chicken."] + docs[1:], tok, "eos"), id="boundaries-moved"
        ),
        pytest.param(lambda docs, tok: (docs, tok, "none"), id="boundary-option"),
        pytest.param(
            lambda docs, tok: (docs, train_tokenizer(docs * 10, vocab_size=280, show_progress=False), "eos"),
            id="tokenizer",
        ),
    ],
)
def test_changed_inputs_rebuild_with_a_warning(tokenizer, stem, caplog, change):
    load_or_build(stem, DOCS, tokenizer)
    docs, tok, boundaries = change(DOCS, tokenizer)
    with caplog.at_level(logging.WARNING, logger="babykd.data.cache"):
        rebuilt = load_or_build(stem, docs, tok, document_boundaries=boundaries)
    assert rebuilt.built and rebuilt.reason.startswith("stale")
    assert "stale" in caplog.text
    assert rebuilt.tokens.tolist() == encode_documents(docs, tok, boundaries).tolist()
    assert not load_or_build(stem, docs, tok, document_boundaries=boundaries).built


def damage_truncate(array_path, meta_path):
    array_path.write_bytes(array_path.read_bytes()[:-2])


def damage_flip(array_path, meta_path):
    data = bytearray(array_path.read_bytes())
    data[0] ^= 0xFF
    array_path.write_bytes(bytes(data))


def damage_sidecar_length(array_path, meta_path):
    meta = json.loads(meta_path.read_text())
    meta["length"] += 1
    meta_path.write_text(json.dumps(meta))


def damage_sidecar_garbage(array_path, meta_path):
    meta_path.write_text("{not json")


@pytest.mark.parametrize(
    "damage,reason",
    [
        (damage_truncate, "wrong length"),
        (damage_flip, "checksum mismatch"),
        (damage_sidecar_length, "wrong length"),
        (damage_sidecar_garbage, "unreadable sidecar"),
    ],
)
def test_damaged_cache_is_detected_and_rebuilt(tokenizer, stem, caplog, damage, reason):
    good = load_or_build(stem, DOCS, tokenizer).tokens.tolist()
    damage(*cache_paths(stem))
    with caplog.at_level(logging.WARNING, logger="babykd.data.cache"):
        rebuilt = load_or_build(stem, DOCS, tokenizer)
    assert rebuilt.built and rebuilt.reason.startswith(reason)
    assert reason in caplog.text
    assert rebuilt.tokens.tolist() == good


def test_missing_array_is_rebuilt(tokenizer, stem):
    load_or_build(stem, DOCS, tokenizer)
    cache_paths(stem)[0].unlink()
    assert load_or_build(stem, DOCS, tokenizer).reason == "missing"
