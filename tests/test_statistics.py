"""Per-source cleaning and tokenization statistics, the table and the length histogram."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from babykd.data import open_corpus, train_tokenizer
from babykd.data.statistics import (
    SourceStatistics, document_token_lengths, plot_length_histogram, source_statistics, statistics_table,
)


@pytest.fixture(scope="module")
def train_parts(demo_corpus):
    return open_corpus(demo_corpus.corpus_dir).read("train")


@pytest.fixture(scope="module")
def tokenizer(train_parts):
    docs = [d for part in train_parts for d in part.documents]
    return train_tokenizer(docs, vocab_size=400, show_progress=False)


def test_counts_per_source(train_parts, tokenizer) -> None:
    rows = source_statistics(train_parts, tokenizer)
    assert [row.source for row in rows] == ["childes", "gutenberg"]
    for row, part in zip(rows, train_parts):
        assert row.documents == len(part.documents)
        assert row.words == sum(len(d.split()) for d in part.documents)
        assert row.tokens == sum(len(tokenizer(d, add_special_tokens=False)["input_ids"]) for d in part.documents)
        assert 0 < row.kept_fraction <= 1 and row.tokens_per_word > 1
    assert "tokens" not in source_statistics(train_parts)[0].counts()


def test_token_lengths_are_per_document_across_batches(tokenizer, monkeypatch) -> None:
    monkeypatch.setattr("babykd.data.statistics.TOKENIZE_BATCH", 2)
    docs = ["a dog.", "the dogs run to the park.", "hi", "once upon a time"]
    expected = [len(tokenizer(d, add_special_tokens=False)["input_ids"]) for d in docs]
    assert document_token_lengths(docs, tokenizer).tolist() == expected


def test_table_totals() -> None:
    rows = [SourceStatistics("a", 2, 10, 100, 50, 20), SourceStatistics("b", 3, 30, 100, 100, 30)]
    table = statistics_table(rows)
    assert "| total | 5 | 40 | 75.0% | 50 | 1.25 |" in table
    assert "| a | 2 | 10 | 50.0% | 20 | 2.00 |" in table
    untokenized = statistics_table([SourceStatistics("a", 2, 10, 100, 50)])
    assert "| total | 2 | 10 | 50.0% |  |  |" in untokenized


def test_histogram_has_one_series_per_source_and_the_chunk_length() -> None:
    figure = plot_length_histogram({"a": np.array([3, 50, 400]), "b": np.array([1, 2])}, seq_length=128)
    assert isinstance(figure, Figure)
    axes = figure.axes[0]
    assert len(axes.patches) == 2 and [line.get_xdata()[0] for line in axes.lines] == [128]
    with pytest.raises(ValueError):
        plot_length_histogram({}, 128)
