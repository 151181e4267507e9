"""Files found in a run folder are data: loading one never runs code it carries, a damaged one restarts its task.

Why: run folders are shared, copied between clusters and unpacked from archives; a pickle planted in
``eval/finetune_state/`` ran its code the moment GLUE resumed (``torch.load(weights_only=False)``).
"""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from babykd.evaluation.finetune_resume import load_epoch, save_epoch

KEY = "a fine-tuning's key"


class Payload:
    """Unpickled, it writes `marker`: what a crafted file would do with a shell command instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return Path.write_text, (self.marker, "code from the file ran")


def training(width: int = 3) -> dict[str, Any]:
    """A fine-tuning's state_dict()-able parts at test size, as `finetune` passes them."""
    model = torch.nn.Linear(width, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return {"model": model, "optimizer": optimizer,
            "scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))}


def trained(width: int = 3) -> dict[str, Any]:
    """`training` after one step: the optimizer has state and the schedule has moved."""
    parts = training(width)
    parts["model"](torch.randn(4, width)).sum().backward()
    parts["optimizer"].step()
    parts["scheduler"].step()
    return parts


def generator_states() -> tuple[Any, ...]:
    """Every random generator a fine-tuning draws from, comparable with ==."""
    return torch.get_rng_state().tolist(), random.getstate(), repr(np.random.get_state())


def draws() -> tuple[list[float], float, float]:
    return torch.rand(3).tolist(), random.random(), float(np.random.rand())


def test_a_resume_state_is_plain_data_and_restores_everything(tmp_path: Path) -> None:
    path = tmp_path / "rte.pt"
    source = trained()
    progress = {"history": [{"accuracy": 0.5}], "best": {"predictions": np.array([1, 0, 1]), "best_epoch": 1}}
    save_epoch(path, KEY, 1, source, progress)
    expected = draws()
    torch.load(path, weights_only=True)  # loads without unpickling any object but tensors and plain types

    target = training()
    epoch, restored = load_epoch(path, KEY, target)
    assert draws() == expected  # torch, python and numpy generators continue where the saved run was
    assert epoch == 1 and restored["history"] == progress["history"] and restored["best"]["best_epoch"] == 1
    np.testing.assert_array_equal(restored["best"]["predictions"], progress["best"]["predictions"])
    assert isinstance(restored["best"]["predictions"], np.ndarray)
    for name in ("model", "optimizer", "scheduler"):
        assert repr(target[name].state_dict()) == repr(source[name].state_dict()), name


def planted_state(path: Path, marker: Path) -> None:
    torch.save({"key": KEY, "epoch": 1, "training": {}, "progress": Payload(marker)}, path)


def planted_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(Payload(marker)))


def truncated(path: Path, marker: Path) -> None:
    save_epoch(path, KEY, 1, trained(), {})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def other_structure(path: Path, marker: Path) -> None:
    """The right key, but the saved model does not fit: nothing may be restored half-way."""
    save_epoch(path, KEY, 1, trained(width=5), {})


def not_a_state(path: Path, marker: Path) -> None:
    buffer = io.BytesIO()
    torch.save([1, 2, 3], buffer)
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize("plant", [planted_state, planted_pickle, truncated, other_structure, not_a_state])
def test_a_planted_or_damaged_resume_file_runs_nothing_and_the_task_restarts_from_scratch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], plant: Callable[[Path, Path], None]
) -> None:
    path, marker = tmp_path / "finetune_state" / "rte.pt", tmp_path / "marker"
    path.parent.mkdir()
    plant(path, marker)
    capsys.readouterr()
    torch.manual_seed(0)
    fresh = training()
    before, weights = generator_states(), repr(fresh["model"].state_dict())

    assert load_epoch(path, KEY, fresh) is None
    assert not marker.exists()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "restarts from scratch" in lines[0], lines
    assert not path.exists()  # refused once, not at every later start
    assert generator_states() == before and repr(fresh["model"].state_dict()) == weights
    assert fresh["optimizer"].state_dict()["state"] == {} and fresh["scheduler"].last_epoch == 0
