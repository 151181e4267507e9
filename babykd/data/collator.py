"""Batches of fixed-length chunks: stacked as they are, no padding, no attention mask, words counted on the host.

Why not the HF default (`DataCollatorWithPadding`, which the Trainer picks when it
is given a tokenizer): every chunk already has the same length, so padding has
nothing to do but costs a tokenizer round trip per batch (milliseconds, and
tens of milliseconds with the teacher cache's ``[T, K]`` fields), and the all-ones
attention mask it adds is worse than useless: the model checks it for padding on
every forward and the position-masked loss terms take a gather path, each a
host-device sync on a GPU. Without a mask the model and the terms see every
position, which for fixed chunks is what the mask said anyway.

The per-chunk word counts become one Python int per batch (a host value: adding
it to the words-seen ledger reads nothing from the device); every other field,
the cache's ``uint16``/``float16`` targets included, is stacked untouched (they
are widened on the device by the loss, a quarter of the bytes to copy).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from babykd.data.dataset import WORDS_KEY


class FixedChunkCollator:
    """Stack equal-shaped chunk items into a batch; sum their word counts into one int."""

    def __call__(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not items:
            raise ValueError("cannot collate an empty batch")
        batch: dict[str, Any] = {}
        for key in items[0]:
            values = [item[key] for item in items]
            batch[key] = sum(int(v) for v in values) if key == WORDS_KEY else torch.stack(values)
        return batch
