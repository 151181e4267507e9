"""Checkpoint folders: which `checkpoint-N` finished saving, the newest one, rotation, the Trainer state.

Why here and not in the trainer: resuming, the run-start decision, the grid's status and the
divergence guard all ask "what is the newest complete checkpoint?", most of them without a
Trainer. A checkpoint is complete when its marker exists; the trainer writes the marker last.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from transformers import TrainerState

logger = logging.getLogger(__name__)

#: Marker written last into a checkpoint: a directory without it is incomplete.
COMPLETE_MARKER = "checkpoint_complete"


def complete_checkpoints(checkpoint_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, folder) of every `checkpoint-N` below `checkpoint_dir` that finished saving, oldest first."""
    folders = _checkpoint_folders(checkpoint_dir)
    return sorted((step, folder) for step, folder in folders if (folder / COMPLETE_MARKER).is_file())


def last_complete_checkpoint(checkpoint_dir: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` below `checkpoint_dir` that finished saving, or None."""
    complete = complete_checkpoints(checkpoint_dir)
    return str(complete[-1][1]) if complete else None


def rotate_checkpoints(checkpoint_dir: str | os.PathLike, limit: int | None, keep: str | None = None) -> None:
    """Keep the newest `limit` complete checkpoints (and `keep`); delete the others up to the newest complete one.

    Only complete checkpoints count towards the limit, so the newest complete
    one survives until a newer one is complete; incomplete folders older than
    it are leftovers of killed saves. Nothing happens when `limit` is None or < 1.
    """
    complete = complete_checkpoints(checkpoint_dir)
    if not limit or limit < 1 or not complete:
        return
    kept = {folder for _, folder in complete[-limit:]}
    if keep is not None:
        kept.add(Path(keep))
    newest = complete[-1][0]
    for step, folder in _checkpoint_folders(checkpoint_dir):
        if step <= newest and folder not in kept:
            logger.info("deleting %s (save_total_limit=%d)", folder, limit)
            shutil.rmtree(folder, ignore_errors=True)


def _checkpoint_folders(checkpoint_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    folders = ((child.name.rsplit("-", 1)[-1], child) for child in root.glob("checkpoint-*") if child.is_dir())
    return [(int(step), child) for step, child in folders if step.isdigit()]


def checkpoint_state(checkpoint: str | os.PathLike) -> TrainerState:
    """The Trainer's state (global step, log history) saved with `checkpoint`."""
    return TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
