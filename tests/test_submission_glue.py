"""GLUE tasks as resumable units: a task stopped mid-way continues after its last epoch, as if never stopped."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from babykd import REPO_ROOT
from babykd.evaluation import finetune as ft, store
from babykd.evaluation.finetune_resume import ResumeFile, resume_key
from babykd.evaluation.glue_data import GLUE_TASKS, load_split
from babykd.evaluation.suite_data import SuiteData
from test_finetune import checkpoint, separable_rows, write_glue  # noqa: F401  (checkpoint: a module fixture)


class Preempted(Exception):
    """Stands in for the job being stopped."""


def resume_file(path, task, hp, train, valid) -> ResumeFile:
    """The resume file of one fine-tuning, keyed as the command keys it (the task and the store's stamp)."""
    return ResumeFile(path, resume_key(task.name, store.stamp("weights", ft.task_setup(task, hp, train, valid, None, None))))


def test_an_interrupted_task_resumes_after_its_last_epoch_and_matches_an_uninterrupted_run(  # noqa: F811
    checkpoint, tmp_path, monkeypatch
):
    rows = {"rte": {"train": separable_rows(32, 0), "valid": separable_rows(8, 1)}}
    suite = SuiteData(write_glue(tmp_path / "suite", rows))
    task = GLUE_TASKS["rte"]
    train, valid = load_split(suite, task, "train"), load_split(suite, task, "valid")
    hp = ft.Hyperparameters(learning_rate=3e-3, batch_size=8, epochs=3)
    device = ft.torch.device("cpu")
    whole = ft.finetune(checkpoint, task, train, valid, hp, device, progress=False)

    state = resume_file(tmp_path / "rte.pt", task, hp, train, valid)
    real_predict, calls = ft.predict, []

    def predict_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the third epoch's validation: epochs 1 and 2 are saved
            raise Preempted
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(ft, "predict", predict_then_stop)
    with pytest.raises(Preempted):
        ft.finetune(checkpoint, task, train, valid, hp, device, progress=False, resume=state)
    assert state.path.is_file()
    monkeypatch.setattr(ft, "predict", real_predict)
    steps = []
    real_step = ft.torch.optim.AdamW.step

    def counted_step(self, *args, **kwargs):
        steps.append(1)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(ft.torch.optim.AdamW, "step", counted_step)
    resumed = ft.finetune(checkpoint, task, train, valid, hp, device, progress=False, resume=state)
    assert len(steps) == len(train) // hp.batch_size  # only the third epoch ran
    assert resumed.epoch_metrics == whole.epoch_metrics and resumed.best_epoch == whole.best_epoch
    np.testing.assert_array_equal(resumed.predictions, whole.predictions)

    other = ft.Hyperparameters(learning_rate=1e-3, batch_size=8, epochs=3)  # another fine-tuning: the state is not used
    steps.clear()
    ft.finetune(checkpoint, task, train, valid, other, device, progress=False,
                resume=resume_file(state.path, task, other, train, valid))
    assert len(steps) == 3 * (len(train) // hp.batch_size)


def test_the_command_deletes_a_finished_tasks_state(checkpoint, tmp_path):  # noqa: F811
    suite = write_glue(tmp_path / "suite", {"rte": {"train": separable_rows(32, 0), "valid": separable_rows(8, 1)}})
    ft.main([str(checkpoint), "rte", "--data", str(suite), "--epochs", "1", "--batch-size", "8", "--no-progress",
             "--output", str(tmp_path / "results.json")])
    assert not (checkpoint / "eval" / ft.RESUME_DIR / "rte.pt").exists()
    assert (checkpoint / "eval" / ft.RESUME_DIR).is_dir()  # the state was written there while the task ran


def test_a_signalled_job_stops_and_its_rerun_resumes_the_task(checkpoint, tmp_path):  # noqa: F811
    """eval-submission.slurm under plain bash: SIGUSR1 (SLURM's time-limit warning) stops it; rerun, it resumes."""
    run = tmp_path / "run"
    shutil.copytree(checkpoint, run, ignore=shutil.ignore_patterns("eval"))
    suite = write_glue(tmp_path / "suite", {"rte": {"train": separable_rows(32, 0), "valid": separable_rows(8, 1)}})
    env = {**os.environ, "BABYKD_EVAL_DATA_2025": str(suite), "OMP_NUM_THREADS": "1"}
    command = ["bash", str(REPO_ROOT / "scripts" / "eval-submission.slurm"), str(run), "--stage", "glue",
               "--epochs", "150", "--no-progress", "--device", "cpu"]
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = run / "eval" / ft.RESUME_DIR / "rte.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    job.send_signal(signal.SIGUSR1)
    _, err = job.communicate(timeout=60)
    assert job.returncode != 0 and "run the same command again to resume" in err, err
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(r"rte: resuming after epoch \d+ of 150", done.stderr), done.stderr
    assert "glue rte: finished in" in done.stdout and not state.exists()



def test_the_command_hashes_the_weights_once_for_all_its_tasks(checkpoint, tmp_path, monkeypatch):  # noqa: F811
    """The weights' sha256 (a read of the whole weight files) is taken once per command, not per task and write."""
    suite = write_glue(tmp_path / "suite", {t: {"train": separable_rows(16, 0), "valid": separable_rows(8, 1)}
                                            for t in ("rte", "mrpc")})
    calls, real = [], store.weights_fingerprint

    def counted(model_dir):
        calls.append(model_dir)
        return real(model_dir)

    for module in [m for name, m in sys.modules.items() if name.startswith("babykd")]:
        if getattr(module, "weights_fingerprint", None) is real:
            monkeypatch.setattr(module, "weights_fingerprint", counted)
    ft.main([str(checkpoint), "rte", "mrpc", "--data", str(suite), "--epochs", "1", "--batch-size", "8",
             "--max-valid-examples", "8", "--no-progress", "--output", str(tmp_path / "results.json")])
    assert len(calls) == 1
