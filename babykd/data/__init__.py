"""Data pipeline: corpus -> cleaning -> tokenizer -> token cache -> chunk datasets.

Training code needs only :func:`prepare_data` (and :class:`EpochShuffleSampler`
to plug into its data loader); the other names are for tools and notebooks.
"""

from .cache import TokenCache, load_or_build
from .corpus import Corpus, CorpusError, CorpusNotFoundError, open_corpus
from .dataset import ChunkDataset, EpochShuffleSampler, eval_subset
from .pipeline import CleaningExample, PreparedData, clean_corpus, cleaning_examples, prepare_data
from .sources import CLEANERS
from .statistics import (
    SourceStatistics, document_token_lengths, plot_length_histogram, source_statistics, statistics_table,
)
from .tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

__all__ = [
    "CLEANERS",
    "ChunkDataset",
    "CleaningExample",
    "Corpus",
    "CorpusError",
    "CorpusNotFoundError",
    "EpochShuffleSampler",
    "PreparedData",
    "SourceStatistics",
    "TokenCache",
    "clean_corpus",
    "cleaning_examples",
    "document_token_lengths",
    "eval_subset",
    "load_or_build",
    "load_tokenizer",
    "open_corpus",
    "plot_length_histogram",
    "prepare_data",
    "save_tokenizer",
    "source_statistics",
    "statistics_table",
    "train_tokenizer",
]
