"""Words per token: how many whitespace-separated words start at each position of a token stream.

Why: the BabyLM rules count *words seen* (whitespace-separated, as the
challenge counts its corpus: ``len(text.split())``), and the official
intermediate checkpoints are taken by words seen, not by steps. Counting them
from the tokens themselves (rather than from a corpus-wide words-per-token
average) makes the figure exact for whatever chunks a run actually consumed.

A word starts wherever a non-whitespace character follows whitespace (or the
start of the stream, or a special token such as ``</s>``, which stands between
documents). For a byte-level BPE vocabulary every token is a fixed byte string,
so three per-token facts -- word starts inside the token, whether its first
byte is non-whitespace, whether its last byte is whitespace -- determine the
count for a whole stream in one vectorised pass.

Exactness: equal to ``sum(len(doc.split()))`` over the documents whenever every
whitespace character is ASCII or whole within one token. A multi-byte Unicode
space (U+0085, U+2028, ...) that BPE splits across tokens is counted as part of
a word; NFKC (the tokenizer's normaliser) already turns the common ones (no-break
and typographic spaces) into ASCII spaces. ``tests/test_words.py`` measures the
agreement on a corpus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

#: Bytes that ``str.split()`` treats as whitespace (the ASCII ones).
_ASCII_WHITESPACE = frozenset(b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f")


@dataclass(frozen=True)
class WordTable:
    """Per-token-id facts that decide where words start (arrays indexed by token id)."""

    inner_starts: np.ndarray  # uint8: words starting inside the token after its first byte
    opens_with_word: np.ndarray  # bool: first byte is not whitespace
    ends_with_space: np.ndarray  # bool: last byte is whitespace (special tokens count as space)


def _token_bytes(tokenizer: PreTrainedTokenizerBase) -> list[bytes | None]:
    """Each id's bytes (byte-level BPE); None for special tokens."""
    byte_of = _byte_level_alphabet()
    special = set(tokenizer.all_special_ids)
    vocab = tokenizer.get_vocab()
    out: list[bytes | None] = [None] * (max(vocab.values()) + 1)
    for token, index in vocab.items():
        if index in special:
            continue
        try:
            out[index] = bytes(byte_of[char] for char in token)
        except KeyError:  # an added token outside the byte alphabet: take its UTF-8 text
            out[index] = token.encode("utf-8")
    return out


def _byte_level_alphabet() -> dict[str, int]:
    """The GPT-2 byte-level alphabet (what `tokenizers` ByteLevel uses): stand-in character -> byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    shift = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + shift)
            shift += 1
    return {chr(char): byte for byte, char in zip(printable, chars)}


def word_table(tokenizer: PreTrainedTokenizerBase) -> WordTable:
    """The :class:`WordTable` of a byte-level BPE tokenizer."""
    pieces = _token_bytes(tokenizer)
    size = len(pieces)
    inner = np.zeros(size, dtype=np.uint8)
    opens = np.zeros(size, dtype=bool)
    ends = np.ones(size, dtype=bool)  # special tokens separate words like whitespace
    for index, piece in enumerate(pieces):
        if not piece:
            continue
        space = [byte in _ASCII_WHITESPACE for byte in piece]
        opens[index] = not space[0]
        ends[index] = space[-1]
        inner[index] = sum(1 for i in range(1, len(piece)) if space[i - 1] and not space[i])
    return WordTable(inner, opens, ends)


def word_starts(tokens: np.ndarray, table: WordTable) -> np.ndarray:
    """Number of words starting at each position of ``tokens`` (uint8, same length).

    The stream's first position counts as following whitespace.
    """
    ids = np.asarray(tokens, dtype=np.int64)
    if ids.size == 0:
        return np.zeros(0, dtype=np.uint8)
    after_space = np.empty(ids.size, dtype=bool)
    after_space[0] = True
    after_space[1:] = table.ends_with_space[ids[:-1]]
    return (table.inner_starts[ids] + (table.opens_with_word[ids] & after_space)).astype(np.uint8)


def count_words(text: str) -> int:
    """Words as the challenge counts them: whitespace-separated."""
    return len(text.split())
