"""The report's pictures: a task x model heat-map table and learning curves over chck_* revisions."""

from __future__ import annotations

import io

import pytest
from matplotlib.image import imread

from babykd.evaluation.report import heatmap_columns, plot_learning_curves, plot_results, revision_words


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
    with pytest.raises(ValueError, match="not named"):
        revision_words("checkpoint-500")
