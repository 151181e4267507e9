"""The results store: every unit, collate and export decide "does this belong to these weights?" by one rule.

Each test is a defect of the reliability round it was filed in (item numbers of that issue): a retrain that
shipped the previous model's predictions (2), AoA kept although its revisions changed (3), non-official GLUE
collated as official (4), a stray entry in revisions/ (11), a non-results JSON under eval/revisions (12),
two submissions scoring the same unit (15), and files of an earlier version without a stamp.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from babykd import REPO_ROOT
from babykd.evaluation import store
from babykd.evaluation.report import results_lock
from babykd.evaluation.store import weights_fingerprint
from babykd.run.lock import file_lock
from babykd.evaluation.submission import SUBMISSION_FILE
from babykd.evaluation.submission_check import check_file
from babykd.export import export_run
from babykd.submission import main
from test_submission import command, run_dir, suite  # noqa: F401 -- fixtures


def official(run_dir, suite, *extra):
    """The submission command with the official GLUE settings (every example, official epochs)."""
    return [str(run_dir), "--data-dir", str(suite["legacy"]), "--suite-data", str(suite["suite"]),
            "--no-progress", "--device", "cpu", *extra]


def retrain(folder, seed):
    """New weights in `folder` (the same architecture): what training into a used run folder leaves."""
    torch.manual_seed(seed)
    LlamaForCausalLM(LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=256)).save_pretrained(folder)


def submission_file(run_dir):
    return json.loads((run_dir / "eval" / SUBMISSION_FILE).read_text())


def unit_lines(out, verdict):
    return sorted(line.split("] ", 1)[1].split(":")[0] for line in out.splitlines() if line.endswith(verdict)
                  or (verdict == "finished" and ": finished in " in line))


def test_a_retrain_rescores_its_units_and_collate_and_export_refuse_the_old_predictions(run_dir, suite, tmp_path,
                                                                                        capsys):
    assert main(official(run_dir, suite)) == 0
    first = submission_file(run_dir)
    assert {"blimp", "ewok", "glue"} <= set(first) and set(first["glue"]) == {"mrpc", "rte"}
    capsys.readouterr()

    retrain(run_dir, seed=5)  # the final model retrained into the same folder; revisions unchanged
    assert main(official(run_dir, suite, "--stage", "collate")) == 0
    err = capsys.readouterr().err
    assert "glue/rte.json: scored on other weights" in err and "blimp.json: scored on other weights" in err
    stale = submission_file(run_dir)
    assert not {"blimp", "ewok", "glue"} & set(stale)  # none of the old model's predictions is collated
    (run_dir / "provenance.json").write_text(json.dumps({"run": "tiny"}), encoding="utf-8")
    export_run(run_dir, tmp_path / "repo")  # export reads through the store too
    exported = json.loads((tmp_path / "repo" / SUBMISSION_FILE).read_text())
    assert not {"blimp", "ewok", "glue"} & set(exported)

    assert main(official(run_dir, suite)) == 0
    out = capsys.readouterr().out
    # AoA's entry lives in the final model's results.json, whose record is rewritten for the new weights:
    # it is scored again (on the same revisions) rather than kept in a record of other weights
    assert unit_lines(out, "finished") == ["aoa 2 revisions", "full final model", "glue mrpc", "glue rte"]
    assert unit_lines(out, "skipped") == ["fast chck_1M", "fast chck_2M"]  # their weights are the same
    now = weights_fingerprint(run_dir)
    assert store.read_predictions(run_dir / "eval", None, "glue/rte", now) == submission_file(run_dir)["glue"]["rte"]
    assert store.read_predictions(run_dir / "eval", None, "blimp", now) == submission_file(run_dir)["blimp"]


def test_aoa_is_scored_again_when_one_of_its_revisions_changes(run_dir, suite, capsys):
    assert main(command(run_dir, suite, "--skip-glue")) == 0
    capsys.readouterr()
    assert main(command(run_dir, suite, "--stage", "aoa")) == 0
    assert "aoa 2 revisions: done already for these weights, skipped" in capsys.readouterr().out
    retrain(run_dir / "revisions" / "chck_2M", seed=9)  # a revision replaced; the final model unchanged
    assert main(command(run_dir, suite, "--stage", "aoa")) == 0
    assert "[1/1] aoa 2 revisions: finished in" in capsys.readouterr().out
    entry = json.loads((run_dir / "eval" / "results.json").read_text())["tasks"]["aoa"]
    assert entry["weights_sha256"] == store.revisions_sha256(run_dir, ["chck_1M", "chck_2M"])


def test_glue_with_other_settings_is_kept_out_of_the_submission_and_check_rejects_the_file(run_dir, suite, capsys):
    assert main(official(run_dir, suite, "--epochs", "1", "--stage", "glue")) == 0  # every example, 1 epoch
    entry = json.loads((run_dir / "eval" / "results.json").read_text())["tasks"]["rte"]
    assert entry["setup"]["hyperparameters"]["epochs"] == 1 and not entry["setup"]["official"]
    assert main(official(run_dir, suite, "--stage", "collate")) == 0
    err = capsys.readouterr().err
    assert "glue/rte.json: not scored the official way (" in err and "epochs" in err
    assert "glue" not in submission_file(run_dir)
    assert "glue: missing" in check_file(run_dir / "eval" / SUBMISSION_FILE)


def test_a_file_of_an_earlier_version_without_a_stamp_is_refused_and_rescored(run_dir, suite, capsys):
    legacy = run_dir / "eval" / "predictions" / "main" / "blimp.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"blimp_filtered": {"predictions": []}}))  # the layout before the store
    (run_dir / "eval" / "results.json").write_text(json.dumps({"model": str(run_dir.resolve()), "tasks": {
        "blimp_filtered": {"score": 0.5, "dtype": "fp32", "max_items_per_subtask": None}},
        "weights_sha256": weights_fingerprint(run_dir)}))
    assert main(command(run_dir, suite, "--stage", "collate")) == 0
    assert "blimp.json: written by an earlier version of babykd (no weights_sha256)" in capsys.readouterr().err
    assert "blimp" not in submission_file(run_dir)
    assert main(command(run_dir, suite, "--stage", "full")) == 0
    assert "[1/1] full final model: finished in" in capsys.readouterr().out


def test_stray_entries_in_revisions_are_named_once_and_ignored(run_dir, suite, capsys):
    (run_dir / "revisions" / "chck_7M.bak").mkdir()
    (run_dir / "revisions" / "notes.txt").write_text("not a checkpoint")
    assert main(command(run_dir, suite, "--list", "fast")) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["fast chck_1M", "fast chck_2M"]
    warnings = [line for line in captured.err.splitlines() if "ignored" in line]
    assert warnings == [f"warning: {run_dir / 'revisions'}: ignored chck_7M.bak, notes.txt "
                        "(not a revision folder chck_<words>)"]


def test_a_json_under_eval_revisions_that_is_no_results_file_is_ignored_by_collate(run_dir, suite, capsys):
    for name, text in (("chck_1M", "[1, 2]"), ("chck_9M.bak", "{}")):
        (run_dir / "eval" / "revisions" / name).mkdir(parents=True)
        (run_dir / "eval" / "revisions" / name / "results.json").write_text(text)
    assert main(command(run_dir, suite, "--stage", "collate")) == 0
    err = capsys.readouterr().err
    assert "chck_1M/results.json: not an evaluation results file" in err and "ignored" in err
    assert (run_dir / "eval" / SUBMISSION_FILE).is_file()


def test_two_submissions_at_once_score_a_unit_once(run_dir, suite):
    argv = [sys.executable, "-m", "babykd.submission", *command(run_dir, suite, "--stage", "fast", "--index", "0")]
    jobs = [subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [job.communicate(timeout=600) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    lines = [line for out, _ in outputs for line in out.splitlines() if line.startswith("[1/1] fast chck_1M")]
    assert sum(": finished in " in line for line in lines) == 1, outputs
    assert sum(line.endswith("done already for these weights, skipped") for line in lines) == 1, outputs


def test_every_lock_is_the_one_flock_primitive(tmp_path):
    """The results lock, the unit lock and the run-folder lock are all `run_lock.file_lock` (no fcntl elsewhere):
    a second holder is told who holds it (what the holder wrote) and waits until it is released."""
    assert [p.name for p in (REPO_ROOT / "babykd").rglob("*.py") if "fcntl" in p.read_text()] == ["lock.py"]
    lock, told, order = tmp_path / "eval" / ".results.lock", [], []

    def second_holder() -> None:
        with file_lock(lock, told.append):
            order.append("B")

    with file_lock(lock) as handle:
        handle.write("job A\n")
        handle.flush()
        second = threading.Thread(target=second_holder)
        second.start()
        second.join(timeout=0.5)
        assert second.is_alive() and told == ["job A"]
        order.append("A")
    second.join(timeout=30)
    assert order == ["A", "B"]
    with results_lock(tmp_path / "other"), store.unit_lock(tmp_path, "fast chck_1M"):
        assert (tmp_path / "other" / ".results.lock").is_file()
        assert (tmp_path / "eval" / "units" / "fast_chck_1M.lock").is_file()
