"""How a run may start in its folder: decided before anything is loaded, and before anything is changed.

Why a decision of its own: a folder that already holds work (complete checkpoints,
a finished model) is only ever continued (``--resume``) or thrown away on purpose
(``--fresh``); a forgotten ``--resume`` after a crash must not delete the checkpoints
it was meant to continue from. A resume continues the run its ``run_config.yaml``
describes: a changed config is refused, naming the keys, unless the change is
allowed, and then it is logged (``config_changes.json``, copied into
``provenance.json``) as a change at the step the run continued from, so the record
says which steps ran under which values. This module only reads the folder;
:func:`babykd.training.begin_run` writes it once every check has passed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babykd.run.atomic import atomic_write_json
from babykd.config import RunConfig, config_differences, plain_config, saved_run_config
from babykd.errors import UserError
from babykd.run.provenance import PROVENANCE_FILE
from babykd.run.checkpoints import checkpoint_state, last_complete_checkpoint

RUN_CONFIG_FILE = "run_config.yaml"
#: The allowed config changes of a resumed run, one record per change: {"step", "changes"}.
CONFIG_CHANGES_FILE = "config_changes.json"
#: Keys a resume may change without it being a change of the run: they cannot change what is trained
#: (where the folder lives: a run folder moved or copied elsewhere is still the same run).
NEUTRAL_KEYS = frozenset({"training.progress_bar", "training.dataloader_workers", "output.name", "output.root"})


class RunFolderError(UserError):
    """Starting as asked would throw away or mix up the work already in a run folder."""


@dataclass(frozen=True)
class StartPlan:
    """Where a run starts: a checkpoint to continue from (None: a fresh start), and the config changes."""

    checkpoint: str | None
    #: Dotted key -> {"from": saved value, "to": this run's}, for an allowed change on resume.
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    step: int = 0


def plan_start(config: RunConfig, *, resume: bool, fresh: bool, allow_config_change: bool) -> StartPlan:
    """Decide how the run in `config.output.run_dir` starts, refusing what would lose or mix up work."""
    if resume and fresh:
        raise RunFolderError("--resume and --fresh exclude each other: continue the run, or start it over")
    run_dir = config.output.run_dir
    checkpoint = last_complete_checkpoint(run_dir / "checkpoints")
    finished = (run_dir / PROVENANCE_FILE).is_file()
    if not resume:
        if (checkpoint or finished) and not fresh:
            held = f"complete checkpoints (newest {Path(checkpoint).name})" if checkpoint else "a finished run"
            raise RunFolderError(
                f"{run_dir} holds {held}: add --resume to continue it, or --fresh to delete it and start over"
            )
        return StartPlan(None)
    if checkpoint is None:
        if finished:
            raise RunFolderError(
                f"{run_dir} holds a finished run and no checkpoint to resume from: "
                "add --fresh (instead of --resume) to delete it and train again"
            )
        return StartPlan(None)  # a first start under a script that always resumes
    step = checkpoint_state(checkpoint).global_step
    changes = resume_changes(config, run_dir)
    if changes and not allow_config_change:
        raise RunFolderError(
            f"{run_dir}: --resume with a config that differs from its {RUN_CONFIG_FILE} at "
            f"{', '.join(changes)}: restore those values, or add --allow-config-change "
            f"(recorded in {PROVENANCE_FILE} as a change at step {step})"
        )
    return StartPlan(checkpoint, changes, step)


def resume_changes(config: RunConfig, run_dir: Path) -> dict[str, dict[str, Any]]:
    """The keys (beyond :data:`NEUTRAL_KEYS`) at which `config` differs from the run's saved config."""
    saved_path = run_dir / RUN_CONFIG_FILE
    if not saved_path.is_file():
        return {}
    saved, current = saved_run_config(saved_path), plain_config(config)
    return {
        key: {"from": _value_at(saved, key), "to": _value_at(current, key)}
        for key in config_differences(saved, current) if key not in NEUTRAL_KEYS
    }


def _value_at(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def record_config_change(run_dir: Path, plan: StartPlan) -> None:
    """Append the plan's allowed config change to the run's log of changes (nothing if there is none)."""
    if not plan.changes:
        return
    atomic_write_json(run_dir / CONFIG_CHANGES_FILE,
                      [*config_changes(run_dir), {"step": plan.step, "changes": plan.changes}])


def config_changes(run_dir: Path) -> list[dict[str, Any]]:
    """Every allowed config change of the run so far, oldest first ([] for a run never changed)."""
    path = run_dir / CONFIG_CHANGES_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
