"""Write the demo corpus in the BabyLM 2024 layout, from the demo grammar.

``OUT/train_10M/{childes,gutenberg}.train`` and ``OUT/dev/{childes,gutenberg}.dev``:
CHILDES-style transcripts (one utterance a line, no speaker tags) and
storybook paragraphs (one a line), documents separated by a blank line, the
way the project's corpus loader reads the real release. Each file has its own
random stream named by seed, split and source, so output is byte-identical
for a seed whatever else changes.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from ...run.atomic import atomic_directory
from .cfg import Choice, Grammar, leaves
from .render import chunks, prose, speech_line

#: Share of each split's words that are child-directed speech (the rest are stories).
SPEECH_SHARE = 0.3
#: (directory, file suffix) per split, as in the 2024 release.
SPLIT_DIRS = {"train": ("train_10M", "train"), "dev": ("dev", "dev")}
SOURCES = ("childes", "gutenberg")

#: A document maker: (grammar, rng, seen chunks) -> lines of one document.
DocumentMaker = Callable[[Grammar, random.Random, set], list[str]]


def _cast(grammar: Grammar, rng: random.Random) -> dict[str, Choice]:
    """A document's few recurring names (and a home town): stories keep their characters."""
    cast: dict[str, Choice] = {}
    for label in ("NAME.m", "NAME.f", "TOWN"):
        picks = [grammar.words[label].pick(rng) for _ in range(2)]
        cast[label] = Choice.of(picks, [3, 1])
    people = cast["NAME.m"].items + cast["NAME.f"].items
    cast["POSS"] = Choice.of([p + "'s" for p in people], [3, 1, 3, 1])
    return cast


def _sentence(grammar: Grammar, symbol: str, rng: random.Random, cast: dict[str, Choice],
              seen: set) -> list[str]:
    tokens = leaves(grammar.sample(symbol, rng, cast))
    seen.update(chunks(tokens))
    return tokens


def transcript(grammar: Grammar, rng: random.Random, seen: set) -> list[str]:
    """One CHILDES-style transcript: 20-120 utterances, one per line."""
    cast = _cast(grammar, rng)
    return [speech_line(_sentence(grammar, "UTT", rng, cast, seen))
            for _ in range(rng.randint(20, 120))]


def story(grammar: Grammar, rng: random.Random, seen: set) -> list[str]:
    """One storybook: an opening, 3-9 paragraphs of 2-6 sentences, sometimes a closing line."""
    cast = _cast(grammar, rng)
    paragraphs = []
    for p in range(rng.randint(3, 9)):
        symbols = ["OPENER"] * (p == 0) + ["SENT"] * rng.randint(2, 6)
        paragraphs.append([_sentence(grammar, s, rng, cast, seen) for s in symbols])
    if rng.random() < 0.5:
        paragraphs[-1].append(_sentence(grammar, "CLOSER", rng, cast, seen))
    return [" ".join(prose(sentence) for sentence in paragraph) for paragraph in paragraphs]


MAKERS: dict[str, DocumentMaker] = {"childes": transcript, "gutenberg": story}


def generate_text(maker: DocumentMaker, grammar: Grammar, rng: random.Random, target_words: int,
                  seen: set, desc: str = "") -> tuple[str, int]:
    """Documents from `maker` until at least `target_words` words; (file text, word count).

    Words are whitespace-separated tokens (``wc -w``), punctuation included,
    as the BabyLM word budgets are counted.
    """
    documents, words = [], 0
    with tqdm(total=target_words, unit="word", desc=desc, disable=None, leave=False) as bar:
        while words < target_words:
            lines = maker(grammar, rng, seen)
            n = sum(len(line.split()) for line in lines)
            documents.append("\n".join(lines))
            words += n
            bar.update(n)
    return "\n\n".join(documents) + "\n", words


def write_split(out_dir: Path, split: str, total_words: int, grammar: Grammar, seed: int,
                seen: set) -> int:
    """Write both source files of one split atomically; returns the words written."""
    dirname, suffix = SPLIT_DIRS[split]
    targets = {"childes": round(total_words * SPEECH_SHARE)}
    targets["gutenberg"] = total_words - targets["childes"]
    written = 0
    with atomic_directory(out_dir / dirname) as tmp:
        for source in SOURCES:
            rng = random.Random(f"babykd-demo/{seed}/{split}/{source}")
            text, words = generate_text(MAKERS[source], grammar, rng, targets[source], seen,
                                        desc=f"{source}.{suffix}")
            (tmp / f"{source}.{suffix}").write_text(text, encoding="utf-8")
            written += words
    return written
