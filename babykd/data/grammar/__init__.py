"""The built-in demo corpus: a probabilistic grammar of simple child-directed English.

A new user can watch the whole method (tokenizer, teachers, distillation,
zero-shot evaluation) run on a laptop in minutes without downloading
anything: :func:`generate_demo_corpus` writes a few hundred thousand words in
the BabyLM 2024 layout plus BLiMP-format minimal-pair sets drawn from the same
grammar (subject-verb agreement, across relative clauses, determiner-noun,
reflexives, question auxiliaries).

Modules: ``morphology`` (inflection), ``lexicon`` (words), ``rules`` (the
grammar), ``cfg`` (sampling and recognition), ``render`` (text styles),
``corpus`` (the corpus files), ``pairs`` (minimal pairs).
CLI: ``python -m babykd.data.grammar OUT [--train-words N] [--seed S]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .cfg import Grammar
from .corpus import write_split
from .pairs import PAIR_TASKS, is_sentence, write_pairs
from .rules import demo_grammar

__all__ = ["DemoCorpus", "Grammar", "PAIR_TASKS", "demo_grammar", "generate_demo_corpus",
           "is_sentence"]

#: Where the pair files go inside the output directory.
PAIRS_SUBDIR = Path("eval") / "demo_pairs"
MIN_SPLIT_WORDS = 100


@dataclass(frozen=True)
class DemoCorpus:
    """What :func:`generate_demo_corpus` wrote."""

    corpus_dir: Path  #: holds ``train_10M/`` and ``dev/``: pass it to the corpus loader
    pairs_dir: Path  #: one BLiMP-format ``UID.jsonl`` per minimal-pair task
    train_words: int  #: whitespace-separated words written to ``train_10M/``
    dev_words: int  #: the same for ``dev/``
    pairs: dict[str, int]  #: pairs written per task UID


def generate_demo_corpus(out_dir: Path, *, train_words: int = 300_000, dev_words: int = 30_000,
                         pairs_per_task: int = 300, seed: int = 0) -> DemoCorpus:
    """Write the demo corpus and its minimal pairs under `out_dir`; same seed, same bytes.

    Word targets are met to within one document (a transcript or a story).
    Minimal pairs never repeat a sentence or clause of the train or dev text.
    """
    for name, value, low in (("train_words", train_words, MIN_SPLIT_WORDS),
                             ("dev_words", dev_words, MIN_SPLIT_WORDS),
                             ("pairs_per_task", pairs_per_task, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    out_dir = Path(out_dir)
    grammar = demo_grammar()
    seen: set[tuple[str, ...]] = set()  # every clause of the corpus, lower-cased
    words = {split: write_split(out_dir, split, n, grammar, seed, seen)
             for split, n in (("train", train_words), ("dev", dev_words))}
    counts = write_pairs(out_dir / PAIRS_SUBDIR, grammar, pairs_per_task, seed, seen)
    return DemoCorpus(out_dir, out_dir / PAIRS_SUBDIR, words["train"], words["dev"], counts)
