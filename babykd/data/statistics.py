"""What cleaning and tokenization did to a corpus, per source: counts, a table, a length histogram.

Why per source: the BabyLM sources differ wildly (one-line CHILDES turns
against whole Gutenberg books), and a problem in one cleaner or a tokenizer
that splits one register badly hides in corpus-wide totals. These are the
numbers the walkthrough notebook shows and the data provenance records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from transformers import PreTrainedTokenizerBase

from .corpus import SourceDocuments

#: Documents tokenized per call, to bound memory on whole-corpus statistics.
TOKENIZE_BATCH = 1000


@dataclass(frozen=True)
class SourceStatistics:
    """One file's contribution to one split, before and after cleaning (tokens if a tokenizer was given)."""

    source: str
    documents: int
    words: int
    raw_chars: int
    clean_chars: int
    tokens: int | None = None
    #: Control characters (NUL and the like) stripped before cleaning.
    control_chars: int = 0

    @property
    def kept_fraction(self) -> float:
        """Share of the raw characters cleaning kept."""
        return self.clean_chars / self.raw_chars if self.raw_chars else 0.0

    @property
    def tokens_per_word(self) -> float | None:
        """Tokenizer fertility: how many tokens an average whitespace word costs."""
        return None if self.tokens is None or not self.words else self.tokens / self.words

    def counts(self) -> dict[str, int]:
        """The counts as plain data (no token count when none was taken), for provenance files."""
        return {key: value for key, value in asdict(self).items() if key != "source" and value is not None}


def document_token_lengths(documents: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> np.ndarray:
    """Tokens per document (no special tokens), tokenized in batches."""
    lengths: list[int] = []
    for start in range(0, len(documents), TOKENIZE_BATCH):
        batch = list(documents[start:start + TOKENIZE_BATCH])
        lengths.extend(len(ids) for ids in tokenizer(batch, add_special_tokens=False)["input_ids"])
    return np.asarray(lengths, dtype=np.int64)


def source_statistics(parts: Sequence[SourceDocuments],
                      tokenizer: PreTrainedTokenizerBase | None = None) -> list[SourceStatistics]:
    """One row per file of a split (as :meth:`Corpus.read` returns it); tokens counted if `tokenizer` is given."""
    return [
        SourceStatistics(
            source=part.file.label,
            documents=len(part.documents),
            words=sum(len(doc.split()) for doc in part.documents),
            raw_chars=part.raw_chars,
            clean_chars=sum(map(len, part.documents)),
            tokens=None if tokenizer is None else int(document_token_lengths(part.documents, tokenizer).sum()),
            control_chars=part.control_chars,
        )
        for part in parts
    ]


def statistics_table(rows: Sequence[SourceStatistics]) -> str:
    """A markdown table of `rows` with a total line."""
    total = SourceStatistics(
        "total", *(sum(getattr(r, name) for r in rows) for name in ("documents", "words", "raw_chars", "clean_chars")),
        tokens=None if any(r.tokens is None for r in rows) else sum(r.tokens for r in rows),
        control_chars=sum(r.control_chars for r in rows),
    )
    lines = ["| source | documents | words | kept chars | tokens | tokens/word |", "|---|---:|---:|---:|---:|---:|"]
    for row in [*rows, total]:
        tokens = "" if row.tokens is None else f"{row.tokens:,}"
        fertility = "" if row.tokens_per_word is None else f"{row.tokens_per_word:.2f}"
        lines.append(f"| {row.source} | {row.documents:,} | {row.words:,} | {row.kept_fraction:.1%} "
                     f"| {tokens} | {fertility} |")
    return "\n".join(lines) + "\n"


def plot_length_histogram(lengths: Mapping[str, np.ndarray], seq_length: int, bins: int = 40) -> Figure:
    """Document lengths in tokens per source (log-spaced bins), with the training chunk length marked.

    Shows how much of each source is shorter than one chunk (packed with its
    neighbours) or spans many chunks (cut at chunk boundaries).
    """
    if not lengths:
        raise ValueError("no sources to plot")
    longest = max([seq_length, *(int(values.max()) for values in lengths.values() if values.size)])
    edges = np.geomspace(1, longest + 1, bins)
    fig = Figure(figsize=(7, 3.8), layout="constrained")
    ax = fig.add_subplot()
    for source, values in lengths.items():
        ax.hist(np.maximum(values, 1), bins=edges, histtype="step", linewidth=1.5, label=f"{source} ({values.size:,})")
    ax.axvline(seq_length, color="grey", linestyle="--", linewidth=1, label=f"chunk length {seq_length}")
    ax.set_xscale("log")
    ax.set_xlabel("document length (tokens)")
    ax.set_ylabel("documents")
    ax.legend(fontsize="small")
    return fig
