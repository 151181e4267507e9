"""The one entry point the training code calls: corpus in, tokenizer and datasets out.

:func:`prepare_data` reads and cleans the corpus, trains the tokenizer on the
train split (or loads the saved one), builds or reuses the token caches and
wraps them as datasets. :func:`clean_corpus` and :func:`cleaning_examples`
expose the cleaning step on its own for inspection (the walkthrough notebook).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Subset
from transformers import PreTrainedTokenizerFast

from ..atomic import atomic_write_text
from .cache import DocumentBoundaries, check_boundaries, load_or_build
from .corpus import SPLITS, Corpus, CorpusError, DocFormat, open_corpus
from .dataset import ChunkDataset, eval_subset
from .statistics import source_statistics
from .tokenizer import has_tokenizer, load_tokenizer, save_tokenizer, train_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Everything training needs from the data side; ``stats`` is JSON-ready provenance."""

    tokenizer: PreTrainedTokenizerFast
    train_dataset: ChunkDataset
    eval_dataset: Subset
    train_tokens: int
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CleaningExample:
    """The start of one corpus file before and after its source's cleaning."""

    source: str
    path: str
    before: str
    after: str


def prepare_data(
    corpus: str | Path,
    tokenizer_dir: str | Path,
    cache_dir: str | Path,
    *,
    seq_length: int = 128,
    vocab_size: int = 16000,
    min_frequency: int = 2,
    document_boundaries: DocumentBoundaries = "eos",
    random_offset: bool = False,
    eval_chunks: int | None = 2000,
    seed: int = 0,
    doc_format: DocFormat = "auto",
    dev_every: int = 10,
) -> PreparedData:
    """Clean ``corpus``, get the tokenizer, build/load the token caches, return the datasets.

    The tokenizer is trained on the train split only when ``tokenizer_dir``
    holds none, else loaded (a size other than ``vocab_size`` is then only
    warned about). Caches live in ``cache_dir`` as ``{split}-{document_boundaries}``.
    ``eval_dataset`` is a fixed, seeded subset of ``eval_chunks`` dev chunks
    (all of them if None). ``doc_format``/``dev_every`` apply to plain-text corpora.
    """
    check_boundaries(document_boundaries)
    started = time.perf_counter()
    opened = open_corpus(corpus, doc_format=doc_format, dev_every=dev_every)
    parts = {split: opened.read(split) for split in SPLITS}
    documents = {split: [d for part in parts[split] for d in part.documents] for split in SPLITS}
    for split, docs in documents.items():
        if not docs:
            raise CorpusError(corpus, f"the {split} split has no documents after cleaning")
    timings = {"clean_s": time.perf_counter() - started}

    started = time.perf_counter()
    trained = not has_tokenizer(tokenizer_dir)
    if trained:
        train_docs = documents["train"]
        tokenizer = train_tokenizer(
            train_docs, vocab_size=vocab_size, min_frequency=min_frequency, length=len(train_docs)
        )
        save_tokenizer(tokenizer, tokenizer_dir)
    tokenizer = load_tokenizer(tokenizer_dir)  # the same object whether just trained or reused
    if not trained and len(tokenizer) != vocab_size:
        logger.warning(
            "%s holds a tokenizer of %d tokens, not vocab_size=%d; using it "
            "(delete the directory to retrain)", tokenizer_dir, len(tokenizer), vocab_size,
        )
    timings["tokenizer_s"] = time.perf_counter() - started

    started = time.perf_counter()
    caches = {
        split: load_or_build(
            Path(cache_dir) / f"{split}-{document_boundaries}",
            documents[split],
            tokenizer,
            document_boundaries=document_boundaries,
        )
        for split in SPLITS
    }
    timings["cache_s"] = time.perf_counter() - started

    train_dataset = ChunkDataset(
        caches["train"].tokens, seq_length, random_offset=random_offset, seed=seed
    )
    eval_dataset = eval_subset(caches["dev"].tokens, seq_length, eval_chunks, seed)
    stats = {
        "corpus": {"location": opened.location, "layout": opened.layout},
        "splits": {
            split: {
                "sources": {row.source: row.counts() for row in source_statistics(parts[split])},
                "documents": len(documents[split]),
                "words": sum(len(d.split()) for d in documents[split]),
                "tokens": int(caches[split].tokens.size),
                "cache": {"rebuilt": caches[split].built, "reason": caches[split].reason},
            }
            for split in SPLITS
        },
        "tokenizer": {"dir": str(tokenizer_dir), "trained": trained, "vocab_size": len(tokenizer)},
        "dataset": {
            "seq_length": seq_length,
            "document_boundaries": document_boundaries,
            "random_offset": random_offset,
            "train_chunks": len(train_dataset),
            "eval_chunks": len(eval_dataset),
            "seed": seed,
        },
        "timings_s": {name: round(value, 2) for name, value in timings.items()},
    }
    logger.info(
        "data ready: %d train tokens (%d chunks of %d), %d eval chunks",
        caches["train"].tokens.size, len(train_dataset), seq_length, len(eval_dataset),
    )
    return PreparedData(tokenizer, train_dataset, eval_dataset, int(caches["train"].tokens.size), stats)


def clean_corpus(
    corpus: str | Path | Corpus, out_dir: str | Path, *, doc_format: DocFormat = "auto"
) -> list[Path]:
    """Write the cleaned text of every file to ``out_dir/{split}/{label}.txt``.

    Documents are separated by one blank line (cleaned documents contain none),
    the same convention the readers use, so the output is itself a readable corpus.
    """
    opened = corpus if isinstance(corpus, Corpus) else open_corpus(corpus, doc_format=doc_format)
    written = []
    for split in SPLITS:
        for part in opened.read(split):
            path = Path(out_dir) / split / f"{part.file.label}.txt"
            atomic_write_text(path, "\n\n".join(part.documents) + "\n")
            written.append(path)
    return written


def cleaning_examples(
    corpus: str | Path | Corpus, *, split: str = "train", max_chars: int = 1500,
    doc_format: DocFormat = "auto",
) -> list[CleaningExample]:
    """Before/after views of each file of ``split``: its first ``max_chars`` characters
    (cut after a whole line or document) and what cleaning makes of them."""
    opened = corpus if isinstance(corpus, Corpus) else open_corpus(corpus, doc_format=doc_format)
    examples = []
    for file in opened.files:
        if file.split in (split, None):
            before = file.excerpt(max_chars)
            after = "\n\n".join(file.clean(before))
            examples.append(CleaningExample(file.label, str(file.path), before, after))
    return examples
