"""GLUE fine-tuning: metrics against hand-computed values, the schedule, the official head and pooling, a tiny task learnt.

Tiny random models and tiny JSONL tasks written here (seconds on CPU); the real
GLUE files from ../shared only for the loading checks.
"""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest
import torch
from tokenizers import processors
from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel, PreTrainedTokenizerFast

from babykd import REPO_ROOT
from babykd.data.tokenizer import train_tokenizer
from babykd.evaluation.finetune import (
    Hyperparameters,
    SequenceClassifier,
    classification_metrics,
    cosine_with_warmup,
    first_token_is_special,
    glue_aggregate,
    main,
)
from babykd.evaluation.glue_data import GLUE_TASKS, load_split
from babykd.evaluation.store import unstamped
from babykd.evaluation.suite_data import SuiteData
from conftest import shared_or_skip

POSITIVE = ["yes", "sure"]
NEGATIVE = ["no", "never"]
NOUNS = ["cat", "dog", "ball", "milk", "car", "tree"]


def tiny_tokenizer(bos: bool) -> PreTrainedTokenizerFast:
    """The project's BPE recipe, with (pair: ``<s> A B``) or without a prepended BOS; without, token 0 is the first word."""
    corpus = [f"{a} {n} is here . the {n} sat" for a in POSITIVE + NEGATIVE for n in NOUNS] * 3
    tok = train_tokenizer(corpus, vocab_size=400, min_frequency=1, show_progress=False)
    byte_level = processors.ByteLevel(trim_offsets=True)
    template = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    tok.backend_tokenizer.post_processor = processors.Sequence([byte_level, template]) if bos else byte_level
    return tok


def separable_rows(n: int, seed: int) -> list[dict]:
    """RTE-shaped rows whose label is told by the first word of sentence1 (positive -> 1)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = int(rng.integers(2))
        adjective = rng.choice(POSITIVE if label else NEGATIVE)
        rows.append({"sentence1": f"{adjective} {rng.choice(NOUNS)} is here .", "sentence2": f"the {rng.choice(NOUNS)} sat",
                     "label": label, "idx": i})
    return rows


def write_glue(root, tasks: dict[str, dict[str, list[dict]]]):
    folder = root / "full_eval" / "glue_filtered"
    folder.mkdir(parents=True)
    for task, splits in tasks.items():
        for split, rows in splits.items():
            (folder / f"{task}.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ft") / "tiny-llama"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=64)).save_pretrained(path)
    tiny_tokenizer(bos=False).save_pretrained(path)
    return path


def test_metrics_match_hand_computed_confusion_matrices():
    preds, labels = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])  # tp 2, fp 1, fn 1, tn 1
    metrics = classification_metrics(preds, labels, ("accuracy", "f1", "mcc"))
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert metrics["mcc"] == pytest.approx((2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))
    never_positive = classification_metrics(np.zeros(4, int), np.array([0, 1, 0, 1]), ("f1", "mcc"))
    assert never_positive == {"f1": 0.0, "mcc": 0.0}  # scikit-learn's zero-division conventions
    assert classification_metrics(np.array([2, 0, 1]), np.array([2, 1, 1]), ("accuracy",)) == {"accuracy": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="unknown metric"):
        classification_metrics(preds, labels, ("auc",))


def test_schedule_warms_up_then_decays_to_the_floor():
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = cosine_with_warmup(optimizer, warmup=6, total=100, min_factor=0.1)
    factors = []
    for _ in range(100):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert factors[0] == 0.0 and factors[3] == pytest.approx(0.5) and factors[6] == pytest.approx(1.0)
    assert factors[53] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 47 / 94)))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3) and min(factors[6:]) >= 0.1


def test_official_hyperparameters_per_task():
    hp = Hyperparameters()
    assert (hp.learning_rate, hp.seed, hp.max_length, hp.warmup_proportion, hp.weight_decay) == (3e-5, 42, 512, 0.06, 0.01)
    assert {name: hp.for_task(task) for name, task in GLUE_TASKS.items()} == {
        "boolq": (16, 10), "multirc": (16, 10), "rte": (32, 10), "wsc": (32, 30), "mrpc": (32, 10), "qqp": (32, 10), "mnli": (32, 10)}
    assert {n for n, t in GLUE_TASKS.items() if t.metric_for_valid == "f1"} == {"mrpc", "qqp"}
    assert GLUE_TASKS["mnli"].num_labels == 3 and GLUE_TASKS["mnli"].metrics == ("accuracy",)


def test_task_templates_follow_the_pipeline():
    wsc = GLUE_TASKS["wsc"].example({"text": "Mark lied. He was wrong.", "span1_text": "Mark", "span2_text": "He"})
    assert wsc == ('Does "He" refer to "Mark" in this passage?', "Mark lied. He was wrong.")
    multirc = GLUE_TASKS["multirc"].example({"question": "Who?", "answer": "Tom", "paragraph": "Tom ran."})
    assert multirc == ("Question: Who? Answer: Tom", "Tom ran.")


def test_first_token_pooling_after_bos_sees_nothing_of_the_input():
    """The official head reads token 0: after a prepended BOS every input gives the same logits."""
    torch.manual_seed(0)
    backbone = LlamaModel(LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=64))
    tok = tiny_tokenizer(bos=True)
    batch = tok([("good cat is here .", "the dog sat"), ("bad tree", "the car sat")], padding=True, return_tensors="pt")
    logits = {}
    for pooling in ("first", "last"):
        model = SequenceClassifier(backbone, 2, Hyperparameters(pooling=pooling)).eval()
        logits[pooling] = model(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(logits["first"][0], logits["first"][1])
    assert not torch.allclose(logits["last"][0], logits["last"][1])
    assert first_token_is_special(tok) and not first_token_is_special(tiny_tokenizer(bos=False))  # the run warns


def test_tiny_separable_task_is_learnt_and_predictions_are_official(checkpoint, tmp_path, capsys):
    suite = write_glue(tmp_path / "suite", {"rte": {"train": separable_rows(96, 0), "valid": separable_rows(40, 1)}})
    written = main([str(checkpoint), "rte", "--data", str(suite), "--lr", "3e-3", "--epochs", "2",
                    "--batch-size", "16", "--no-progress", "--output", str(tmp_path / "results.json")])
    entry = written["tasks"]["rte"]
    assert entry["score"] >= 0.9  # chance is about 0.5: the first word tells the label
    assert entry["best_epoch"] in (1, 2) and len(entry["epoch_metrics"]) == 2
    assert entry["score"] == max(m["accuracy"] for m in entry["epoch_metrics"])
    assert entry["n_train"] == 96 and entry["n_items"] == 40 and not entry["official_setup"]
    stamp, predictions = unstamped(json.loads((checkpoint / "eval" / "predictions" / "main" / "glue" / "rte.json").read_text()))
    assert stamp == {"weights_sha256": entry["weights_sha256"], "setup": entry["setup"]} and not stamp["setup"]["official"]
    assert [p["id"] for p in predictions["predictions"]] == [f"rte_{i}" for i in range(40)]
    labels = np.array([r["label"] for r in separable_rows(40, 1)])
    preds = np.array([p["pred"] for p in predictions["predictions"]])
    assert entry["score"] == pytest.approx(np.mean(preds == labels))
    assert entry["f1"] == pytest.approx(classification_metrics(preds, labels, ("f1",))["f1"])
    assert "rte accuracy" in capsys.readouterr().out


def test_missing_training_file_is_named_and_other_tasks_still_run(checkpoint, tmp_path):
    rows = separable_rows(16, 2)
    suite = write_glue(tmp_path / "suite", {"boolq": {"valid": [{"question": "q", "passage": "p", "label": 1}]},
                                            "rte": {"train": rows, "valid": rows}})
    output = tmp_path / "results.json"
    with pytest.raises(SystemExit, match=r"boolq: evaluation file full_eval/glue_filtered/boolq\.train\.jsonl not found"):
        main([str(checkpoint), "boolq", "rte", "--data", str(suite), "--epochs", "1", "--batch-size", "8",
              "--no-progress", "--output", str(output)])
    assert list(json.loads(output.read_text())["tasks"]) == ["rte"]


def test_glue_aggregate_needs_all_seven_tasks():
    tasks = {name: {"score": 0.5 + 0.01 * i} for i, name in enumerate(GLUE_TASKS)}
    assert glue_aggregate(tasks)["score"] == pytest.approx(0.53)
    del tasks["boolq"]
    assert glue_aggregate(tasks) is None


def test_shell_scripts_hand_their_module_to_eval_all():
    """eval-all.sh runs `python -m $BABYKD_EVAL_MODULE` (its real runs are tested with babykd.evaluate)."""
    for script, module in (("eval-finetune.sh", "babykd.evaluation.finetune"), ("eval-aoa.sh", "babykd.evaluation.aoa")):
        proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / script)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and "usage:" in proc.stderr and f"python -m {module}" in proc.stderr


def test_real_glue_files_load_and_boolq_multirc_training_sets_are_missing():
    suite = SuiteData(shared_or_skip("evaluation_data_2025.zip"))
    sizes = {name: len(load_split(suite, task, "valid")) for name, task in GLUE_TASKS.items()}
    assert sizes == {"boolq": 1635, "multirc": 2424, "rte": 139, "wsc": 52, "mrpc": 204, "qqp": 20215, "mnli": 4908}
    assert len(load_split(suite, GLUE_TASKS["mnli"], "train")) == 10_000
    for name in ("boolq", "multirc"):
        with pytest.raises(Exception, match=f"full_eval/glue_filtered/{name}.train.jsonl not found"):
            load_split(suite, GLUE_TASKS[name], "train")
