"""Grammar tokens -> text, in the two styles of the BabyLM corpus, and back.

The grammar emits canonical tokens: ``a`` for both articles, punctuation as
separate tokens, ``<q``/``q>`` around quoted speech. CHILDES transcripts keep
that spacing (``it's a doggie .``); books and the minimal pairs use ordinary
prose (``"Look!" shouted Pip.``).
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, Sequence

from .morphology import indefinite_article

SENTENCE_END = (".", "?", "!")
PUNCTUATION = frozenset(SENTENCE_END + (",",))
OPEN_QUOTE, CLOSE_QUOTE = "<q", "q>"
CHUNK_BREAKS = PUNCTUATION | {OPEN_QUOTE, CLOSE_QUOTE}


def fix_articles(tokens: Sequence[str]) -> list[str]:
    """Turn the canonical article 'a' into 'a'/'an' by the next word (an apple, a unicorn)."""
    out = list(tokens)
    for i in range(len(out) - 1):
        if out[i] == "a":
            out[i] = indefinite_article(out[i + 1])
    return out


def speech_line(tokens: Sequence[str]) -> str:
    """CHILDES style: lower case, punctuation spaced off (``where is the ball ?``)."""
    return " ".join(fix_articles(tokens))


def prose(tokens: Sequence[str]) -> str:
    """Book style: capitalised, punctuation attached, quotes as ``"``."""
    words: list[str] = []
    capitalize, glue = True, False
    for tok in fix_articles(tokens):
        if tok in PUNCTUATION or tok == CLOSE_QUOTE:
            words[-1] += '"' if tok == CLOSE_QUOTE else tok
            continue
        if tok == OPEN_QUOTE:
            words.append('"')
            capitalize = glue = True
            continue
        if capitalize:
            tok = tok[:1].upper() + tok[1:]
            capitalize = False
        if glue:
            words[-1] += tok
            glue = False
        else:
            words.append(tok)
    return " ".join(words)


def chunks(tokens: Iterable[str]) -> Iterator[tuple[str, ...]]:
    """Lower-cased word runs between punctuation and quotes: the units checked for overlap."""
    run: list[str] = []
    for tok in tokens:
        if tok in CHUNK_BREAKS:
            if run:
                yield tuple(run)
            run = []
        else:
            run.append(tok.lower())
    if run:
        yield tuple(run)


_TOKEN = re.compile(r"[\w']+|[.,!?]")


def tokens_from_prose(sentence: str, vocabulary: set[str]) -> list[str]:
    """Undo :func:`prose` for one quote-free sentence: back to canonical grammar tokens.

    The capitalised first word is lower-cased unless the grammar knows it as
    written (names, "I"). A right article becomes the canonical 'a'; a wrong
    one (``a apple``) becomes ``*a``, which no grammar derives.
    """
    tokens = _TOKEN.findall(sentence)
    if tokens and tokens[0] not in vocabulary:
        tokens[0] = tokens[0][:1].lower() + tokens[0][1:]
    for i in range(len(tokens) - 1):
        if tokens[i] in ("a", "an"):
            tokens[i] = "a" if tokens[i] == indefinite_article(tokens[i + 1]) else "*" + tokens[i]
    return tokens
