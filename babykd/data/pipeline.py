"""The one entry point the training code calls: corpus in, tokenizer and datasets out.

:func:`prepare_data` reads and cleans the corpus, trains the tokenizer on the
train split (or loads the saved one), builds or reuses the token caches and
wraps them as datasets. :func:`clean_corpus` and :func:`cleaning_examples`
expose the cleaning step on its own for inspection (the walkthrough notebook).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from torch.utils.data import Subset
from transformers import PreTrainedTokenizerFast

from ..run.atomic import atomic_write_text, remove_leftovers
from ..config import DataConfig
from ..run.lock import CACHE_LOCK_FILE, folder_lock
from .cache import DocumentBoundaries, check_boundaries, load_or_build, text_fingerprint
from .corpus import SPLITS, Corpus, CorpusError, DocFormat, SourceDocuments, open_corpus
from .dataset import ChunkDataset, TooShortForChunks, eval_subset
from .hub import DatasetsCorpus, is_datasets_corpus, open_datasets_corpus
from .statistics import source_statistics
from .words import word_starts, word_table
from .tokenizer import has_tokenizer, load_tokenizer, save_tokenizer, tokenizer_fingerprint, train_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Everything training needs from the data side; ``stats`` is JSON-ready provenance."""

    tokenizer: PreTrainedTokenizerFast
    train_dataset: ChunkDataset
    eval_dataset: Subset
    train_tokens: int
    #: The token-cache folder used (derived ones sit under it, e.g. the teacher cache).
    cache_dir: Path
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def train_words(self) -> int:
        """Words of the cleaned train split (``len(doc.split())`` summed): the corpus size the rules count."""
        return int(self.stats["splits"]["train"]["words"])


def data_dirs(
    corpus: str | Path, tokenizer_dir: str | Path | None, cache_dir: str | Path | None,
    default_root: str | Path | None, vocab_size: int, documents: dict[str, list[str]], min_frequency: int,
) -> tuple[Path, Path]:
    """The tokenizer and cache folders: as given, else under `default_root` keyed by the text itself.

    The key is the fingerprint of the cleaned text of both splits, never the
    corpus folder's name alone (kept in front only to make the folders readable),
    and every tokenizer setting (vocabulary size, minimum pair frequency): a
    changed setting gets its own tokenizer instead of silently reusing the old one.
    """
    if tokenizer_dir is not None and cache_dir is not None:
        return Path(tokenizer_dir), Path(cache_dir)
    if default_root is None:
        raise ValueError("prepare_data: give tokenizer_dir and cache_dir, or default_root")
    stem = Path(corpus).name.removesuffix(".zip")
    name = f"{stem}-{vocab_size}-min{min_frequency}-{text_fingerprint(documents)[:12]}"
    return (
        Path(tokenizer_dir or Path(default_root) / "tokenizers" / name),
        Path(cache_dir or Path(default_root) / "cache" / name),
    )


@dataclass(frozen=True)
class CleaningExample:
    """The start of one corpus file before and after its source's cleaning."""

    source: str
    path: str
    before: str
    after: str


def prepare_data(
    corpus: str | Path,
    tokenizer_dir: str | Path | None,
    cache_dir: str | Path | None,
    *,
    default_root: str | Path | None = None,
    seq_length: int = 128,
    vocab_size: int = 16000,
    min_frequency: int = 2,
    document_boundaries: DocumentBoundaries = "eos",
    random_offset: bool = False,
    eval_chunks: int | None = DataConfig.eval_chunks,
    seed: int = 0,
    doc_format: DocFormat = "auto",
    dev_every: int = 10,
    text_column: str = "text",
    source_column: str | None = "source",
) -> PreparedData:
    """Clean ``corpus``, get the tokenizer, build/load the token caches, return the datasets.

    The tokenizer is trained on the train split only when ``tokenizer_dir``
    holds none, else loaded (a size other than ``vocab_size`` is then only
    warned about). Caches live in ``cache_dir`` as ``{split}-{document_boundaries}``.
    A folder given as None is ``default_root/tokenizers/...`` or ``default_root/cache/...``,
    named by the corpus, ``vocab_size`` and the fingerprint of the cleaned text (see
    :func:`data_dirs`). The cache folder is locked while the tokenizer and caches are
    built or checked: a second job on the same corpus waits, then reuses them.
    ``eval_dataset`` is a fixed, seeded subset of ``eval_chunks`` dev chunks
    (all of them if None). ``doc_format``/``dev_every`` apply to plain-text corpora;
    ``text_column``/``source_column`` to a `datasets` corpus (hub id or parquet folder, see
    :mod:`babykd.data.hub`).
    """
    check_boundaries(document_boundaries)
    started = time.perf_counter()
    opened: Corpus | DatasetsCorpus = (
        open_datasets_corpus(corpus, text_column=text_column, source_column=source_column, dev_every=dev_every)
        if is_datasets_corpus(corpus) else open_corpus(corpus, doc_format=doc_format, dev_every=dev_every)
    )
    parts = {split: opened.read(split) for split in SPLITS}
    documents = {split: [d for part in parts[split] for d in part.documents] for split in SPLITS}
    for split, docs in documents.items():
        if not docs:
            raise CorpusError(corpus, f"the {split} split has no documents after cleaning")
    dev_in_train = check_dev_not_in_train(corpus, documents)
    timings = {"clean_s": time.perf_counter() - started}

    tokenizer_dir, cache_dir = data_dirs(
        corpus, tokenizer_dir, cache_dir, default_root, vocab_size, documents, min_frequency
    )
    with folder_lock(cache_dir, wait=True, purpose="another job preparing this corpus", lock_file=CACHE_LOCK_FILE):
        remove_leftovers(tokenizer_dir.parent, prefix=f"{tokenizer_dir.name}.")
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

    with split_named(corpus, "train", parts["train"]):
        train_dataset = ChunkDataset(
            caches["train"].tokens, seq_length, random_offset=random_offset, seed=seed,
            word_starts=word_starts(caches["train"].tokens, word_table(tokenizer)),
        )
    with split_named(corpus, "dev", parts["dev"]):
        eval_dataset = eval_subset(caches["dev"].tokens, seq_length, eval_chunks, seed)
    stats = {
        "corpus": {"location": opened.location, "layout": opened.layout},
        "splits": {
            split: {
                "sources": {row.source: row.counts() for row in source_statistics(parts[split])},
                "documents": len(documents[split]),
                **({"documents_also_in_train": dev_in_train} if split == "dev" else {}),
                "words": sum(len(d.split()) for d in documents[split]),
                "tokens": int(caches[split].tokens.size),
                "cache": {"rebuilt": caches[split].built, "reason": caches[split].reason},
            }
            for split in SPLITS
        },
        "tokenizer": {
            "dir": str(tokenizer_dir), "trained": trained, "vocab_size": len(tokenizer),
            "fingerprint": tokenizer_fingerprint(tokenizer)[:16],
        },
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
    return PreparedData(tokenizer, train_dataset, eval_dataset, int(caches["train"].tokens.size), cache_dir, stats)


#: Above this share of dev documents found verbatim in train, the corpus is refused: short lines
#: ("yes .") repeat naturally, but most of dev in train means a copy of the corpus was read too.
MAX_DEV_IN_TRAIN = 0.5


def check_dev_not_in_train(corpus: str | Path, documents: dict[str, list[str]]) -> int:
    """How many dev documents also occur in train (exact duplicates); refuse when most of them do."""
    train = set(documents["train"])
    repeated = sum(doc in train for doc in documents["dev"])
    if repeated > MAX_DEV_IN_TRAIN * len(documents["dev"]):
        raise CorpusError(
            corpus, f"{repeated:,} of the {len(documents['dev']):,} dev documents also occur in train (exact "
            "duplicates): the corpus holds a copy of its own text (a stray copy of a file, or a dev file among "
            "the train files); remove it so that dev measures unseen text"
        )
    if repeated:
        logger.warning("%s: %d of %d dev documents also occur in train", corpus, repeated, len(documents["dev"]))
    return repeated


@contextlib.contextmanager
def split_named(corpus: str | Path, split: str, parts: Sequence[SourceDocuments]) -> Iterator[None]:
    """A split too short for one chunk of ``seq_length``: say which split and which files."""
    try:
        yield
    except TooShortForChunks as error:  # only this: any other ValueError is not the corpus's length
        files = ", ".join(str(part.file.path) for part in parts)
        raise CorpusError(corpus, f"the {split} split ({files}) is too short for data.seq_length: {error}") from error


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
