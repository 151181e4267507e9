"""Per-source cleaning of the BabyLM corpora: one function per source, a registry by name.

Why one cleaner per source: every BabyLM source was extracted from a different
format (CHAT transcripts, subtitle files, wiki dumps, Project Gutenberg books,
PTB-tokenised story sets), so each carries its own noise. A single generic
cleaner either leaves that noise in or damages text that was already clean.

Every cleaner takes the raw text of one file and returns its cleaned
documents, each a string of non-empty lines joined by ``"\\n"``. Documents are
found *before* cleaning (:func:`split_documents`) so a document never straddles
two books, transcripts or articles. Line structure is kept on purpose: the
tokenizer is byte-level, so a newline is an ordinary token that marks turns in
dialogue and paragraphs in prose.
"""

from __future__ import annotations

import html
import re
from typing import Callable, Iterable

#: A cleaner maps the raw text of one file to its cleaned documents.
Cleaner = Callable[[str], list[str]]

#: Source name (the file stem in a BabyLM split directory) -> cleaner.
CLEANERS: dict[str, Cleaner] = {}

#: The organisers' document header in BabyLM files, e.g. ``= = = April = = =``.
BABYLM_HEADER = re.compile(r"^\s*= = = (.*?) = = =\s*$")


def register(*names: str) -> Callable[[Cleaner], Cleaner]:
    """Add a cleaner to :data:`CLEANERS` under each of ``names`` (2023 and 2024 spellings)."""

    def add(cleaner: Cleaner) -> Cleaner:
        for name in names:
            CLEANERS[name] = cleaner
        return cleaner

    return add


# --------------------------------------------------------------------------- documents


def split_lines(text: str) -> list[str]:
    """Split on newlines only (``str.splitlines`` also splits on form feeds and U+2028)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def split_documents(
    text: str, header: re.Pattern[str] = BABYLM_HEADER
) -> list[tuple[str | None, list[str]]]:
    """Cut a file into ``(title, lines)`` documents.

    If any line matches ``header`` the headers delimit documents and blank lines
    inside them are only paragraph breaks (Wikipedia articles, CHILDES transcript
    headers). Otherwise documents are separated by blank lines, the BabyLM
    convention (one book or transcript per block in the substitute corpus).
    ``title`` is the header's captured text, or None.
    """
    lines = split_lines(text)
    use_headers = any(header.match(line) for line in lines)
    documents: list[tuple[str | None, list[str]]] = []
    title: str | None = None
    current: list[str] = []

    def close() -> None:
        if current:
            documents.append((title, list(current)))
        current.clear()

    for line in lines:
        match = header.match(line) if use_headers else None
        if match:
            close()
            title = match.group(1).strip() if match.groups() else None
        elif not line.strip():
            if not use_headers:
                close()
                title = None
        else:
            current.append(line)
    close()
    return documents


def clean_documents(
    text: str,
    clean_line: Callable[[str], str],
    *,
    header: re.Pattern[str] = BABYLM_HEADER,
    keep_title: bool = False,
) -> list[str]:
    """Split ``text`` into documents and clean each line; drop lines and documents left empty.

    ``keep_title`` puts a header's title back as the document's first line (an
    article title is text; a transcript's file name is not).
    """
    documents = []
    for title, lines in split_documents(text, header):
        if keep_title and title:
            lines = [title, *lines]
        cleaned = [line for line in map(clean_line, lines) if line]
        if cleaned:
            documents.append("\n".join(cleaned))
    return documents


# --------------------------------------------------------------------------- line helpers

_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r" +([.,;:!?])")
_CUES = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>")
_WORD_CHAR = re.compile(r"\w")
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([a-z])")
_LOWER_I = re.compile(r"\bi\b")
_UNINTELLIGIBLE = re.compile(r"(?<!\S)(?:xxx|yyy|www)(?!\S)")
_LEADING_DASH = re.compile(r"^[-\u2013\u2014]+\s*")
_CAPS_LABEL = re.compile(r"^[A-Z][A-Z0-9.'\-]*(?: [A-Z0-9][A-Z0-9.'\-]*){0,2}:\s+")


def squeeze(line: str) -> str:
    """Collapse runs of whitespace (tabs, NBSP, doubled spaces) to one space and strip."""
    return _SPACES.sub(" ", line).strip()


def attach_punctuation(line: str) -> str:
    """``what's that ?`` -> ``what's that?``: transcripts and tokenised text put spaces
    before punctuation that written text (and the evaluation sentences) never has."""
    return _SPACE_BEFORE_PUNCT.sub(r"\1", line)


def drop_cues(line: str) -> str:
    """Remove non-verbal cues and transcriber notes: ``[laughs]``, ``(applause)``, ``<pause>``."""
    return _CUES.sub(" ", line)


def has_words(line: str) -> str:
    """Return ``line`` if it still has a letter or digit, else "" (a lone ``.`` is no utterance)."""
    return line if _WORD_CHAR.search(line) else ""


def fix_shouting(line: str, min_letters: int = 8) -> str:
    """Mostly upper-case lines (captions of a shouted or title-cased clip) get two fixes.

    OCR of upper-case captions reads ``I`` as ``l`` (``WHAT lS THlS``); in a line
    that is mostly capitals a lower-case ``l`` can only be that error. The line
    is then sentence-cased so the model does not learn two spellings of every
    word. Short lines (``OK``, ``TV``) are left alone.
    """
    letters = [c for c in line if c.isalpha()]
    if len(letters) < min_letters or 2 * sum(c.isupper() for c in letters) < len(letters):
        return line
    lowered = line.replace("l", "I").lower()
    lowered = _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), lowered)
    return _LOWER_I.sub("I", lowered)


def _speech(line: str) -> str:
    """The shared end of every transcript cleaner: cues out, spacing fixed, empty turns dropped."""
    return has_words(attach_punctuation(squeeze(drop_cues(line))))


def _chain(*steps: Callable[[str], str]) -> Callable[[str], str]:
    """Compose line transforms left to right, stopping once a step empties the line."""

    def run(line: str) -> str:
        for step in steps:
            if not line:
                return ""
            line = step(line)
        return line

    return run


def _sub(pattern: re.Pattern[str], replacement: str) -> Callable[[str], str]:
    return lambda line: pattern.sub(replacement, line)


def _drop_if(pattern: re.Pattern[str]) -> Callable[[str], str]:
    return lambda line: "" if pattern.search(line) else line


# --------------------------------------------------------------------------- child-directed speech


@register("aochildes")
def clean_aochildes(text: str) -> list[str]:
    """2023 AO-CHILDES: one utterance per line, tokenised (``it's a chicken .``)."""
    return clean_documents(text, _chain(squeeze, attach_punctuation, has_words))


_CHAT_SPEAKER = re.compile(r"^\*[A-Za-z0-9_]+:\s*")
_CHAT_DEPENDENT_TIER = re.compile(r"^%[a-z]+:")


@register("childes")
def clean_childes(text: str) -> list[str]:
    """2024 CHILDES: ``*MOT:\\tyou want xxx ?`` lines, ``= = = file.cha = = =`` transcript headers.

    Speaker tags and dependent tiers (``%com:``) are removed, as are the CHAT
    codes for unintelligible speech (``xxx``, ``yyy``, ``www``) and bracketed
    actions. Lines without tags (the substitute corpus) pass through the same steps.
    """
    return clean_documents(
        text,
        _chain(
            _drop_if(_CHAT_DEPENDENT_TIER),
            _sub(_CHAT_SPEAKER, ""),
            _sub(_UNINTELLIGIBLE, " "),
            _speech,
        ),
    )


# --------------------------------------------------------------------------- adult speech

_SWITCHBOARD_SPEAKER = re.compile(r"^[AB]:\s*")


@register("switchboard")
def clean_switchboard(text: str) -> list[str]:
    """Switchboard telephone calls: ``A:\\tWell, I think so.``; noises as ``<laughter>``."""
    return clean_documents(text, _chain(_sub(_SWITCHBOARD_SPEAKER, ""), _speech))


@register("bnc_spoken")
def clean_bnc_spoken(text: str) -> list[str]:
    """Spoken BNC: conversations with transcriber cues like ``[laughs]`` or ``(pause)``."""
    return clean_documents(text, _speech)


# --------------------------------------------------------------------------- subtitles

_SUBTITLE_CREDIT = re.compile(
    r"\bsubtitl|\bcaption(?:ed|s)?\b|opensubtitles|\bsync(?:ed|hroni[sz]ed)? by\b|www\.|https?://",
    re.IGNORECASE,
)
_MUSIC = re.compile("[\u266a\u266b\u266c]")
_OCR_LONE_L = re.compile(r"(?<![\w'\u2019])l(?=['\u2019](?:m|ll|d|ve)\b|(?![\w'\u2019]))")


@register("open_subtitles")
def clean_open_subtitles(text: str) -> list[str]:
    """OpenSubtitles: credits (``Subtitles by ...``), sung lines (``♪ ... ♪``), cues
    (``[ Music ]``, ``(laughs)``), dialogue dashes, ``MAN:`` labels and OCR ``l`` for ``I``."""
    return clean_documents(
        text,
        _chain(
            _drop_if(_SUBTITLE_CREDIT),
            _drop_if(_MUSIC),
            drop_cues,
            squeeze,
            _sub(_LEADING_DASH, ""),
            _sub(_CAPS_LABEL, ""),
            _sub(_OCR_LONE_L, "I"),
            fix_shouting,
            has_words,
        ),
    )


_TIMESTAMP = re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d{1,3})?\b|-->")
_HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_SPEAKER_CHANGE = re.compile(r">+")
_CUE_NUMBER = re.compile(r"^\s*\d+\s*$")


def unescape_html(line: str) -> str:
    """Undo HTML escaping, however many times it was applied (QED has ``&amp;gt;``)."""
    for _ in range(4):
        unescaped = html.unescape(line)
        if unescaped == line:
            break
        line = unescaped
    return line


@register("qed")
def clean_qed(text: str) -> list[str]:
    """QED educational-video captions: doubly escaped entities and tags (``&amp;gt;&amp;gt;``,
    ``&lt;i&gt;``), caption timestamps and cue numbers, ``AMY GOODMAN:`` labels, cues,
    and upper-case captions with OCR ``l`` for ``I``."""
    return clean_documents(
        text,
        _chain(
            _drop_if(_CUE_NUMBER),
            unescape_html,
            _sub(_HTML_TAG, " "),
            _sub(_SPEAKER_CHANGE, " "),
            _sub(_TIMESTAMP, " "),
            squeeze,
            _sub(_CAPS_LABEL, ""),
            _sub(_LEADING_DASH, ""),
            fix_shouting,
            _speech,
        ),
    )


# --------------------------------------------------------------------------- written text

_WIKI_HEADING = re.compile(r"^\s*(?:=\s*)+(.*?)(?:\s*=)+\s*$")
_WIKITEXT_AT = re.compile(r" @([-,.])@ ")
_WIKI_REF = re.compile(r"<ref[^>]*/>|<ref[^>]*>.*?</ref>", re.IGNORECASE)
_WIKI_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_WIKI_LINK = re.compile(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]")
_WIKI_EMPHASIS = re.compile(r"'{2,}")


@register("simple_wikipedia", "simple_wiki", "wikipedia")
def clean_wikipedia(text: str) -> list[str]:
    """(Simple) Wikipedia: ``= = = Title = = =`` starts an article and its title is kept as
    the first line; section headings lose their ``=`` markup; leftover wiki markup
    (refs, templates, links, bold) and wikitext escapes (``1 @,@ 000``) are undone."""
    return clean_documents(
        text,
        _chain(
            _sub(_WIKI_HEADING, r"\1"),
            _sub(_WIKI_REF, " "),
            _sub(_WIKI_TEMPLATE, " "),
            _sub(_WIKI_LINK, r"\1"),
            _sub(_WIKI_EMPHASIS, ""),
            unescape_html,
            _sub(_HTML_TAG, " "),
            _sub(_WIKITEXT_AT, r"\1"),
            squeeze,
            attach_punctuation,
            has_words,
        ),
        keep_title=True,
    )


_PG_START = re.compile(r"^\s*\*{3}\s*START OF\b", re.IGNORECASE)
_PG_END = re.compile(r"^\s*\*{3}\s*END OF\b", re.IGNORECASE)
_ILLUSTRATION_LINES = re.compile(r"^[ \t]*\[Illustration[^\]]*\][ \t]*(?:\n|$)", re.IGNORECASE | re.M)
_ILLUSTRATION = re.compile(r"\[Illustration[^\]]*\]", re.IGNORECASE)
_FOOTNOTE_MARK = re.compile(r"\[\d+\]")
_ITALICS = re.compile(r"(?<!\w)_([^_\n]+)_(?!\w)")


def strip_gutenberg_boilerplate(lines: Iterable[str]) -> list[str]:
    """Drop Project Gutenberg licence text around each book.

    Everything before a book's ``*** START OF ...`` line (when the file has one)
    and from its ``*** END OF ...`` line up to the next book's start marker or
    document header is licence text. Each marker becomes a blank line so the
    book stays a document of its own.
    """
    lines = list(lines)
    keep = not any(_PG_START.match(line) for line in lines)
    out = []
    for line in lines:
        starts, ends = _PG_START.match(line), _PG_END.match(line)
        if starts or ends:
            keep = bool(starts)
            out.append("")
        elif BABYLM_HEADER.match(line):
            keep = True
            out.append(line)
        elif keep:
            out.append(line)
    return out


@register("gutenberg")
def clean_gutenberg(text: str) -> list[str]:
    """Project Gutenberg books: licence header/footer, ``[Illustration: ...]`` (which may
    span lines), footnote marks ``[1]`` and ``_italics_`` underscores."""
    text = "\n".join(strip_gutenberg_boilerplate(split_lines(text)))
    # An illustration on lines of its own goes with its lines: a blank line left
    # behind would cut the book into two documents.
    text = _ILLUSTRATION.sub(" ", _ILLUSTRATION_LINES.sub("", text))
    return clean_documents(
        text, _chain(_sub(_FOOTNOTE_MARK, ""), _sub(_ITALICS, r"\1"), squeeze, has_words)
    )


@register("children_stories")
def clean_children_stories(text: str) -> list[str]:
    """Children's stories (Kaggle): clean prose; only whitespace is normalised."""
    return clean_documents(text, _chain(squeeze, has_words))


_CBT_TITLE = re.compile(r"^\s*_BOOK_TITLE_\s*:\s*(.*?)\s*$")
_PTB_BRACKETS = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}
_PTB_BRACKET = re.compile("|".join(map(re.escape, _PTB_BRACKETS)))
_PTB_OPEN_QUOTE = re.compile(r"``\s*")
_PTB_CLOSE_QUOTE = re.compile(r"\s*''")
_SPACE_INSIDE_BRACKETS = re.compile(r"([(\[{]) | ([)\]}])")
_SPLIT_CONTRACTION = re.compile(r"(\w) (n't|'s|'re|'ve|'ll|'d|'m)\b", re.IGNORECASE)


def _ptb_brackets(line: str) -> str:
    return _PTB_BRACKET.sub(lambda m: _PTB_BRACKETS[m.group(0)], line)


@register("cbt")
def clean_cbt(text: str) -> list[str]:
    """Children's Book Test: ``_BOOK_TITLE_ : Andrew_Lang___Prince_Prigio.txt.out`` starts a
    book; the text is PTB-tokenised (``-LRB-``, ``` `` ``` quotes, ``do n't``)."""
    return clean_documents(
        text,
        _chain(
            _ptb_brackets,
            _sub(_SPACE_INSIDE_BRACKETS, r"\1\2"),
            _sub(_PTB_OPEN_QUOTE, '"'),
            _sub(_PTB_CLOSE_QUOTE, '"'),
            _sub(_SPLIT_CONTRACTION, r"\1\2"),
            squeeze,
            attach_punctuation,
            has_words,
        ),
        header=_CBT_TITLE,
    )


# --------------------------------------------------------------------------- user corpora


@register("plain")
def clean_plain(text: str) -> list[str]:
    """A document of a user's own plain-text corpus, already cut out by the reader:
    whitespace is normalised and blank lines dropped, nothing else is assumed."""
    cleaned = [line for line in map(squeeze, split_lines(text)) if line]
    return ["\n".join(cleaned)] if cleaned else []
