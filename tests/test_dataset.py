"""Chunk dataset, epoch sampler, fixed eval subset, and prepare_data end to end."""

import numpy as np
import pytest
import torch

from babykd.data.corpus import CorpusError
from babykd.data.dataset import ChunkDataset, EpochShuffleSampler, eval_subset
from babykd.data.pipeline import prepare_data

TOKENS = np.arange(1000, dtype=np.uint16)


def test_chunks_are_contiguous_slices_and_the_partial_tail_is_dropped():
    ds = ChunkDataset(TOKENS, seq_length=128)
    assert len(ds) == 7  # 1000 // 128; the last 104 tokens are dropped
    for i in range(len(ds)):
        item = ds[i]
        assert item["input_ids"].dtype == torch.long and item["input_ids"].shape == (128,)
        assert item["input_ids"].tolist() == TOKENS[i * 128 : (i + 1) * 128].tolist()
        assert torch.equal(item["labels"], item["input_ids"])
    assert ds[-1]["input_ids"].tolist() == ds[6]["input_ids"].tolist()
    with pytest.raises(IndexError):
        ds[7]


def test_random_offset_shifts_all_chunks_per_epoch_reproducibly():
    ds = ChunkDataset(TOKENS, seq_length=100, random_offset=True, seed=3)
    assert len(ds) == 9  # chunks that fit at every offset in [0, 100)
    offsets = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        assert 0 <= ds.offset < 100
        offsets.append(ds.offset)
        assert ds[len(ds) - 1]["input_ids"].tolist() == TOKENS[ds.offset + 800 : ds.offset + 900].tolist()
        assert len(ds) == 9
    assert len(set(offsets)) > 1
    again = ChunkDataset(TOKENS, seq_length=100, random_offset=True, seed=3)
    again.set_epoch(4)
    assert again.offset == offsets[4]


def test_no_offset_without_random_offset():
    ds = ChunkDataset(TOKENS, seq_length=100)
    ds.set_epoch(5)
    assert ds.offset == 0 and len(ds) == 10


def test_stream_shorter_than_a_chunk_is_refused():
    with pytest.raises(ValueError, match="holds no chunk of 128 tokens"):
        ChunkDataset(TOKENS[:100], seq_length=128)


def test_sampler_permutes_differently_each_epoch_and_reproducibly():
    sampler = EpochShuffleSampler(50, seed=7)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(50)) and len(sampler) == 50
        orders.append(order)
    assert orders[0] != orders[1] != orders[2]
    replay = EpochShuffleSampler(50, seed=7)
    replay.set_epoch(1)
    assert list(replay) == orders[1]
    other_seed = EpochShuffleSampler(50, seed=8)
    other_seed.set_epoch(1)
    assert list(other_seed) != orders[1]


def test_sampler_drives_a_dataloader():
    ds = ChunkDataset(TOKENS, seq_length=100)
    sampler = EpochShuffleSampler(len(ds), seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=sampler)
    firsts = torch.cat([batch["input_ids"][:, 0] for batch in loader]).tolist()
    assert sorted(firsts) == list(range(0, 1000, 100))


def test_eval_subset_is_fixed_and_seeded():
    tokens = np.arange(64 * 50, dtype=np.uint16)
    subset = eval_subset(tokens, 64, n=10, seed=1)
    assert len(subset) == 10 and list(subset.indices) == sorted(set(subset.indices))
    assert list(eval_subset(tokens, 64, n=10, seed=1).indices) == list(subset.indices)
    assert list(eval_subset(tokens, 64, n=10, seed=2).indices) != list(subset.indices)
    first = subset.indices[0]
    assert subset[0]["input_ids"].tolist() == tokens[first * 64 : (first + 1) * 64].tolist()
    assert len(eval_subset(tokens, 64, n=None)) == 50 and len(eval_subset(tokens, 64, n=999)) == 50


def write_corpus(root, childes_train):
    (root / "train_10M").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "train_10M" / "childes.train").write_text(childes_train, encoding="utf-8")
    (root / "train_10M" / "gutenberg.train").write_text(
        "Once upon a time there was a little red hen.\nThe end of the story came soon.\n\n" * 30,
        encoding="utf-8",
    )
    (root / "dev" / "childes.dev").write_text("*MOT:\twhere is the little hen ?\n" * 40, encoding="utf-8")


def test_prepare_data_end_to_end(tmp_path):
    write_corpus(tmp_path / "corpus", "*CHI:\tmore cookie .\n*MOT:\tyou want a cookie ?\n\n" * 40)
    kwargs = dict(seq_length=16, vocab_size=300, eval_chunks=5, seed=0)
    data = prepare_data(tmp_path / "corpus", tmp_path / "tok", tmp_path / "cache", **kwargs)
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
    assert data.stats["tokenizer"]["trained"] and data.stats["corpus"]["layout"] == "2024"
    assert data.train_tokens == data.stats["splits"]["train"]["tokens"]
    assert len(data.train_dataset) == data.train_tokens // 16
    assert len(data.eval_dataset) == 5
    train = data.stats["splits"]["train"]
    assert train["sources"]["childes"]["documents"] == 40 and train["documents"] == 40 + 30
    stream = data.train_dataset.tokens
    assert int((np.asarray(stream) == data.tokenizer.eos_token_id).sum()) == 70  # one </s> per document
    first = data.tokenizer.decode(data.train_dataset[0]["input_ids"])
    assert first.startswith(" more cookie.\nyou want a cookie?</s>")

    again = prepare_data(tmp_path / "corpus", tmp_path / "tok", tmp_path / "cache", **kwargs)
    assert not again.stats["tokenizer"]["trained"]
    assert not again.stats["splits"]["train"]["cache"]["rebuilt"]
    assert list(again.eval_dataset.indices) == list(data.eval_dataset.indices)

    glued = prepare_data(
        tmp_path / "corpus", tmp_path / "tok", tmp_path / "cache", document_boundaries="none", **kwargs
    )
    assert data.tokenizer.eos_token_id not in np.asarray(glued.train_dataset.tokens)
    assert {p.name for p in (tmp_path / "cache").glob("train-*.bin")} == {"train-eos.bin", "train-none.bin"}


def test_prepare_data_refuses_a_split_left_empty_by_cleaning(tmp_path):
    write_corpus(tmp_path / "corpus", "*CHI:\txxx .\n")
    (tmp_path / "corpus" / "train_10M" / "gutenberg.train").unlink()
    with pytest.raises(CorpusError, match="the train split has no documents after cleaning"):
        prepare_data(tmp_path / "corpus", tmp_path / "tok", tmp_path / "cache", vocab_size=300)
