"""The training collator: fixed chunks stacked as they are (no padding, no mask), cache fields untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from babykd.data.collator import FixedChunkCollator
from babykd.data.dataset import WORDS_KEY, ChunkDataset
from babykd.teacher_cache import IDS_KEY, LOG_PROBS_KEY


def chunk_items(n: int, with_cache: bool) -> list[dict[str, torch.Tensor]]:
    tokens = np.arange(200, dtype=np.uint16) % 50
    dataset = ChunkDataset(tokens, seq_length=16, word_starts=(tokens % 3 == 0).astype(np.int8))
    items = [dataset[i] for i in range(n)]
    if with_cache:
        for i, item in enumerate(items):
            item[IDS_KEY] = torch.full((16, 4), i, dtype=torch.uint16)
            item[LOG_PROBS_KEY] = torch.full((16, 4), -0.5 * i, dtype=torch.float16)
    return items


def test_batch_is_the_stacked_chunks_without_attention_mask_and_words_as_one_int() -> None:
    items = chunk_items(3, with_cache=False)
    batch = FixedChunkCollator()(items)
    assert set(batch) == {"input_ids", "labels", WORDS_KEY}  # no attention_mask: nothing is padded
    assert torch.equal(batch["input_ids"], torch.stack([item["input_ids"] for item in items]))
    assert torch.equal(batch["labels"], batch["input_ids"])  # no -100: every position is scored
    assert batch[WORDS_KEY] == sum(int(item[WORDS_KEY]) for item in items) and isinstance(batch[WORDS_KEY], int)


def test_teacher_cache_fields_pass_through_in_their_stored_dtypes() -> None:
    items = chunk_items(2, with_cache=True)
    batch = FixedChunkCollator()(items)
    assert batch[IDS_KEY].dtype == torch.uint16 and batch[LOG_PROBS_KEY].dtype == torch.float16
    assert batch[IDS_KEY].shape == (2, 16, 4) and torch.equal(batch[IDS_KEY][1].long(), torch.ones(16, 4).long())
    assert torch.equal(batch[LOG_PROBS_KEY][1], torch.full((16, 4), -0.5, dtype=torch.float16))


def test_chunks_of_different_lengths_are_refused() -> None:
    items = chunk_items(2, with_cache=False)
    items[1]["input_ids"] = items[1]["input_ids"][:8]
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        FixedChunkCollator()(items)
