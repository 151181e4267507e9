"""The BabyLM 2025 evaluation data, read from the official zip or from a folder.

The 2025 pipeline ships its data as a zip holding ``full_eval/`` (final
scores) and ``fast_eval/`` (subsets for intermediate checkpoints), possibly
under one top-level folder (``evaluation_data_2025/``). `SuiteData` hides the
difference: every path is relative to the folder that holds ``full_eval/`` and
``fast_eval/``, whether that is a zip member prefix or a directory on disk, so
tasks never unpack anything and never depend on the zip's top-level name.

A missing file is a `MissingEvalData` naming the file AND the source searched:
a task whose data is absent (COMPS, the BoolQ/MultiRC training sets) must say
so, never score zero or vanish from the table.
"""

from __future__ import annotations

import os
import zipfile
from functools import cached_property
from pathlib import Path, PurePosixPath

from babykd import REPO_ROOT
from babykd.evaluation.tasks import TaskDataError

#: Folders that mark the root of the suite (one of them must exist).
SUITE_ROOTS: tuple[str, ...] = ("full_eval", "fast_eval")


class MissingEvalData(TaskDataError):
    """An evaluation file is absent; the message names the file and where it was looked for."""


def default_suite_source() -> Path:
    """`$BABYKD_EVAL_DATA_2025`, else `evaluation_data_2025.zip` in the shared folder.

    The shared folder is `$BABYKD_SHARED`, else `../shared` beside the
    repository, as for `tasks.default_data_dir`.
    """
    if os.environ.get("BABYKD_EVAL_DATA_2025"):
        return Path(os.environ["BABYKD_EVAL_DATA_2025"])
    shared = Path(os.environ.get("BABYKD_SHARED", REPO_ROOT.parent / "shared"))
    return shared / "evaluation_data_2025.zip"


def _normalise(relpath: str) -> str:
    """A clean POSIX relative path ("full_eval/aoa/x.csv"); refuses absolute paths and `..`."""
    parts = PurePosixPath(relpath.replace("\\", "/")).parts
    if not parts or parts[0] == "/" or ".." in parts:
        raise ValueError(f"suite path must be relative and inside the suite, got {relpath!r}")
    return "/".join(p for p in parts if p != ".")


class SuiteData:
    """Read-only access to the 2025 suite by relative paths such as ``full_eval/aoa/cdi_human.csv``."""

    def __init__(self, source: str | os.PathLike | None = None):
        self.source = Path(source).expanduser() if source is not None else default_suite_source()
        if not self.source.exists():
            raise MissingEvalData(
                f"BabyLM 2025 evaluation data not found at {self.source}; pass --suite-data "
                "(or set BABYKD_EVAL_DATA_2025) to the official zip or to a folder holding full_eval/ and fast_eval/"
            )
        self._is_zip = self.source.is_file()
        if self._is_zip and not zipfile.is_zipfile(self.source):
            raise MissingEvalData(f"{self.source}: not a zip file (expected the BabyLM 2025 evaluation data zip)")

    def __repr__(self) -> str:
        return f"SuiteData({str(self.source)!r})"

    # -- zip layout -------------------------------------------------------------------------
    @cached_property
    def _zip_members(self) -> dict[str, str]:
        """relpath -> member name, for every file in the zip, with the top-level prefix removed."""
        with zipfile.ZipFile(self.source) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
        prefix = self._zip_prefix(names)
        return {name[len(prefix):]: name for name in names if name.startswith(prefix)}

    def _zip_prefix(self, names: list[str]) -> str:
        """The member prefix in front of full_eval/ or fast_eval/ ("" or "evaluation_data_2025/")."""
        prefixes = set()
        for name in names:
            parts = name.split("/")
            for depth, part in enumerate(parts[:-1]):
                if part in SUITE_ROOTS:
                    prefixes.add("".join(p + "/" for p in parts[:depth]))
                    break
        if len(prefixes) != 1:
            found = "none" if not prefixes else ", ".join(sorted(repr(p) for p in prefixes))
            raise MissingEvalData(
                f"{self.source}: expected one folder holding {' and '.join(s + '/' for s in SUITE_ROOTS)}, found {found}"
            )
        return prefixes.pop()

    # -- directory layout -------------------------------------------------------------------
    @cached_property
    def _root(self) -> Path:
        """The directory holding full_eval/ or fast_eval/: the source itself or its single child."""
        candidates = [self.source] + sorted(p for p in self.source.iterdir() if p.is_dir())
        for candidate in candidates:
            if any((candidate / r).is_dir() for r in SUITE_ROOTS):
                return candidate
        raise MissingEvalData(f"{self.source}: no {' or '.join(s + '/' for s in SUITE_ROOTS)} folder in it")

    # -- API --------------------------------------------------------------------------------
    def exists(self, relpath: str) -> bool:
        """Whether the suite holds the file `relpath`."""
        rel = _normalise(relpath)
        if self._is_zip:
            return rel in self._zip_members
        return (self._root / rel).is_file()

    def read_bytes(self, relpath: str) -> bytes:
        """The bytes of `relpath`; `MissingEvalData` naming the file and the source if absent."""
        rel = _normalise(relpath)
        if not self.exists(rel):
            raise MissingEvalData(f"evaluation file {rel} not found in {self.source}")
        if self._is_zip:
            with zipfile.ZipFile(self.source) as zf:
                return zf.read(self._zip_members[rel])
        return (self._root / rel).read_bytes()

    def list(self, reldir: str) -> list[str]:
        """Relpaths of the files directly in `reldir`, sorted; empty when the folder is absent."""
        rel = _normalise(reldir).rstrip("/")
        if self._is_zip:
            return sorted(p for p in self._zip_members if p.rpartition("/")[0] == rel)
        folder = self._root / rel
        if not folder.is_dir():
            return []
        return sorted(f"{rel}/{p.name}" for p in folder.iterdir() if p.is_file())

    def describe(self, relpath: str) -> str:
        """Where `relpath` is (for messages and provenance): "ZIP:member" or a file path."""
        rel = _normalise(relpath)
        if self._is_zip:
            return f"{self.source}:{self._zip_members.get(rel, rel)}"
        return str(self._root / rel)
