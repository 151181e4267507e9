"""What produced an artefact: commit, package versions, hardware, command, date.

Written next to every checkpoint and result file, so a number in a table can
always be traced back to the code and machine that made it. A run resumed under
changed code was trained by several versions: each start logs its version and the
step it trains from (``code_versions.json``), so the record names them all, with their steps.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

import babykd
from babykd import REPO_ROOT
from babykd.run.atomic import atomic_write_json

#: Written last into a finished run directory: its presence means the run finished.
PROVENANCE_FILE = "provenance.json"
#: The code versions of a run so far, oldest first: {"commit", "diff_sha256", "first_step", "last_step"}.
CODE_VERSIONS_FILE = "code_versions.json"
_PACKAGES = ("torch", "transformers", "tokenizers", "accelerate", "safetensors", "numpy")


def code_version() -> dict[str, str | None]:
    """The checkout's HEAD commit and the sha256 of its uncommitted changes to tracked files (None when clean);
    both None outside a git checkout. The hash tells two different sets of local edits apart, as `+dirty` cannot."""
    try:
        commit = _git("rev-parse", "HEAD").decode().strip()
        diff = _git("diff", "HEAD", "--binary")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "diff_sha256": None}
    return {"commit": commit, "diff_sha256": hashlib.sha256(diff).hexdigest() if diff else None}


def _git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, check=True, timeout=10).stdout


def git_commit() -> str:
    """The repository's HEAD commit (suffixed `+dirty` with local changes), or 'unknown'."""
    version = code_version()
    if version["commit"] is None:
        return "unknown"
    return version["commit"] + ("+dirty" if version["diff_sha256"] else "")


def version_label(version: dict[str, Any]) -> str:
    """A code version as a person reads it: `abc1234`, `abc1234+dirty(9f3e0a1b)`, or 'unknown' outside git."""
    commit, diff = version["commit"], version["diff_sha256"]
    if commit is None:
        return "unknown"
    return commit[:7] + (f"+dirty({diff[:8]})" if diff else "")


def record_code_version(run_dir: Path, step: int) -> None:
    """Log that the current code trains the run in `run_dir` from `step` on (called as the run starts).

    Earlier versions end at `step`; rows from `step` on are dropped, since a resume from that checkpoint
    trains their steps again (a fresh start, at step 0, begins a new log). The same code as the newest
    row extends that row instead of adding one.
    """
    rows = _ended_at([row for row in _logged_versions(run_dir) if row["first_step"] < step], step)
    current = code_version()
    if not rows or (rows[-1]["commit"], rows[-1]["diff_sha256"]) != (current["commit"], current["diff_sha256"]):
        rows.append({**current, "first_step": step, "last_step": step})
    atomic_write_json(run_dir / CODE_VERSIONS_FILE, rows)


def code_versions(run_dir: Path, last_step: int) -> list[dict[str, Any]]:
    """Every code version that trained the run, with its steps, once it has trained to `last_step`."""
    return _ended_at(_logged_versions(run_dir), last_step)


def _logged_versions(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / CODE_VERSIONS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


def _ended_at(rows: list[dict[str, Any]], step: int) -> list[dict[str, Any]]:
    if rows:
        rows[-1]["last_step"] = step
    return rows


def describe_code_versions(record: dict[str, Any]) -> str | None:
    """One line naming the code versions of a run's provenance `record`, None unless there are several:
    a table row of such a run mixes the behaviour of both, which the single `git_commit` hides."""
    versions = record.get("code_versions") or []
    if len(versions) < 2:
        return None
    steps = [f"{version_label(v)} steps {v['first_step']}–{v['last_step']}" for v in versions]
    return f"trained by {len(versions)} code versions: {', '.join(steps)}"


def package_versions() -> dict[str, str]:
    versions = {"babykd": babykd.__version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_name() -> str:
    """The accelerator (or CPU) a run used, as a person would name it."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Checksum of a file, or of every file below a directory (sorted by relative path)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def provenance(**extra: Any) -> dict[str, Any]:
    """The standard provenance record, plus any run-specific fields."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "versions": package_versions(),
        "device": device_name(),
        "host": platform.node(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        **extra,
    }
