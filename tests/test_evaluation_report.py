"""The report's pictures: a task x model heat-map table and learning curves over chck_* revisions."""

from __future__ import annotations

import csv
import io
import threading

import numpy as np
import pytest
from matplotlib.image import imread

from babykd import reproduce
from babykd.run.atomic import atomic_write_json
from babykd.evaluation.report import (
    cell_values, collect, csv_table, heatmap_columns, markdown_table, plot_learning_curves, plot_results,
    read_results, results_lock, revision_words, weights_fingerprint, write_results,
)
from babykd.export import score_lines


ALL = ("blimp_filtered", "blimp_supplement", "ewok_filtered", "entity_tracking", "wug_past_tense")


def record(model: str, revision: str | None, base: float, names: tuple[str, ...] = ALL) -> dict:
    tasks = {t: {"score": base + i / 100} for i, t in enumerate(names)}
    tasks["reading"] = {"score": base / 10, "eye_tracking": base / 10, "self_paced_reading": base / 20}
    return {"model": model, "revision": revision, "tasks": tasks}


def test_heatmap_has_a_column_per_score_and_a_row_per_model():
    records = [record("/runs/a", None, 0.6), record("/runs/b", None, 0.7)]
    assert heatmap_columns(records) == ["blimp_supplement", "blimp_filtered", "ewok_filtered", "entity_tracking",
                                        "wug_past_tense", "reading", "reading_spr"]
    image = imread(io.BytesIO(plot_results(records)), format="png")
    assert image.shape[1] > image.shape[0]  # wide: one column per task


def test_learning_curves_over_revisions():
    records = [record(f"/runs/a/revisions/{r}", r, 0.5 + k / 20, ("blimp_filtered",))
               for k, r in enumerate(["chck_1M", "chck_10M", "chck_100M"])]  # 3 panels: blimp, reading x2
    assert revision_words("chck_10M") == 1e7 and revision_words("chck_500K") == 5e5
    assert imread(io.BytesIO(plot_learning_curves(records)), format="png").ndim == 3
    with pytest.raises(ValueError, match="chck_"):
        plot_learning_curves([record("/runs/a", None, 0.5)])
    with pytest.raises(ValueError, match="not a checkpoint revision name"):
        revision_words("checkpoint-500")


def test_results_written_without_a_fingerprint_are_keyed_by_the_weights_too(tmp_path):
    """Writers that call write_results directly (the demo, reproduce) get the same staleness check."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"weights one")
    results = tmp_path / "results.json"
    entry = {"score": 0.5, "stderr": 0.01}
    first = write_results(results, {"model": str(model_dir), "tasks": {"demo_pairs": entry}})
    assert first["weights_sha256"] == weights_fingerprint(model_dir) is not None
    merged = write_results(results, {"model": str(model_dir), "tasks": {"blimp_filtered": entry}})
    assert set(merged["tasks"]) == {"demo_pairs", "blimp_filtered"}  # same weights: kept
    (model_dir / "model.safetensors").write_bytes(b"weights two")  # retrained into the same folder
    fresh = write_results(results, {"model": str(model_dir), "tasks": {"ewok_filtered": entry}})
    assert set(fresh["tasks"]) == {"ewok_filtered"}


def test_report_and_model_card_show_only_what_the_store_says_is_of_these_weights(tmp_path, capsys):
    """One rule (the store's): a results record of other weights, or unstamped (written before the store), is left
    out of the report and of the model card; a hub model's (no weights to read) is shown as it is."""
    model = tmp_path / "run"
    (model / "eval").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"weights one")
    results = model / "eval" / "results.json"
    entry = {"blimp_filtered": {"score": 0.5}}
    files = {"ours": {"weights_sha256": weights_fingerprint(model)}, "other": {"weights_sha256": "0" * 64},
             "unstamped": {}}
    for name, stamp in files.items():
        atomic_write_json(tmp_path / name / "results.json", {"model": str(model), "tasks": entry, **stamp})
    atomic_write_json(tmp_path / "hub" / "results.json", {"model": "org/model", "tasks": entry})
    shown = collect([tmp_path / name for name in (*files, "hub")])
    assert [r["model"] for r in shown] == [str(model), "org/model"] and shown[0]["weights_sha256"] == files["ours"][
        "weights_sha256"]
    notes = capsys.readouterr().err
    assert "other/results.json: left out, scored on other weights" in notes
    assert "unstamped/results.json: left out, written by an earlier version of babykd (no weights_sha256)" in notes
    for name, card in (("ours", "| blimp_filtered | 0.5000 |"), ("other", "Not evaluated"), ("unstamped", "Not evaluated")):
        atomic_write_json(results, {"model": str(model), "tasks": entry, **files[name]})
        assert card in "\n".join(score_lines(model)), name


def test_two_writers_finishing_together_keep_both_tasks(tmp_path):
    """eval-blimp.sh and eval-ewok.sh as two jobs: the second merge waits for the first instead of losing it."""
    results = tmp_path / "eval" / "results.json"

    def record(task: str) -> dict:
        return {"model": "org/model", "weights_sha256": "abc", "tasks": {task: {"score": 0.5}}}

    with results_lock(results.parent):  # job A is mid-merge: it has read the file (nothing yet)
        writer = threading.Thread(target=write_results, args=(results, record("ewok_filtered")))
        writer.start()
        writer.join(timeout=0.5)
        assert writer.is_alive()  # job B waits instead of writing what A is about to overwrite
        atomic_write_json(results, record("blimp_filtered"))  # A writes what it merged
    writer.join(timeout=30)
    assert not writer.is_alive()
    assert set(read_results(results)["tasks"]) == {"blimp_filtered", "ewok_filtered"}


def reading_record(model: str, eye: float, spr: float) -> dict:
    """A fast-suite record whose reading entry is as `babykd.evaluate` writes it (score = the eye-tracking gain)."""
    reading = {"metric": "r2_gain", "score": eye, "stderr": None, "eye_tracking": eye, "self_paced_reading": spr}
    return {"model": model, "tasks": {"blimp_filtered_fast": {"score": 0.6, "stderr": 0.01}, "reading_fast": reading}}


def test_table_csv_and_figure_show_both_reading_gains():
    """Self-paced reading is scored with eye tracking but was in neither table nor CSV (only the figure's column)."""
    records = [reading_record("/runs/a", 0.0286, 0.0123), reading_record("/runs/b", 0.0301, 0.0147)]
    columns = heatmap_columns(records)
    assert columns == ["blimp_filtered_fast", "reading_fast", "reading_spr_fast"]
    header, _, first, _ = markdown_table(records).splitlines()
    assert header == "| model | blimp_filtered_fast | reading_fast | reading_spr_fast |"
    assert first == "| a | 0.600 ± 0.0100 | 0.029 | 0.012 |"
    rows = list(csv.DictReader(io.StringIO(csv_table(records))))
    assert float(rows[1]["reading_spr_fast"]) == 0.0147 and float(rows[1]["reading_fast"]) == 0.0301
    values = cell_values(records, columns)
    assert np.isfinite(values).all() and values[:, 2].tolist() == [0.0123, 0.0147]


def test_reproduce_report_has_a_self_paced_reading_column_with_its_values(tmp_path):
    """The cpu study's RESULTS.md had no self-paced column and RESULTS.png an empty one (its records held scores)."""
    stage = reproduce.Stage("Llama-58M-strict", "baseline", 0)
    run = tmp_path / stage.run_name
    atomic_write_json(run / "eval" / "results.json", reading_record(str(run), 0.0286, 0.0123))
    atomic_write_json(run / "provenance.json", {"parameters": 10, "global_steps": 2, "wall_time_s": 1.0})
    (run / "run_config.yaml").write_text("training: {batch_size: 2}\ndata: {seq_length: 4}\n", encoding="utf-8")
    columns = reproduce.EvaluationBudget(tasks=["blimp_filtered", "reading"], fast=True).columns
    assert columns == ["blimp_filtered_fast", "reading_fast", "reading_spr_fast"]
    rows = reproduce.collect_rows([stage], tmp_path, columns)
    header, _, line = reproduce.markdown(rows, columns).splitlines()
    assert header.endswith("| reading_fast | reading_spr_fast | seeds |") and line.endswith("| 0.029 | 0.012 | 1 |")
    assert reproduce.csv_table(rows, columns).splitlines()[1].endswith(",0.6,0.0286,0.0123")
    assert np.isfinite(reproduce.figure_values(rows, columns)).all()
