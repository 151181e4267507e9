"""The 2025 task registry: a new zero-shot task is one new file in babykd/evaluation/suite_tasks/."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from babykd import REPO_ROOT
from babykd.evaluation import submission, submission_check, suite, tasks
from babykd.evaluation.suite_tasks import REGISTRY, SuiteTask
from test_finetune import tiny_tokenizer
from test_submission import complete_submission

TOY_TASK = '''"""A toy task: which of two words follows "the"."""

from babykd.evaluation import ranking
from babykd.evaluation.suite_tasks import SuiteTask


def decode(where, record):
    return ranking.Candidates("toy", (f"the {record['good']}", f"the {record['bad']}"), (record["good"], record["bad"]))


TASK = SuiteTask(name="toy_pairs", column=50, full_folder="full_eval/toy_pairs", fast_folder=None,
                 scoring="accuracy", decode=decode, chance=0.5)
'''
#: The toy task as a part of the submission file: its key and the official collate step's count.
TOY_SUBMISSION_TASK = TOY_TASK.replace("chance=0.5)", 'chance=0.5, submission_key="toy", items={"toy": 3})')
#: The toy task with a folder in the 2024 layout too.
TOY_LEGACY_TASK = TOY_TASK.replace("chance=0.5)", 'chance=0.5, legacy_folder="toy_2024")')


def test_every_table_is_derived_from_the_registry():
    assert suite.SUITE_TASKS == tuple(REGISTRY)
    assert submission.FULL_KEYS[:-2] == tuple(suite.SUBMISSION_KEYS.values())
    assert set(submission.FAST_KEYS) == {f"{t}_fast" for t in REGISTRY if t not in suite.FULL_ONLY}
    assert tuple(submission_check.FULL_ITEMS) == tuple(suite.SUBMISSION_KEYS.values())
    assert set(submission_check.FAST_SUBTASKS) <= set(submission.FAST_KEYS.values())


def test_the_2024_tasks_folders_are_the_registrys():
    """The 2024 protocol's tasks and folders (tasks.TASK_FOLDERS, as it was) are the registry's legacy folders."""
    assert tasks.TASK_FOLDERS == {"blimp_filtered": "blimp_filtered", "blimp_supplement": "supplement_filtered",
                                  "ewok_filtered": "ewok_filtered"}
    assert set(tasks.DEFAULT_TASKS) == set(tasks.TASK_FOLDERS)


def test_a_submission_task_must_declare_its_items():
    """Without counts `--check` could not tell a truncated part from a complete one."""
    with pytest.raises(ValueError, match="task 'toy': a task with a submission key must declare its items"):
        SuiteTask(name="toy", column=50, full_folder="full_eval/toy", fast_folder=None, scoring="accuracy",
                  submission_key="toy")


@pytest.fixture()
def toy_task_file(request):
    """The one new file (TOY_TASK, or the text the test is parametrized with); removed afterwards."""
    path = REPO_ROOT / "babykd" / "evaluation" / "suite_tasks" / "toy_pairs.py"
    assert not path.exists()
    path.write_text(getattr(request, "param", TOY_TASK), encoding="utf-8")
    yield path
    path.unlink()


def test_a_new_task_is_one_file_scored_by_the_evaluate_command(toy_task_file, tmp_path):
    data = tmp_path / "suite" / "full_eval" / "toy_pairs"
    data.mkdir(parents=True)
    (data / "toy.jsonl").write_text("".join(json.dumps({"good": g, "bad": b}) + "\n"
                                            for g, b in [("cat", "the"), ("dog", "a"), ("hat", "of")]))
    model = tmp_path / "model"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=64)).save_pretrained(model)
    tiny_tokenizer(bos=False).save_pretrained(model)
    run = subprocess.run([sys.executable, "-m", "babykd.evaluate", str(model), "--tasks", "toy_pairs",
                          "--suite-data", str(tmp_path / "suite"), "--no-progress", "--device", "cpu"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    entry = json.loads((model / "eval" / "results.json").read_text())["tasks"]["toy_pairs"]
    assert entry["n_items"] == 3 and 0 <= entry["score"] <= 1 and entry["setup"]["official"]
    report = subprocess.run([sys.executable, "-m", "babykd.evaluation.report", str(model / "eval")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert report.returncode == 0 and "toy_pairs" in report.stdout, report.stderr


@pytest.mark.parametrize("toy_task_file", [TOY_SUBMISSION_TASK], indirect=True)
def test_a_new_submission_tasks_counts_are_checked_from_its_own_file(toy_task_file, tmp_path):
    """`--check` knows the toy's key and its count from the task's file alone."""
    data = complete_submission()
    data["toy"] = {"toy": {"predictions": [{"id": f"toy_{i}", "pred": "cat"} for i in range(2)]}}
    path = tmp_path / "submission.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    check = subprocess.run([sys.executable, "-m", "babykd.submission", "--check", str(path)],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert check.returncode == 1, check.stderr
    assert check.stdout.splitlines() == [f"{path}: toy.toy: 2 predictions, expected 3"]


@pytest.mark.parametrize("toy_task_file", [TOY_LEGACY_TASK], indirect=True)
def test_a_new_tasks_2024_folder_is_read_from_its_own_file(toy_task_file, tmp_path):
    """The 2024 protocol finds the toy by name in --data-dir from the task's file alone."""
    (tmp_path / "toy_2024").mkdir()
    (tmp_path / "toy_2024" / "toy.jsonl").write_text(
        "".join(json.dumps({"sentence_good": f"the {g}", "sentence_bad": f"the {b}"}) + "\n"
                for g, b in [("cat", "the"), ("dog", "a")]))
    probe = f"from babykd.evaluation.tasks import load_task; print(load_task('toy_pairs', {str(tmp_path)!r}).n_items)"
    run = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip() == "2", run.stderr
