"""What produced an artefact: commit, package versions, hardware, command, date.

Written next to every checkpoint and result file, so a number in a table can
always be traced back to the code and machine that made it.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

import babykd
from babykd import REPO_ROOT

#: Written last into a finished run directory: its presence means the run finished.
PROVENANCE_FILE = "provenance.json"
_PACKAGES = ("torch", "transformers", "tokenizers", "accelerate", "safetensors", "numpy")


def git_commit() -> str:
    """The repository's HEAD commit (suffixed `+dirty` with local changes), or 'unknown'."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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
