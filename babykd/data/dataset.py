"""Fixed-length chunks over a token stream, a per-epoch shuffling sampler, a fixed eval subset.

Why contiguous chunks: the BabyLlama recipe trains on consecutive 128-token
windows of the concatenated corpus; no padding is ever needed and every token
is seen once per epoch. Two kinds of randomness are kept separate and seeded:
the *order* of chunks (:class:`EpochShuffleSampler`, a new permutation each
epoch) and, optionally, *where* chunks start (:meth:`ChunkDataset.set_epoch`
shifts all chunk starts by an offset drawn per epoch, so a sentence cut at a
chunk border in one epoch is seen whole in another).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, Subset


#: Batch key of the per-chunk word count (popped by the trainer before the forward pass).
WORDS_KEY = "words"


def _rng(*key: int) -> np.random.Generator:
    """A generator determined by ``key`` alone (seed, epoch, purpose): reproducible anywhere."""
    return np.random.default_rng(list(key))


class TooShortForChunks(ValueError):
    """A token stream that holds no chunk of seq_length: the data's fault, named by the caller (split, files)."""


class ChunkDataset(Dataset):
    """Map-style dataset of contiguous ``seq_length`` slices of ``tokens``.

    Item ``i`` is ``tokens[offset + i*L : offset + (i+1)*L]`` as
    ``{"input_ids", "labels"}`` LongTensors (equal: HF causal LMs shift labels
    themselves), plus ``"words"``, the number of words starting in the chunk
    when ``word_starts`` (see :mod:`babykd.data.words`) is given: the trainer
    sums it over the chunks its optimizer steps consume (words seen). Without ``random_offset`` the offset is 0. With it, the offset
    is redrawn in ``[0, L)`` by :meth:`set_epoch`, and the length is the number
    of chunks that fit for *any* offset, so a sampler sized once stays valid.
    The last partial chunk is dropped.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        seq_length: int = 128,
        *,
        random_offset: bool = False,
        seed: int = 0,
        word_starts: np.ndarray | None = None,
    ) -> None:
        if seq_length < 1:
            raise ValueError(f"seq_length must be positive, not {seq_length}")
        usable = len(tokens) - (seq_length - 1 if random_offset else 0)
        if usable < seq_length:
            raise TooShortForChunks(
                f"a token stream of {len(tokens)} tokens holds no chunk of {seq_length} tokens"
                + (" at every offset" if random_offset else "")
            )
        if word_starts is not None and len(word_starts) != len(tokens):
            raise ValueError(f"word_starts has {len(word_starts)} entries for {len(tokens)} tokens")
        self.tokens = tokens
        self.word_starts = word_starts
        self.seq_length = seq_length
        self.random_offset = random_offset
        self.seed = seed
        self._length = usable // seq_length
        self.offset = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's chunk offset (a no-op without ``random_offset``)."""
        if self.random_offset:
            self.offset = int(_rng(self.seed, epoch, 1).integers(0, self.seq_length))

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self._length <= index < self._length:
            raise IndexError(f"chunk {index} out of range for {self._length} chunks")
        start = self.offset + (index % self._length) * self.seq_length
        ids = torch.from_numpy(np.asarray(self.tokens[start : start + self.seq_length], dtype=np.int64))
        item = {"input_ids": ids, "labels": ids.clone()}
        if self.word_starts is not None:
            item[WORDS_KEY] = torch.tensor(int(self.word_starts[start : start + self.seq_length].sum()))
        return item

    def total_words(self) -> int:
        """Words starting in all chunks at the current offset: one epoch's words seen, tail excluded."""
        if self.word_starts is None:
            raise ValueError("this dataset was built without word_starts")
        start = self.offset
        return int(self.word_starts[start : start + self._length * self.seq_length].sum(dtype=np.int64))


class EpochShuffleSampler(Sampler[int]):
    """A permutation of ``range(n)`` that changes with :meth:`set_epoch`, seeded and reproducible.

    The same ``(seed, epoch)`` always gives the same order, so a resumed run
    sees exactly the batches it would have seen.
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        if n < 0:
            raise ValueError(f"n must be non-negative, not {n}")
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(_rng(self.seed, self.epoch, 0).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n

    def indices_read(self, samples: int | None) -> np.ndarray:
        """The sorted indices a run that draws `samples` items from epoch 0 on reads (None: all of them).

        Within the first epoch that is the head of its permutation; a run that goes past it has
        read every index. The teacher cache builds exactly these chunks' targets.
        """
        if samples is None or samples >= self.n:
            return np.arange(self.n)
        return np.sort(_rng(self.seed, 0, 0).permutation(self.n)[:max(samples, 0)])


def eval_subset(tokens: np.ndarray, seq_length: int = 128, n: int | None = None, seed: int = 0) -> Subset:
    """``n`` chunks of ``tokens`` drawn without replacement with ``seed`` (all if ``n`` is None).

    Fixed chunks (offset 0, sorted indices) so every evaluation of every run
    scores the same text and losses are comparable across runs.
    """
    chunks = ChunkDataset(tokens, seq_length)
    if n is None or n >= len(chunks):
        return Subset(chunks, list(range(len(chunks))))
    if n < 1:
        raise ValueError(f"the evaluation subset needs at least one chunk, not {n}")
    picked = np.sort(_rng(seed, 0, 2).choice(len(chunks), size=n, replace=False))
    return Subset(chunks, picked.tolist())
