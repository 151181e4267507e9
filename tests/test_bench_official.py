"""bench_evaluation --against-official: both sides get the same items, and decisions are compared per item.

The official code itself is not here (it is the user's checkout); these check the parts of ours
that decide what the comparison means.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import pytest

from babykd import REPO_ROOT
from babykd.evaluation.suite import load_candidates, make_source

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
spec = importlib.util.spec_from_file_location("official_2025", REPO_ROOT / "benchmarks" / "official_2025.py")
official = importlib.util.module_from_spec(spec)
spec.loader.exec_module(official)

BLIMP = [{"sentence_good": f"Good {i}.", "sentence_bad": f"Bad {i}.", "field": "f", "UID": "sub"} for i in range(5)]


def test_the_written_suite_holds_the_items_our_subset_scores(tmp_path):
    original = tmp_path / "original"
    folder = original / "fast_eval" / "blimp_fast"
    folder.mkdir(parents=True)
    (folder / "sub.jsonl").write_text("".join(json.dumps(r) + "\n" for r in BLIMP))
    reading = original / "fast_eval" / "reading"
    reading.mkdir()
    (reading / "reading_data.csv").write_text("item,word\n" + "".join(f'"ctx, {i}",w{i}\n' for i in range(50)))
    written = tmp_path / "written"
    source = make_source(True, tmp_path / "none", original)
    counts = official.write_suite(source, ["blimp_filtered", "reading"], written, 2)
    assert counts == {"blimp_filtered": 2, "reading": 40}
    subset, _ = load_candidates("blimp_filtered", make_source(True, tmp_path / "none", original), 2)
    whole, _ = load_candidates("blimp_filtered", make_source(True, tmp_path / "none", written))
    assert whole == subset and [c.sentences[0] for c in whole] == ["Good 0.", "Good 2."]
    rows = (written / "fast_eval" / "reading" / "reading_data.csv").read_text().splitlines()
    assert rows[0] == "item,word" and rows[1] == '"ctx, 0",w0' and len(rows) == 41


def preds(*choices: str, uid: str = "sub") -> dict:
    return {uid: {"predictions": [{"id": f"{uid}_{k}", "pred": c} for k, c in enumerate(choices)]}}


def test_decisions_are_compared_item_by_item():
    same = official.compare("blimp_filtered", preds("a", "b", "c", "d"), preds("a", "b", "c", "x"))
    assert same == {"same_decisions": 0.75}
    assert "item ids differ" in official.compare("blimp_filtered", preds("a"), preds("a", "b"))["note"]
    wug = {"w": {"predictions": [{"id": "w_0", "pred": "a", "prob": 0.5}]}}
    theirs = {"w": {"predictions": [{"id": "w_0", "pred": "a", "prob": 0.25}]}}
    assert official.compare("wug_past_tense", wug, theirs) == {"same_decisions": 1.0, "max_abs_score_diff": 0.25}


def test_reading_surprisals_match_within_a_tolerance_and_missing_values_match_each_other():
    def reading(*values: tuple[float, float]) -> dict:
        return {"reading": {"predictions": [{"id": i, "pred": p, "prev_pred": q} for i, (p, q) in enumerate(values)]}}

    ours = reading((1.0, math.nan), (2.0, 3.0))
    result = official.compare("reading", ours, reading((1.0 + 1e-5, math.nan), (2.5, 3.0)))
    assert result["same_decisions"] == pytest.approx(2 / 3) and result["max_abs_score_diff"] == pytest.approx(0.5)



def test_the_flops_fields_are_the_packed_plan_over_the_scorers_own_seconds():
    """A task's FLOP/s fields: the packed plan's FLOPs over the time inside the scorer; the table shows them."""
    import argparse

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    import bench_evaluation
    from babykd.data.tokenizer import train_tokenizer
    from babykd.evaluation import ranking
    from babykd.evaluation.prefix_scorer import packed_flops

    tokenizer = train_tokenizer(["Box 0 contains the apple. Box 1 contains nothing."] * 20, vocab_size=300,
                                min_frequency=1, show_progress=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4)).eval()
    items = [ranking.Candidates("u", ("Box 0 contains the apple.", "Box 0 contains nothing."), ("the apple.", "nothing."))]
    args = argparse.Namespace(device="cpu", repeats=2, batch_tokens=None)
    scores, seconds, fields = bench_evaluation.timed_ours(model, tokenizer, "entity_tracking", items, args, peak=1e10)
    assert ranking.packed_loglikelihoods.__name__ == "packed_loglikelihoods"  # the recorder is gone afterwards
    assert fields["flops"] == packed_flops(model, ranking.candidate_requests(tokenizer, items))
    assert 0 < fields["scoring_s"] <= seconds + 1e-3
    assert fields["of_peak"] == pytest.approx(fields["gflops_per_s"] * 1e9 / 1e10, abs=1e-3)
    summary = {"matmul_peak_flops_per_s": 1e10, "threads": 1, "runs": [{"task": "entity_tracking", **fields}]}
    assert bench_evaluation.flops_table(summary)[-1].startswith("| entity_tracking |")
    assert bench_evaluation.matmul_peak("cpu", n=64, seconds=0.05) > 0
