"""Words seen by a model's whole lineage: itself, its tokenizer's training pass and its teachers'.

The BabyLM FAQ counts text seen by ancillary models toward a submission's
budget, so a distilled student trained on 10 epochs is NOT within the
strict-small rules if its teachers also trained on the corpus. Each run's
``provenance.json`` stores a ``lineage`` mapping (contributor -> words) and
its total; a student merges its teachers' mappings with its own entries, so a
contributor shared by several teachers (the tokenizer, a common grand-teacher)
is counted once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from babykd.run.provenance import PROVENANCE_FILE
from babykd.rules import lineage_total


def teacher_lineage(teacher_dir: str | Path) -> dict[str, int] | None:
    """A teacher run's lineage from its provenance.json (None when the teacher has no record)."""
    path = Path(teacher_dir) / PROVENANCE_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    lineage = record.get("lineage")
    return {str(k): int(v) for k, v in lineage.items()} if isinstance(lineage, dict) else None


def lineage_record(
    run_key: str, words_seen: int, tokenizer_key: str, tokenizer_words: int, teachers: Sequence[str | Path] = ()
) -> dict[str, Any]:
    """Provenance fields: ``words_seen``, ``lineage`` (contributor -> words), ``lineage_words_seen``.

    ``lineage_words_seen`` is None, and ``lineage_unknown`` names the teachers,
    when a teacher has no lineage on record: an unknown count is never shown as zero.
    """
    lineage = {tokenizer_key: tokenizer_words}
    unknown = []
    for teacher in teachers:
        found = teacher_lineage(teacher)
        if found is None:
            unknown.append(str(teacher))
        else:
            lineage.update(found)
    lineage[run_key] = words_seen
    record: dict[str, Any] = {
        "words_seen": words_seen,
        "lineage": lineage,
        "lineage_words_seen": None if unknown else lineage_total(lineage),
    }
    if unknown:
        record["lineage_unknown"] = unknown
    return record
