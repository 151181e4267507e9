"""End-of-epoch checkpoints of one GLUE fine-tuning, so a preempted task resumes where it stopped.

Why: QQP and MNLI take hours at the official 10 epochs; a SLURM job requeued
after preemption would otherwise start the task again from scratch. After each
epoch the whole training state -- model and head, optimizer, schedule, the
random generators (batch order and dropout), every epoch's metrics and the
kept epoch's predictions -- goes to one file, written atomically. A resumed run
continues with the next epoch and ends exactly as an uninterrupted one (same
batches, same dropout masks on the same device). The file is keyed by the
task, hyperparameters, data and starting weights: any change starts afresh.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from babykd.atomic import atomic_write_bytes


def resume_key(**parts: Any) -> str:
    """A digest of everything that makes a saved state belong to this fine-tuning."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def save_epoch(path: Path, key: str, epoch: int, training: dict[str, Any], progress: dict[str, Any]) -> None:
    """Write the state after `epoch` epochs: `training` holds state_dict()-able objects, `progress` plain data."""
    state = {
        "key": key,
        "epoch": epoch,
        "training": {name: obj.state_dict() for name, obj in training.items()},
        "progress": progress,
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_epoch(path: Path, key: str, training: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """Restore a state saved for `key` into `training` and the random generators: (epochs done, progress), or None."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("key") != key:
        return None
    for name, obj in training.items():
        obj.load_state_dict(state["training"][name])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return state["epoch"], state["progress"]
