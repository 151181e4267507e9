"""How a benchmark reports: its records as JSON lines after one line of where and with what they were measured.

Why one place: every figure in benchmarks/README must come with the machine, the versions, the
commit and the command that produced it, and the results files are appended to, never rewritten.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

from babykd.run.atomic import atomic_write_text
from babykd.run.provenance import provenance


def emit(script: str, argv: Sequence[str] | None, records: Sequence[dict[str, Any]], results: Path | None) -> None:
    """Print the environment line and `records`, one JSON object a line; append them to `results` (None: don't)."""
    env = provenance(command=" ".join([script, *(argv if argv is not None else sys.argv[1:])]))
    lines = [{"env": {key: env[key] for key in ("date", "git_commit", "versions", "device", "command")}}, *records]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    print(text, end="")
    if results is not None:
        previous = results.read_text() if results.exists() else ""
        atomic_write_text(results, previous + text)
