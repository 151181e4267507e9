"""Find and read a corpus: the official BabyLM layouts (directory or zip) or plain text.

Why a reader of its own: users point the toolkit at whatever they downloaded,
the zip as it came or unpacked, possibly inside one extra folder, of the 2023
or the 2024 release, or a corpus of their own. This module turns all of those
into the same thing, cleaned documents per split, and fails early with the
path and the problem when the input is not what it claims to be (before a
tokenizer is trained on half a corpus).

Layouts (``.train`` files in the train directory, ``.dev`` files in the dev one):

* 2023: ``babylm_10M/`` + ``babylm_dev/``
* 2024: ``train_10M/`` + ``dev/``
* plain text: one ``.txt`` file or a directory of them (paths with a hidden
  component, such as ``.ipynb_checkpoints/``, are skipped: they hold copies);
  documents are one per line or delimited by ``<s> ... </s>`` (``tagged``: a file
  that starts with ``<s>``, unless ``doc_format`` says otherwise); files named
  ``dev``/``val``/``valid``/``validation`` form the dev split, otherwise every
  ``dev_every``-th document is held out; files named ``test`` are never read (no
  test text in training).

Control characters (NUL and the like, not whitespace) are stripped from every
file before cleaning and counted per file: they are no text, only a sign of a
binary or badly converted file, and a tokenizer would spend tokens on them.
"""

from __future__ import annotations

import contextlib
import logging
import re
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Iterator, Literal

from tqdm.auto import tqdm

from ..errors import UserError
from .sources import CLEANERS, split_lines

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev")
DocFormat = Literal["auto", "lines", "tagged"]
DEV_FILE_STEMS = frozenset({"dev", "val", "valid", "validation"})
TEST_FILE_STEMS = frozenset({"test"})
_TAGGED_DOCUMENT = re.compile(r"<s>(.*?)</s>", re.DOTALL)
_IGNORED_NAMES = ("__MACOSX",)
#: Control characters that are not whitespace (NUL, DEL, C1 controls): stripped from the text.
_CONTROL_CHARACTERS = re.compile("[" + "".join(
    re.escape(chr(code)) for code in range(0xA0)
    if unicodedata.category(chr(code)) == "Cc" and not chr(code).isspace()
) + "]")


class CorpusError(UserError, ValueError):
    """A corpus that cannot be read as asked; the message starts with the offending path."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class CorpusNotFoundError(CorpusError, FileNotFoundError):
    """A corpus path, split directory or file that does not exist."""


@dataclass(frozen=True)
class Layout:
    """One official release: where each split lives and which sources it has."""

    name: str
    split_dirs: dict[str, str]
    sources: tuple[str, ...]


LAYOUTS = (
    Layout(
        "2024",
        {"train": "train_10M", "dev": "dev"},
        ("bnc_spoken", "childes", "gutenberg", "open_subtitles", "simple_wiki", "switchboard"),
    ),
    Layout(
        "2023",
        {"train": "babylm_10M", "dev": "babylm_dev"},
        (
            "aochildes", "bnc_spoken", "cbt", "children_stories", "gutenberg",
            "open_subtitles", "qed", "simple_wikipedia", "switchboard", "wikipedia",
        ),
    ),
)


@dataclass(frozen=True)
class CorpusFile:
    """One text file of a corpus and how to cut and clean it.

    ``split`` is None for a plain-text file whose documents are split between
    train and dev by hold-out. ``doc_format`` is None for BabyLM files (their
    source's cleaner finds documents), "lines" or "tagged" for plain text.
    """

    path: Traversable
    source: str
    split: str | None
    doc_format: Literal["lines", "tagged"] | None = None

    @property
    def label(self) -> str:
        """Short name for tables: the source, or the file name for plain text."""
        return self.source if self.doc_format is None else self.path.name

    def read_text(self, max_chars: int | None = None) -> str:
        """The file's text (its first ``max_chars`` characters if given)."""
        try:
            with _archive_errors_named(self.path), self.path.open("r", encoding="utf-8") as handle:
                return handle.read(-1 if max_chars is None else max_chars)
        except UnicodeDecodeError as error:
            raise CorpusError(self.path, f"not UTF-8 text ({error})") from error

    def excerpt(self, max_chars: int) -> str:
        """The start of the file cut after a whole document or line, for before/after views."""
        text = self.read_text(max_chars)
        end = "</s>" if self.doc_format == "tagged" else "\n"
        cut = text.rfind(end)
        return text if cut < 0 else text[: cut + len(end)]

    def clean(self, text: str) -> list[str]:
        """Cut ``text`` (this file's content or a part of it) into cleaned documents."""
        if self.doc_format is None:
            return CLEANERS[self.source](text)
        plain = CLEANERS["plain"]
        return [doc for raw in split_plain_text(text, self.doc_format, self.path) for doc in plain(raw)]


@dataclass(frozen=True)
class SourceDocuments:
    """The cleaned documents one file contributes to one split."""

    file: CorpusFile
    raw_chars: int
    documents: list[str]
    #: Control characters stripped from the file's text before cleaning.
    control_chars: int = 0


@dataclass(frozen=True)
class Corpus:
    """A located, validated corpus; :meth:`read` cleans one split."""

    location: str
    layout: str
    files: tuple[CorpusFile, ...]
    dev_every: int = 10

    def read(self, split: str) -> list[SourceDocuments]:
        """Read and clean every file of ``split``, in file order (deterministic).

        Plain-text files without a named split are cut by hold-out: counting
        their documents in order over all such files, every ``dev_every``-th goes
        to dev and the rest to train, so both splits read the same numbering.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        parts = []
        held_out_index = 0
        files = [file for file in self.files if file.split in (split, None)]
        for file in tqdm(files, desc=f"cleaning {split}", unit="file"):
            raw = file.read_text()
            text, control = strip_control_characters(raw)
            if control:
                logger.warning("%s: stripped %d control characters (NUL and the like)", file.path, control)
            documents = file.clean(text)
            if file.split is None:
                first, held_out_index = held_out_index, held_out_index + len(documents)
                documents = [
                    doc for index, doc in enumerate(documents, first)
                    if (index % self.dev_every == self.dev_every - 1) == (split == "dev")
                ]
            if not documents:
                logger.warning("%s: no %s documents left after cleaning", file.path, split)
            parts.append(SourceDocuments(file, len(raw), documents, control))
        return parts


def strip_control_characters(text: str) -> tuple[str, int]:
    """`text` without its control characters (see the module docstring), and how many there were."""
    return _CONTROL_CHARACTERS.subn("", text)


def split_plain_text(text: str, doc_format: Literal["lines", "tagged"], path: object) -> list[str]:
    """Cut a plain-text file into raw documents: one per non-empty line, or each ``<s> ... </s>``.

    Text outside the tags is an error (naming the line) rather than silently
    dropped: it usually means a missing ``</s>`` swallowed part of the corpus.
    """
    if doc_format == "lines":
        return [line for line in split_lines(text) if line.strip()]
    stray = _TAGGED_DOCUMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for number, line in enumerate(stray.split("\n"), start=1):
        if line.strip():
            raise CorpusError(path, f"line {number}: text outside <s> ... </s>: {line.strip()[:60]!r}")
    return [m.group(1) for m in _TAGGED_DOCUMENT.finditer(text)]


# --------------------------------------------------------------------------- opening


def open_corpus(path: str | Path, *, doc_format: DocFormat = "auto", dev_every: int = 10) -> Corpus:
    """Locate and validate the corpus at ``path`` (directory, ``.zip`` or ``.txt``).

    Raises :class:`CorpusNotFoundError` for a missing path or split and
    :class:`CorpusError` for an unknown source, an empty file, or text that is
    not UTF-8; each message names the path.
    """
    path = Path(path)
    if not path.exists():
        raise CorpusNotFoundError(path, "no such file or directory")
    if dev_every < 2:
        raise ValueError(f"dev_every must be at least 2, not {dev_every}")
    if path.is_file() and path.suffix.lower() == ".zip":
        with _archive_errors_named(path):
            root: Traversable = zipfile.Path(path)
    elif path.is_file() or path.is_dir():
        root = path
    else:
        raise CorpusError(path, "not a file or directory")

    found = _find_layout(root)
    if found is not None:
        layout, layout_root = found
        files = _babylm_files(layout, layout_root)
        name = layout.name
    elif isinstance(root, Path):
        files = _plain_files(root, doc_format)
        name = "plain"
    else:
        raise CorpusError(path, f"no BabyLM layout found ({_expected_layouts()})")
    for file in files:
        _check_not_empty(file.path)
    logger.info("corpus %s: %s layout, %d files", path, name, len(files))
    return Corpus(str(path), name, tuple(files), dev_every)


def _expected_layouts() -> str:
    return "expected " + " or ".join(
        f"{'/ + '.join(layout.split_dirs.values())}/ ({layout.name})" for layout in LAYOUTS
    )


def _visible_children(folder: Traversable) -> list[Traversable]:
    return [
        child for child in folder.iterdir()
        if not child.name.startswith(".") and child.name not in _IGNORED_NAMES
    ]


def _find_layout(root: Traversable) -> tuple[Layout, Traversable] | None:
    """The layout at ``root`` or inside its only sub-folder (a zip with one extra level)."""
    if not root.is_dir():
        return None
    candidates = [root]
    subfolders = [child for child in _visible_children(root) if child.is_dir()]
    if len(subfolders) == 1:
        candidates.append(subfolders[0])
    for candidate in candidates:
        for layout in LAYOUTS:
            if any((candidate / d).is_dir() for d in layout.split_dirs.values()):
                return layout, candidate
    return None


def _babylm_files(layout: Layout, root: Traversable) -> list[CorpusFile]:
    files = []
    for split, dirname in layout.split_dirs.items():
        folder = root / dirname
        if not folder.is_dir():
            raise CorpusNotFoundError(
                folder, f"missing {split} split: the {layout.name} layout needs {dirname}/ next to "
                f"{'/ and '.join(d for d in layout.split_dirs.values() if d != dirname)}/"
            )
        suffix = f".{split}"
        found = sorted(
            (child for child in _visible_children(folder) if child.name.endswith(suffix)),
            key=lambda child: child.name,
        )
        if not found:
            raise CorpusNotFoundError(folder, f"missing {split} split: no *{suffix} files")
        for child in found:
            source = child.name[: -len(suffix)]
            if source not in layout.sources:
                raise CorpusError(
                    child, f"unknown source {source!r} for the {layout.name} layout; "
                    f"known sources: {', '.join(layout.sources)}"
                )
            files.append(CorpusFile(child, source, split))
    return files


def _plain_files(root: Path, doc_format: DocFormat) -> list[CorpusFile]:
    if root.is_file():
        paths = [root]
    else:
        paths = sorted(p for p in root.rglob("*.txt") if _visible(p.relative_to(root)))
        for p in paths:
            if p.stem.lower() in TEST_FILE_STEMS:
                logger.warning("%s: skipped, test text is never used for training", p)
        paths = [p for p in paths if p.stem.lower() not in TEST_FILE_STEMS]
        if not paths:
            raise CorpusError(root, f"no BabyLM layout ({_expected_layouts()}) and no .txt files")
    has_dev = any(p.stem.lower() in DEV_FILE_STEMS for p in paths)
    files = []
    for p in paths:
        split = ("dev" if p.stem.lower() in DEV_FILE_STEMS else "train") if has_dev else None
        files.append(CorpusFile(p, "plain", split, _resolve_format(p, doc_format)))
    return files


def _visible(relative: Path) -> bool:
    """No hidden component (``.ipynb_checkpoints/``, ``.git/``, ``.x.txt``) nor a macOS archive folder."""
    return not any(part.startswith(".") or part in _IGNORED_NAMES for part in relative.parts)


def _resolve_format(path: Path, doc_format: DocFormat) -> Literal["lines", "tagged"]:
    """``auto``: tagged if the file starts with ``<s>`` (after blanks), else one document per line.

    Not "``<s>`` occurs somewhere": a corpus of lines may quote the tag (code, markup, this very
    docstring), and would then be refused for its text outside tags.
    """
    if doc_format in ("lines", "tagged"):
        return doc_format
    if doc_format != "auto":
        raise ValueError(f"doc_format must be 'auto', 'lines' or 'tagged', not {doc_format!r}")
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        return "tagged" if handle.read(65536).lstrip().startswith("<s>") else "lines"


@contextlib.contextmanager
def _archive_errors_named(path: object) -> Iterator[None]:
    """A truncated or corrupt zip raises BadZipFile/zlib.error without any path: name it."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise CorpusError(
            path, f"corrupt or truncated zip ({type(error).__module__}.{type(error).__name__}: {error}); "
            "download or copy it again"
        ) from error


def _check_not_empty(path: Traversable) -> None:
    with _archive_errors_named(path), path.open("r", encoding="utf-8", errors="replace") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), ""):
            if chunk.strip():
                return
    raise CorpusError(path, "file is empty")
