"""A corpus distributed as a `datasets` dataset: a hub id (``hf://datasets/OWNER/NAME``) or a local folder.

Why: from 2026 the BabyLM corpora are published on the Hugging Face hub
(collection ``BabyLM-community``) as datasets -- parquet files in the hub's
layout (``data/train-00000-of-00001.parquet``, ``data/validation-...``) -- not
only as zips. This module reads such a dataset with the `datasets` library and
hands the pipeline the same thing :mod:`babykd.data.corpus` does: cleaned
documents per split, grouped by source.

* Rows: one row is one raw document (its text column, default ``text``); when a
  source column (default ``source``) names a BabyLM source that has a cleaner
  (``childes``, ``bnc_spoken``, ...), that cleaner is applied, else the plain one.
* Splits: ``train``; dev is ``validation``, ``dev`` or ``valid``. Without one,
  every ``dev_every``-th row is held out, as for plain text.
* Nothing is downloaded here unless a hub id is given; an unreachable hub is a
  one-line error naming the id and saying how to use a local copy instead.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .corpus import SPLITS, CorpusError, CorpusNotFoundError, SourceDocuments, strip_control_characters
from .sources import CLEANERS

#: Prefix of a hub dataset id in ``data.corpus`` (so it is never mistaken for a relative path).
HUB_PREFIX = "hf://datasets/"
DEV_SPLIT_NAMES = ("validation", "dev", "valid")
_DATA_SUFFIXES = (".parquet", ".arrow")
_SAVED_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")

logger = logging.getLogger(__name__)


def is_datasets_corpus(location: str | Path) -> bool:
    """A hub id, or a folder holding parquet/arrow files or a `save_to_disk` dataset."""
    text = str(location)
    if text.startswith(HUB_PREFIX):
        return True
    path = Path(text)
    if not path.is_dir():
        return False
    if any((path / marker).is_file() for marker in _SAVED_MARKERS):
        return True
    return any(p.suffix in _DATA_SUFFIXES for p in path.rglob("*") if p.is_file())


@dataclass(frozen=True)
class DatasetSource:
    """One source of a datasets corpus (what a file is for a BabyLM release)."""

    source: str
    split: str
    location: str

    @property
    def label(self) -> str:
        return self.source

    @property
    def path(self) -> str:
        return f"{self.location} [{self.split}: {self.source}]"


@dataclass(frozen=True)
class DatasetsCorpus:
    """A loaded datasets corpus; :meth:`read` cleans one split (the interface of ``Corpus.read``)."""

    location: str
    splits: dict[str, Any]  # our split name -> datasets.Dataset
    text_column: str
    source_column: str | None
    dev_every: int = 10
    layout: str = "datasets"

    def read(self, split: str) -> list[SourceDocuments]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        held_out = "dev" not in self.splits
        rows = self.splits["train"] if held_out else self.splits[split]
        texts = rows[self.text_column]
        sources = rows[self.source_column] if self.source_column in rows.column_names else ["plain"] * len(texts)
        grouped: dict[str, list[str]] = {}
        raw: dict[str, int] = {}
        control: dict[str, int] = {}
        for index, (text, source) in enumerate(zip(texts, sources)):
            if held_out and (index % self.dev_every == self.dev_every - 1) != (split == "dev"):
                continue
            name = str(source) if str(source) in CLEANERS else "plain"
            clean, stripped = strip_control_characters(text or "")
            grouped.setdefault(name, []).extend(CLEANERS[name](clean))
            raw[name] = raw.get(name, 0) + len(text or "")
            control[name] = control.get(name, 0) + stripped
        for name, stripped in control.items():
            if stripped:
                logger.warning("%s: stripped %d control characters (NUL and the like)",
                               DatasetSource(name, split, self.location).path, stripped)
        return [
            SourceDocuments(DatasetSource(name, split, self.location), raw[name], documents,  # type: ignore[arg-type]
                            control[name])
            for name, documents in sorted(grouped.items())
        ]


def open_datasets_corpus(
    location: str | Path, *, text_column: str = "text", source_column: str | None = "source", dev_every: int = 10
) -> DatasetsCorpus:
    """Load the dataset at ``location`` (hub id with :data:`HUB_PREFIX`, or a local folder)."""
    try:
        import datasets
    except ImportError as error:
        raise CorpusError(location, "reading a datasets corpus needs the `datasets` package "
                                    "(pip install -r requirements.txt)") from error
    text = str(location)
    try:
        if text.startswith(HUB_PREFIX):
            loaded = datasets.load_dataset(text[len(HUB_PREFIX):])
        elif any((Path(text) / marker).is_file() for marker in _SAVED_MARKERS):
            loaded = datasets.load_from_disk(text)
        else:
            loaded = datasets.load_dataset(text)
    except FileNotFoundError as error:
        raise CorpusNotFoundError(location, f"no dataset found ({_first_line(error)})") from error
    except (ConnectionError, OSError) as error:
        raise CorpusError(location, f"the hub could not be reached ({_first_line(error)}); download the dataset "
                                    "elsewhere and point data.corpus at its folder") from error
    except Exception as error:  # datasets raises its own types (DatasetNotFoundError, ...) for hub problems
        raise CorpusError(location, f"cannot load as a datasets corpus: {type(error).__name__}: "
                                    f"{_first_line(error)}") from error
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    if "train" not in loaded:
        raise CorpusError(location, f"no train split (splits: {', '.join(loaded)})")
    splits = {"train": loaded["train"]}
    dev = next((name for name in DEV_SPLIT_NAMES if name in loaded), None)
    if dev is not None:
        splits["dev"] = loaded[dev]
    for name, rows in splits.items():
        if text_column not in rows.column_names:
            raise CorpusError(location, f"{name} split has no column {text_column!r} (columns: "
                                        f"{', '.join(rows.column_names)}); set data.text_column")
        if not _is_text(rows.features[text_column]):
            text_columns = [column for column, feature in rows.features.items() if _is_text(feature)]
            raise CorpusError(location, f"{name} split: column {text_column!r} holds {rows.features[text_column]}, "
                                        f"not text; set data.text_column to a text column "
                                        f"({', '.join(text_columns) or 'there is none'})")
    return DatasetsCorpus(text, splits, text_column, source_column, dev_every)


def _is_text(feature: Any) -> bool:
    """Whether a `datasets` column holds strings (the text of a row), not numbers, lists or nulls."""
    return getattr(feature, "dtype", None) in ("string", "large_string")


def _first_line(error: BaseException) -> str:
    return re.split(r"\n", str(error).strip(), maxsplit=1)[0]
