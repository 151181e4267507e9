"""A run folder holds one run: concurrent runs are refused, a rerun changes nothing until it
really starts, a diverged run stops with its last good checkpoint and never looks finished, and
the entry points report bad input in one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from babykd import REPO_ROOT
from babykd.cli import train_main
from babykd.config import RunConfig
from babykd.run.divergence import NonFiniteError, read_stop
from babykd.errors import UserError
from babykd.evaluation.tasks import TaskDataError
from babykd.rules import RulesError
from babykd.run.lock import LOCK_FILE, FolderInUseError, folder_lock
from babykd.run.start import RunFolderError, resume_changes
from babykd.teachers import TeacherMismatchError
from babykd.run.checkpoints import last_complete_checkpoint
from babykd.training import PROVENANCE_FILE, is_finished, run_training

LLAMA = "config/runs/tiny/pretrain-tiny-llama.yaml"
SHORT = ("training.max_steps=4", "training.save_steps=2", "training.logging_steps=1")


def test_second_run_into_a_folder_is_refused_naming_the_holder(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(LLAMA, "busy", *SHORT)
    holder = subprocess.Popen(  # another job training into the same folder
        [sys.executable, "-c", "import sys, time; from babykd.run.lock import folder_lock\n"
         "with folder_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)", str(config.output.run_dir)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderInUseError) as refused:
            run_training(config)
        message = str(refused.value)
        assert str(config.output.run_dir) in message
        assert f"host {socket.gethostname()}, pid {holder.pid}, started 20" in message
        assert not (config.output.run_dir / "run_config.yaml").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # the OS drops the lock of a killed holder
        holder.wait()
    with folder_lock(config.output.run_dir):
        pass


class StopAtStep(TrainerCallback):
    """Fail the run at a given step (a crash, an OOM, a kill that is not a requeue signal)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise KeyboardInterrupt("killed")


@pytest.fixture(scope="module")
def finished_run(tiny_config) -> Path:
    """One finished tiny run (checkpoints at steps 2 and 4); tests rerun over copies of it."""
    return run_training(tiny_config(LLAMA, "finished", *SHORT)).run_dir


def copy_of(run_dir: Path, name: str) -> Path:
    """A copy of a finished run under `name`, beside it (the output root of `tiny_config`)."""
    copy = run_dir.parent / name
    shutil.copytree(run_dir, copy)
    return copy


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (but its lock file, rewritten by each holder) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK_FILE}


def resized_teacher(teacher: Path, out: Path) -> Path:
    """A copy of `teacher` with the same tokenizer but 16 more embedding rows (logits of another width)."""
    model = AutoModelForCausalLM.from_pretrained(teacher)
    model.resize_token_embeddings(model.config.vocab_size + 16)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(teacher).save_pretrained(out)
    return out


def escaped_validation(section: str, **values: Any) -> Callable[[RunConfig], None]:
    """Set values the config loader refuses, as a config built in code could: the run must still refuse them."""
    return lambda config: [setattr(getattr(config, section), key, value) for key, value in values.items()]


DISTIL = ("config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml",
          f"model={REPO_ROOT / 'config/models/tiny-llama-student.yaml'}", "distillation.layer_maps=null")
#: id -> (run config and overrides, change made after loading, the error, what its message says).
LATE_FAILURES = {
    "optimizer-arguments": ((LLAMA, *SHORT), escaped_validation("training", adam_beta1=1.5), ValueError, "beta"),
    "epoch-cap": ((LLAMA, "training.max_steps=-1", "training.epochs=5000", "rules.track=strict-small"), None,
                  RulesError, "over the track's cap"),
    "evaluation-task-name": ((LLAMA, *SHORT, "evaluation.tasks=[blimp_filtered]"),
                             escaped_validation("evaluation", tasks=["no_such_task"]), TaskDataError, "no_such_task"),
    "teacher-logit-width": ((*DISTIL,), "resized", TeacherMismatchError, "logits cover 2016 token ids, the student's 2000"),
    "cached-teacher-logit-width": ((*DISTIL, "distillation.weights.hidden=0", "distillation.teacher_cache_top_k=8"),
                                   "resized", TeacherMismatchError, "logits cover 2016 token ids"),
    "layer-map-vs-depth": ((*DISTIL, "distillation.layer_maps=[{0: 0, 9: 3}, {0: 0, 4: 3}]"), None,
                           TeacherMismatchError, r"layer_maps\[0\]: .*teacher layer 9"),
    "seq-length-vs-teacher-positions": ((*DISTIL, "data.seq_length=300", "model.max_position_embeddings=512"), None,
                                        TeacherMismatchError, "seq_length 300 exceeds its 256 positions"),
}


#: A trigger only the config loader reports in one line (torch's own error, should validation be bypassed);
#: every other must be a one-line error of the run itself.
REFUSED_AT_LOAD = {"optimizer-arguments"}


@pytest.mark.parametrize("trigger", LATE_FAILURES)
def test_a_fresh_rerun_that_fails_any_check_leaves_the_finished_run_byte_identical(
    tiny_config, tiny_teachers, finished_run: Path, tmp_path: Path, trigger: str
) -> None:
    (path, *overrides), change, error, message = LATE_FAILURES[trigger]
    run_dir = copy_of(finished_run, f"late-{trigger}")
    before = folder_bytes(run_dir)
    teachers = tiny_teachers
    if change == "resized":
        teachers = [resized_teacher(tiny_teachers[0], tmp_path / "wide"), tiny_teachers[1]]
        change = None
    teacher_list = f"distillation.teachers=[{','.join(map(str, teachers))}]"
    config = tiny_config(path, run_dir.name, *overrides, *([teacher_list] if path == DISTIL[0] else []))
    if change is not None:
        change(config)
    with pytest.raises(error, match=message) as raised:
        run_training(config, fresh=True)
    assert folder_bytes(run_dir) == before
    # a UserError is what the entry points print as one line (babykd.cli.one_line_errors)
    assert isinstance(raised.value, UserError) == (trigger not in REFUSED_AT_LOAD)


def test_a_start_over_complete_checkpoints_needs_fresh_and_resume_refuses_a_changed_config(
    tiny_config, finished_run: Path
) -> None:
    run_dir = copy_of(finished_run, "start-modes")
    before = folder_bytes(run_dir)
    with pytest.raises(RunFolderError, match=r"holds complete checkpoints \(newest checkpoint-4\): add --resume .* --fresh"):
        run_training(tiny_config(LLAMA, run_dir.name, *SHORT))
    changed = tiny_config(LLAMA, run_dir.name, *SHORT, "training.lr=1e-3", "training.progress_bar=true")
    with pytest.raises(RunFolderError, match=r"differs from its run_config.yaml at training.lr: .*--allow-config-change"):
        run_training(changed, resume=True)
    assert folder_bytes(run_dir) == before

    # allowed: continued from step 4 (its last step, so nothing more is trained) and recorded as a change there
    run_training(changed, resume=True, allow_config_change=True)
    record = json.loads((run_dir / PROVENANCE_FILE).read_text())
    assert record["config_changes"] == [{"step": 4, "changes": {"training.lr": {"from": 0.003, "to": 0.001}}}]
    assert "lr: 0.001" in (run_dir / "run_config.yaml").read_text()


def test_resume_with_nothing_to_resume_is_a_first_start_but_never_retrains_a_finished_run(
    tiny_config, finished_run: Path
) -> None:
    run_dir = copy_of(finished_run, "nothing-to-resume")
    shutil.rmtree(run_dir / "checkpoints")
    before = folder_bytes(run_dir)
    with pytest.raises(RunFolderError, match="holds a finished run and no checkpoint to resume from: add --fresh"):
        run_training(tiny_config(LLAMA, run_dir.name, *SHORT), resume=True)
    assert folder_bytes(run_dir) == before
    first = run_training(tiny_config(LLAMA, "first-start-resumes", "training.max_steps=1"), resume=True)
    assert is_finished(first.run_dir)


def test_rerun_leaves_a_finished_run_untouched_until_it_really_starts(tiny_config, finished_run: Path, tmp_path: Path) -> None:
    run_dir = copy_of(finished_run, "rerun")
    before = folder_bytes(run_dir)

    # a rerun with another config whose data check fails changes nothing: still finished, with its own config
    with pytest.raises(FileNotFoundError):
        run_training(tiny_config(LLAMA, "rerun", *SHORT, f"data.corpus={tmp_path / 'moved'}"), fresh=True)
    assert folder_bytes(run_dir) == before

    # a rerun that starts and dies: not finished, and the config on disk is the new run's
    changed = tiny_config(LLAMA, "rerun", *SHORT, "training.lr=1e-3")
    with pytest.raises(KeyboardInterrupt):
        run_training(changed, callbacks=[StopAtStep(3)], fresh=True)
    assert not is_finished(run_dir)
    assert "lr: 0.001" in (run_dir / "run_config.yaml").read_text()
    # only the new run's checkpoint is there to resume from, not the earlier run's checkpoint-4
    assert last_complete_checkpoint(run_dir / "checkpoints").endswith("checkpoint-2")
    assert not (run_dir / "checkpoints" / "checkpoint-4").exists()


class PoisonAtStep(TrainerCallback):
    """Put a NaN into the weights after a step's update, as a diverging optimiser does."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step == self.step:
            next(model.parameters()).data.fill_(float("nan"))


class PoisonAtTrainEnd(TrainerCallback):
    """Put a NaN into the weights after the Trainer's last check and save: only the final check sees it."""

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        next(model.parameters()).data.fill_(float("nan"))


@pytest.mark.parametrize(("save_steps", "poison", "caught", "step", "kept"), [
    (2, PoisonAtStep(3), "the weights became NaN/inf", 4, ["checkpoint-2"]),
    (1000, PoisonAtStep(3), "the training loss became nan", 4, []),
    (1000, PoisonAtTrainEnd(), "the final weights became NaN/inf", 8, ["checkpoint-8"]),
])
def test_non_finite_training_stops_the_run_and_keeps_the_last_good_checkpoint(
    tiny_config, save_steps: int, poison: TrainerCallback, caught: str, step: int, kept: list[str]
) -> None:
    config = tiny_config(LLAMA, f"diverged-{save_steps}-{step}", "training.max_steps=8",
                         f"training.save_steps={save_steps}", "training.logging_steps=1")
    run_dir = config.output.run_dir
    with pytest.raises(NonFiniteError) as stopped:
        run_training(config, callbacks=[poison])
    checkpoints = run_dir / "checkpoints"
    last = last_complete_checkpoint(checkpoints)
    assert str(stopped.value).startswith(f"{caught} at step {step}")
    assert (f"--resume continues from {last}" if last else "no complete checkpoint yet") in str(stopped.value)
    # no checkpoint of the poisoned weights: the newest is the last good one, complete
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == kept
    assert not is_finished(run_dir) and not (run_dir / "model.safetensors").exists()
    assert read_stop(run_dir) == {"step": step, "reason": caught}  # what a grid summary shows of it
    run_training(config, resume=True)  # tried again (here without the poison): no longer stopped
    assert is_finished(run_dir) and read_stop(run_dir) is None


def test_a_setting_added_since_the_run_started_is_no_change_on_resume(tiny_config, finished_run: Path) -> None:
    run_dir = copy_of(finished_run, "older-version")
    saved = yaml.safe_load((run_dir / "run_config.yaml").read_text())
    del saved["data"]["doc_format"]  # as a run started before data.doc_format existed saved it
    (run_dir / "run_config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    assert resume_changes(tiny_config(LLAMA, run_dir.name, *SHORT), run_dir) == {}
    saved["data"]["doc_format"] = "lines"
    (run_dir / "run_config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    assert resume_changes(tiny_config(LLAMA, run_dir.name, *SHORT), run_dir) == {
        "data.doc_format": {"from": "lines", "to": "auto"}}


def test_the_entry_points_take_fresh_resume_and_allow_config_change(tiny_config, tmp_path: Path, capsys) -> None:
    config = tiny_config(LLAMA, "cli-start-modes", "training.max_steps=2", "training.save_steps=2")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    train_main([str(path)], "test")
    with pytest.raises(SystemExit, match="holds complete checkpoints .* add --resume"):
        train_main([str(path)], "test")
    train_main([str(path), "--fresh"], "test")
    with pytest.raises(SystemExit, match="at training.lr: .*--allow-config-change"):
        train_main([str(path), "--resume", "--set", "training.lr=1e-3"], "test")
    train_main([str(path), "--resume", "--set", "training.lr=1e-3", "--allow-config-change"], "test")
    changes = json.loads((config.output.run_dir / PROVENANCE_FILE).read_text())["config_changes"]
    assert changes == [{"step": 2, "changes": {"training.lr": {"from": 0.003, "to": 0.001}}}]
    with pytest.raises(SystemExit) as both:
        train_main([str(path), "--resume", "--fresh"], "test")
    assert both.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_provenance_lists_every_code_version_that_trained_the_run_with_its_steps(
    tiny_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Train with code A, crash, resume with code B, crash, resume with B again: both versions, each with its steps."""
    from babykd.run import provenance
    from babykd.export import model_card

    config = tiny_config(LLAMA, "two-code-versions", "training.max_steps=6", "training.save_steps=2")
    clean = {"commit": "a" * 40, "diff_sha256": None}
    edited = {"commit": "a" * 40, "diff_sha256": "9f3e" + "0" * 60}
    monkeypatch.setattr(provenance, "code_version", lambda: clean)
    with pytest.raises(KeyboardInterrupt):
        run_training(config, callbacks=[StopAtStep(3)])  # killed at step 3: step 3 is lost, A trained steps 0-2
    monkeypatch.setattr(provenance, "code_version", lambda: edited)
    with pytest.raises(KeyboardInterrupt):
        run_training(config, resume=True, callbacks=[StopAtStep(5)])
    run_training(config, resume=True)  # the same code again: its range grows, no new row

    record = json.loads((config.output.run_dir / PROVENANCE_FILE).read_text())
    assert record["code_versions"] == [{**clean, "first_step": 0, "last_step": 2},
                                       {**edited, "first_step": 2, "last_step": 6}]
    assert record["git_commit"] == "a" * 40 + "+dirty"
    shown = "trained by 2 code versions: aaaaaaa steps 0–2, aaaaaaa+dirty(9f3e0000) steps 2–6"
    assert provenance.describe_code_versions(record) == shown
    assert f"The run was {shown}." in model_card(config.output.run_dir)

    run_training(config, fresh=True)  # a fresh start is trained by one version only: nothing to list
    record = json.loads((config.output.run_dir / PROVENANCE_FILE).read_text())
    assert record["code_versions"] == [{**edited, "first_step": 0, "last_step": 6}]
    assert provenance.describe_code_versions(record) is None
    assert "code versions" not in model_card(config.output.run_dir)
