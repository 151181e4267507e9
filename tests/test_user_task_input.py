"""A user's 2025 task with a sentence that is not text is a one-line error naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from babykd.evaluation.suite import Source, load_candidates
from babykd.evaluation.tasks import TaskDataError


def test_a_non_string_sentence_names_the_file_and_line(tmp_path: Path) -> None:
    rows = [{"sentence_good": "The cat sat .", "sentence_bad": "Cat the sat ."},
            {"sentence_good": 5, "sentence_bad": "Five ."}]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(TaskDataError, match=rf"^{tmp_path / 'pairs.jsonl'}:2: TypeError pairs: sentences must be strings"):
        load_candidates(str(tmp_path), Source(fast=True, data_dir=None, suite=None))
