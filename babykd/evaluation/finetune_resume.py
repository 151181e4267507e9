"""End-of-epoch checkpoints of one GLUE fine-tuning, so a preempted task resumes where it stopped.

Why: QQP and MNLI take hours at the official 10 epochs; a SLURM job requeued
after preemption would otherwise start the task again from scratch. After each
epoch the whole training state -- model and head, optimizer, schedule, the
random generators (batch order and dropout), every epoch's metrics and the
kept epoch's predictions -- goes to one file, written atomically. A resumed run
continues with the next epoch and ends exactly as an uninterrupted one (same
batches, same dropout masks on the same device). The file is keyed by the
task and the results store's stamp of the fine-tuning (the starting weights'
``weights_sha256`` and the setup: hyperparameters, data, subset sizes): any change starts afresh.

The file is data, never code: it holds tensors and plain types only (numpy
arrays and generator states are converted) and is read with a weights-only
load, because a pickle planted in a run folder would otherwise run the moment
GLUE resumes. A file that does not read that way is refused in one line and
the task starts from scratch, with nothing of the file restored.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import pickle
import random
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from babykd.run.atomic import atomic_write_bytes

_PARTS = ("key", "epoch", "training", "progress", "rng")


@dataclass(frozen=True)
class ResumeFile:
    """Where one task's fine-tuning keeps its state after each epoch, and the key a state must carry to be continued."""

    path: Path
    key: str


def resume_key(task: str, stamp: Mapping[str, Any]) -> str:
    """A digest of what makes a saved state belong to this fine-tuning: the task and its store stamp
    (`store.stamp(weights_sha256, setup)`), so "the same fine-tuning" is what the store calls the same result."""
    return hashlib.sha256(json.dumps({"task": task, **stamp}, sort_keys=True, default=str).encode()).hexdigest()


def save_epoch(path: Path, key: str, epoch: int, training: dict[str, Any], progress: dict[str, Any]) -> None:
    """Write the state after `epoch` epochs: `training` holds state_dict()-able objects, `progress` plain data."""
    state = {"key": key, "epoch": epoch, "progress": _tensors_for_arrays(progress), **_snapshot(training)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_epoch(path: Path, key: str, training: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """Restore a state saved for `key` into `training` and the random generators: (epochs done, progress), or None.

    A file that is not such a state is removed with one warning: refused once, not at every later start.
    """
    if not path.is_file():
        return None
    try:
        state = _read(path)
        if state["key"] != key:  # another fine-tuning's: its next epoch overwrites it
            return None
        _restore_all_or_nothing(state, training)
        return state["epoch"], _arrays_for_tensors(state["progress"])
    except Exception as error:  # untrusted data: whatever it fails with, it is no state to continue from
        print(f"warning: {path}: unreadable or foreign resume state ({_reason(error)}); "
              "the task restarts from scratch", file=sys.stderr)
        path.unlink(missing_ok=True)
        return None


def _read(path: Path) -> dict[str, Any]:
    """The saved dict, read without unpickling anything but tensors and plain types."""
    with warnings.catch_warnings():  # torch warns of pickle protocols it does not expect: the refusal says enough
        warnings.simplefilter("ignore")
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or set(state) != set(_PARTS) or not isinstance(state["epoch"], int):
        raise ValueError(f"expected a dict of {', '.join(_PARTS)}")
    return state


def _restore_all_or_nothing(state: dict[str, Any], training: dict[str, Any]) -> None:
    """Restore `state`; if any part does not fit, put back what was there (a fresh start must be fresh)."""
    before = copy.deepcopy(_snapshot(training))
    try:
        _restore(state, training)
    except Exception:
        _restore(before, training)
        raise


def _snapshot(training: dict[str, Any]) -> dict[str, Any]:
    """The training objects' state_dicts and every random generator's state, as tensors and plain types."""
    name, numpy_key, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "training": {part: obj.state_dict() for part, obj in training.items()},
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                "numpy": [name, numpy_key.tolist(), position, has_gauss, cached_gaussian],
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }


def _restore(state: dict[str, Any], training: dict[str, Any]) -> None:
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    name, numpy_key, position, has_gauss, cached_gaussian = rng["numpy"]
    np.random.set_state((name, np.asarray(numpy_key, dtype=np.uint32), position, has_gauss, cached_gaussian))
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    for part, obj in training.items():
        obj.load_state_dict(state["training"][part])


def _tensors_for_arrays(data: Any) -> Any:
    """`data` with each numpy array as a tensor (a weights-only load refuses arrays); `progress` holds no tensors."""
    return _convert_leaves(data, np.ndarray, torch.from_numpy)


def _arrays_for_tensors(data: Any) -> Any:
    """The inverse of `_tensors_for_arrays`."""
    return _convert_leaves(data, torch.Tensor, lambda tensor: tensor.numpy())


def _convert_leaves(data: Any, leaf: type, convert: Callable[[Any], Any]) -> Any:
    """`data` (nested dicts, lists, tuples) with every `leaf`-typed value converted, the structure kept."""
    if isinstance(data, leaf):
        return convert(data)
    if isinstance(data, dict):
        return {name: _convert_leaves(value, leaf, convert) for name, value in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(_convert_leaves(value, leaf, convert) for value in data)
    return data


def _reason(error: Exception) -> str:
    """Why a file was refused, in a few words on one line."""
    if isinstance(error, pickle.UnpicklingError):
        return "it holds objects other than tensors and plain data, which are never loaded"
    detail = " ".join(str(error).split())
    detail = detail if len(detail) <= 160 else detail[:157] + "..."
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__
