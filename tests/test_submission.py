"""`python -m babykd.submission`: the one command from a run to a submission file, and `--check`.

A tiny Llama with two revisions and a tiny suite folder (zero-shot sets, AoA
files and two GLUE tasks, made from the other evaluation tests' writers); the
check itself is tested on a synthetic file with the official item counts and
on damaged copies of it.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
import shutil
from collections import Counter
from typing import Sequence

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from babykd.evaluate import parse_args as evaluate_args
from babykd.evaluation.glue_data import GLUE_TASKS
from babykd.evaluation.submission import FAST_KEYS, track_revisions
from babykd.evaluation.aoa import OFFICIAL_CONTEXTS, load_aoa_data
from babykd.evaluation.submission_check import FAST_SUBTASKS, FULL_ITEMS, GLUE_ITEMS, check_file, check_submission
from babykd.evaluation.suite_data import MissingEvalData, SuiteData
from babykd.evaluation.suite_tasks import REGISTRY
from babykd.rules import revision_words
from babykd.submission import main
from conftest import shared_or_skip
from test_aoa import write_suite
from test_evaluation_2025 import EWOK, SUPPLEMENT, write_eval_folders, write_jsonl
from test_finetune import separable_rows, tiny_tokenizer, write_glue

UNIT_LINE = re.compile(
    r"^\[\d+/\d+\] (fast|full|aoa|glue) .+: (finished in [\d.]+ s|done already for these weights, skipped)$"
)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """A 2025 suite folder (fast and full zero-shot sets, AoA, RTE and MRPC) and a 2024-layout folder."""
    legacy, data = write_eval_folders(tmp_path_factory.mktemp("suite"))
    write_jsonl(data / "fast_eval" / "supplement_fast" / "turns.jsonl", SUPPLEMENT["turns"])
    write_jsonl(data / "fast_eval" / "ewok_fast" / "physical.jsonl", next(iter(EWOK.values())))
    write_suite(data)
    splits = {"train": separable_rows(64, 0), "valid": separable_rows(16, 1)}
    write_glue(data, {"rte": splits, "mrpc": splits})
    return {"legacy": legacy, "suite": data}


@pytest.fixture()
def run_dir(tmp_path):
    """A finished run: the final model and two revisions (the final weights again and a second draw)."""
    run = tmp_path / "run"
    tokenizer = tiny_tokenizer(bos=False)
    for seed, folder in [(0, run), (0, run / "revisions" / "chck_1M"), (1, run / "revisions" / "chck_2M")]:
        torch.manual_seed(seed)
        LlamaForCausalLM(LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=2, max_position_embeddings=256)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return run


def command(run_dir, suite, *extra):
    return [str(run_dir), "--data-dir", str(suite["legacy"]), "--suite-data", str(suite["suite"]), "--epochs", "1",
            "--max-train-examples", "64", "--no-progress", "--device", "cpu", *extra]


def test_one_command_runs_every_unit_once_names_what_is_missing_and_resumes(run_dir, suite, tmp_path, capsys):
    assert main(command(run_dir, suite, "--out", str(tmp_path / "upload"))) == 0
    out = capsys.readouterr().out
    units = [line for line in out.splitlines() if UNIT_LINE.match(line)]
    assert [u.split(":")[0].split("] ")[1] for u in units if "finished" in u] == [
        "fast chck_1M", "fast chck_2M", "full final model", "aoa 2 revisions", "glue rte", "glue mrpc"]
    assert (tmp_path / "upload" / "all_full_preds_and_fast_scores_causal.json").is_file()
    assert re.search(r"^why: comps: .*full_eval/comps", out, re.M)  # data this machine cannot have, named
    assert re.search(r"^why: glue\.boolq: no train data .*boolq\.train\.jsonl", out, re.M)
    lacks = r"^why: aoa: the run lacks 17 of the track's 19 revisions \(chck_3M, chck_4M, chck_5M, \.\.\.\)"
    assert re.search(lacks, out, re.M)
    assert "why: glue: fine-tuned on the first 64 training examples" in out and re.search(r"^complete: ", out, re.M)
    assert "not ready to upload" in out
    assert "  fast_eval_results.blimp: 2 revisions, expected 19 (chck_1M .. chck_100M)" in out
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    assert results["tasks"]["rte"]["max_train_examples"] == 64 and "aoa" in results["tasks"]
    revision = json.loads((run_dir / "eval" / "revisions" / "chck_2M" / "results.json").read_text())
    assert revision["tasks"]["blimp_filtered_fast"]

    assert main(command(run_dir, suite)) == 0  # everything is there for these weights: nothing runs again
    again = [line for line in capsys.readouterr().out.splitlines() if UNIT_LINE.match(line)]
    assert len(again) == 6 and all(line.endswith("skipped") for line in again)

    torch.manual_seed(7)  # new weights for one revision: only its unit runs again
    LlamaForCausalLM.from_pretrained(run_dir / "revisions" / "chck_1M").apply(
        lambda m: torch.nn.init.normal_(m.weight) if isinstance(m, torch.nn.Linear) else None
    ).save_pretrained(run_dir / "revisions" / "chck_1M")
    assert main(command(run_dir, suite, "--stage", "fast")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("[1/2] fast chck_1M: finished in") for line in lines)
    assert "[2/2] fast chck_2M: done already for these weights, skipped" in lines


def test_stages_list_and_index_address_one_unit(run_dir, suite, capsys):
    assert main(command(run_dir, suite, "--list", "fast", "glue")) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["fast chck_1M", "fast chck_2M", "glue rte", "glue mrpc"]
    assert "glue.mnli: no train data" in captured.err
    with pytest.raises(SystemExit, match=r"error: .*stage fast has 2 unit\(s\); no number 5"):
        main(command(run_dir, suite, "--stage", "fast", "--index", "5"))
    shutil.rmtree(run_dir / "revisions")  # a run saved without revisions: named, not a failure
    assert main(command(run_dir, suite, "--stage", "collate")) == 0
    out = capsys.readouterr().out
    assert "why: fast: the run has no revisions/chck_*" in out and "why: aoa: the run has no revisions/chck_*" in out


@functools.cache
def aoa_order() -> tuple[tuple[str, int], ...]:
    """(word, context id) of one revision's AoA records as the official run writes them: the CDI list's words in
    order where the suite data is at hand (--check compares with it), else synthetic words of 20 contexts each."""
    try:
        data = load_aoa_data(SuiteData())
    except MissingEvalData:
        return tuple((f"w{k // 20}", k % 20) for k in range(OFFICIAL_CONTEXTS))
    return tuple((word, k) for word, contexts in zip(data.words, data.contexts) for k in range(len(contexts)))


def aoa_part(order: Sequence[tuple[str, int]], revisions: Sequence[str]) -> dict:
    """The official surprisal.json: per revision, one record per (word, context) in `order`."""
    return {"metadata": {}, "results": [
        {"step": r, "word_count": revision_words(r), "target_word": word, "context_id": k, "context": "BOS_ONLY",
         "surprisal": 4.0} for r in revisions for word, k in order]}


def complete_submission() -> dict:
    """A synthetic strict-small submission with every count the official collate asserts."""
    revisions = track_revisions("strict-small")

    def part(table):
        return {name: {"predictions": [{"id": f"{name}_{i}", "pred": "a"} for i in range(n)]}
                for name, n in table.items()}

    data = {key: part(table) for key, table in FULL_ITEMS.items() if isinstance(table, dict)}
    for key, prob in (("wug_adj", 0.5), ("wug_past", 0.2)):
        data[key] = {key: {"predictions": [{"id": i, "pred": "a", "prob": prob} for i in range(FULL_ITEMS[key])]}}
    data["reading"] = {"reading": {"predictions": [{"id": i, "pred": 3.0, "prev_pred": math.nan if i == 0 else 2.0}
                                                   for i in range(FULL_ITEMS["reading"])]}}
    data["glue"] = {t: {"predictions": [{"id": f"{t}_{i}", "pred": i % GLUE_TASKS[t].num_labels} for i in range(n)]}
                    for t, n in GLUE_ITEMS.items()}
    data["aoa"] = aoa_part(aoa_order(), revisions)
    fast_values = {
        **{key: dict.fromkeys(subtasks, 0.5) for key, subtasks in FAST_SUBTASKS.items()},
        "wug_adj": {"wug_adj": -0.1}, "wug_past": {"wug_past": 0.3}, "reading": {"spr": 0.01, "rt": -0.002},
    }
    data["fast_eval_results"] = {key: [fast_values[key]] * len(revisions) for key in FAST_KEYS.values()}
    return data


def test_check_passes_a_complete_file_and_names_each_damage(tmp_path, capsys):
    good = complete_submission()
    assert check_submission(good) == []
    damaged = copy.deepcopy(good)
    damaged["aoa"]["results"] = [r for r in damaged["aoa"]["results"] if r["step"] != "chck_5M"]
    damaged["blimp"]["adjunct_island"]["predictions"].pop()
    damaged["fast_eval_results"]["ewok"] = [dict(v) for v in damaged["fast_eval_results"]["ewok"]]
    damaged["fast_eval_results"]["ewok"][3]["social-relations"] = math.nan
    damaged["fast_eval_results"]["reading"] = damaged["fast_eval_results"]["reading"][:-1]
    damaged["glue"]["rte"]["predictions"][0]["pred"] = 2
    del damaged["comps"]
    assert check_submission(damaged) == [
        "comps: missing",
        "blimp.adjunct_island: 927 predictions, expected 928",
        "glue.rte[0]: 'pred' must be a class index 0..1, got 2",
        "aoa: revision chck_5M missing",
        "fast_eval_results.ewok[chck_4M]: values outside [0, 1] or not finite: {'social-relations': nan}",
        "fast_eval_results.reading: 18 revisions, expected 19 (chck_1M .. chck_100M)",
    ]
    assert check_submission(good, track="strict")[0] == "aoa: revision chck_200M missing"
    path = tmp_path / "sub.json"
    path.write_text(json.dumps(damaged), encoding="utf-8")
    assert main(["--check", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and all(line.startswith(f"{path}: ") for line in lines)
    shutil.copy(path, tmp_path / "broken.json")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    assert main(["--check", str(tmp_path / "broken.json")]) == 1
    assert "not a readable JSON file" in capsys.readouterr().out


def test_official_task_names_are_aliases(tmp_path):
    args = evaluate_args([str(tmp_path), "--tasks", "blimp", "supplement", "ewok", "wug_adj", "wug_past", "reading"])
    assert args.tasks == ["blimp_filtered", "blimp_supplement", "ewok_filtered", "wug_adj_nominalization",
                          "wug_past_tense", "reading"]


def test_export_carries_the_submission_file_and_says_how_it_was_scored(run_dir, suite, tmp_path, capsys):
    from babykd.export import export_run

    assert main(command(run_dir, suite, "--skip-glue", "--stage", "collate")) == 0  # collate alone: nothing scored
    (run_dir / "provenance.json").write_text(json.dumps({"run": "tiny"}), encoding="utf-8")
    export_run(run_dir, tmp_path / "repo")
    card = (tmp_path / "repo" / "README.md").read_text()
    assert (tmp_path / "repo" / "all_full_preds_and_fast_scores_causal.json").is_file()
    assert "## How this was scored" in card and "python -m babykd.submission --check" in card
    exported = tmp_path / "repo" / "all_full_preds_and_fast_scores_causal.json"
    problems = check_submission(json.loads(exported.read_text()))
    assert f"{len(problems)} problem(s), e.g. `blimp: missing`" in card


def test_each_tasks_counts_are_the_released_files_counts():
    """The official collate's counts, as each task declares them, recounted from the released data (BLiMP UIDs in
    lower case, as it compares)."""
    legacy = shared_or_skip("evaluation_data")
    suite = SuiteData(shared_or_skip("evaluation_data_2025.zip"))

    def lines(data: bytes) -> list[dict]:
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]

    blimp = Counter(json.loads(line)["UID"].lower() for f in (legacy / "blimp_filtered").glob("*.jsonl")
                    for line in f.read_text(encoding="utf-8").splitlines() if line.strip())
    assert blimp == REGISTRY["blimp_filtered"].items
    for task in ("blimp_supplement", "ewok_filtered"):
        folder = legacy / REGISTRY[task].legacy_folder
        assert {f.stem.lower(): len(lines(f.read_bytes())) for f in folder.glob("*.jsonl")} == REGISTRY[task].items
    entity = Counter(f"{split}_{row['numops']}_ops" for split in ("regular", "ambiref", "move_contents")
                     for row in lines(suite.read_bytes(f"full_eval/entity_tracking/{split}.jsonl")))
    assert entity == REGISTRY["entity_tracking"].items
    for task in ("wug_adj_nominalization", "wug_past_tense"):
        assert len(lines(suite.read_bytes(f"full_eval/{task}/{task}.jsonl"))) == REGISTRY[task].items
    reading_rows = suite.read_bytes("full_eval/reading/reading_data.csv").decode().strip().splitlines()[1:]
    assert len(reading_rows) == REGISTRY["reading"].items
    assert {name: len(lines(suite.read_bytes(task.file("valid")))) for name, task in GLUE_TASKS.items()} == GLUE_ITEMS
    assert load_aoa_data(suite).n_contexts == OFFICIAL_CONTEXTS


def test_check_names_aoa_records_moved_across_words_or_out_of_the_official_form():
    """The official run writes every revision's records in one (word, context) order with six keys; the
    leaderboard pairs each surprisal with a word through its labels, so values moved to another word passed."""
    good = complete_submission()
    moved = copy.deepcopy(good)
    records = [r for r in moved["aoa"]["results"] if r["step"] == "chck_3M"]
    second = next(i for i, r in enumerate(records) if r["target_word"] != records[0]["target_word"])
    first_word, second_word = records[0]["target_word"], records[second]["target_word"]
    records[0]["target_word"], records[second]["target_word"] = second_word, first_word
    assert check_submission(moved) == [f"aoa: revision chck_3M, record 0: {second_word!r} context 0 "
                                       f"where revision chck_1M has {first_word!r} context 0"]
    backwards = {**good, "aoa": aoa_part(aoa_order()[::-1], track_revisions("strict-small"))}  # all revisions alike
    last_word, last_context = aoa_order()[-1]
    assert check_submission(backwards) == [f"aoa: revision chck_1M, record 0: {last_word!r} context {last_context}, "
                                           "expected context 0 (the official run writes each word's contexts in order)"]
    informal = copy.deepcopy(good)
    informal["aoa"]["results"][5]["word_count"] = 2_000_000  # a chck_1M record
    del informal["aoa"]["results"][-1]["context_id"]
    assert check_submission(informal)[0] == (
        "aoa: 2 records not of the official form (keys context, context_id, step, surprisal, target_word, "
        "word_count; word_count the revision's words seen; surprisal >= 0 or NaN)")


def test_check_compares_the_aoa_word_order_with_the_official_cdi_list(tmp_path, capsys):
    """Two words' records swapped in every revision agree with each other: only the CDI list tells."""
    suite = shared_or_skip("evaluation_data_2025.zip")
    order = list(aoa_order())
    cut = next(i for i, (word, _) in enumerate(order) if word != order[0][0])
    end = next(i for i, (word, _) in enumerate(order) if word not in (order[0][0], order[cut][0]))
    swapped = order[cut:end] + order[:cut] + order[end:]  # the second word's block before the first's
    data = complete_submission()
    data["aoa"] = aoa_part(swapped, track_revisions("strict-small"))
    path = tmp_path / "swapped.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    line = (f"aoa: revision chck_1M, record 0: {order[cut][0]!r} context 0 where the official CDI list "
            f"(full_eval/aoa/cdi_childes.json) has {order[0][0]!r} context 0 (and 18 more revisions)")
    assert check_file(path, suite=suite) == [line]
    assert main(["--check", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [f"{path}: {line}"]
