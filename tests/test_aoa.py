"""Age of acquisition: the sigmoid fits, the correlation against a reference written from the rules, and the CLI.

The reference surprisal is the official pipeline's per-item causal loop
(offsets, shifted log-probs, batch 1), written here from its rules; the
reference score groups the raw records itself and correlates with numpy.
Tiny random models and a tiny suite folder made here; the real AoA files
from ../shared only for the loading check.
"""

from __future__ import annotations

import json
import math
import sys
import warnings

import numpy as np
import pytest
import torch
from tokenizers import processors
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from babykd.data.tokenizer import train_tokenizer
from babykd.evaluation.aoa import (
    OFFICIAL_CONTEXTS,
    TRACK_REVISIONS,
    AoAData,
    load_aoa_data,
    main,
    revision_surprisals,
)
from babykd.evaluation.aoa_fit import CHANCE_SURPRISAL, child_aoa, curve_fitness, model_aoa, sigmoid
from babykd.evaluation.store import revisions_sha256, unstamped
from babykd.evaluation.suite_data import SuiteData
from conftest import shared_or_skip

curve_fit = pytest.importorskip("scipy.optimize", reason="the AoA fit needs scipy (requirements.txt)").curve_fit

WORDS = ["dog", "ball", "airplane", "milk", "x"]  # "x": one character, dropped as the pipeline does
CONTEXTS = {
    "dog": ["The cat chased the", "  Every child wants a  "],
    "ball": ["He threw the red", "Who cleaned?\nDavid kicked the"],
    "airplane": ["It is much cheaper to paint an", "We flew in an"],
    "milk": ["She drank her"],
    "x": ["the letter"],
}
CORPUS = [c + " " + w for w, cs in CONTEXTS.items() for c in cs] * 10
LONG_CONTEXT = " ".join(["the dog"] * 40)  # past a 64-position GPT-2
STEPS = [revision for revision in TRACK_REVISIONS["strict-small"]]
WORDS_SEEN = [float(int(s[5:-1]) * 1_000_000) for s in STEPS]


def tokenizer_variant(kind: str) -> PreTrainedTokenizerFast:
    """The project's BPE recipe: "plain" adds no special token, "bos" prepends <s>, "bos_eos" also appends </s>."""
    tok = train_tokenizer(CORPUS, vocab_size=400, min_frequency=1, show_progress=False)
    byte_level = processors.ByteLevel(trim_offsets=True)
    template = {"bos": "<s> $A", "bos_eos": "<s> $A </s>"}.get(kind)
    tok.backend_tokenizer.post_processor = byte_level if template is None else processors.Sequence([
        byte_level, processors.TemplateProcessing(single=template, special_tokens=[("<s>", 1), ("</s>", 2)])])
    return tok


def tiny_lm(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "llama":
        config = LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, max_position_embeddings=64)
        return LlamaForCausalLM(config).eval()
    return GPT2LMHeadModel(GPT2Config(vocab_size=400, n_embd=32, n_layer=2, n_head=2, n_positions=64)).eval()


def official_surprisal(model, tokenizer, context: str, word: str) -> float:
    """The pipeline's per-item causal surprisal (batch 1), NaN where the forward pass fails."""
    context, word = context.strip() + " ", word.strip()
    text = context + word
    encoded = tokenizer(text, return_offsets_mapping=True)
    start = len(text) - len(word)
    mask = torch.tensor([[1 if end > start else 0 for _, end in encoded["offset_mapping"]]])[:, 1:]
    ids = torch.tensor([encoded["input_ids"]])
    try:
        with torch.no_grad():
            logits = model(input_ids=ids[:, :-1], attention_mask=torch.tensor([encoded["attention_mask"]])[:, :-1]).logits
    except (IndexError, RuntimeError):
        return math.nan
    logprobs = torch.log_softmax(logits.double(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    return -float((logprobs * mask).sum())


def write_suite(root, contexts=CONTEXTS, cdi_rows=None):
    folder = root / "full_eval" / "aoa"
    folder.mkdir(parents=True)
    table = {w: [{"context": c, "word_in_context_stats": {"count": 1}} for c in cs] for w, cs in contexts.items()}
    (folder / "cdi_childes.json").write_text(json.dumps(table), encoding="utf-8")
    ages = list(range(16, 31))
    rows = cdi_rows or {w: [round(1 / (1 + math.exp(-0.5 * (a - 20 - i))), 3) for a in ages] for i, w in enumerate(contexts)}
    lines = [",word," + ",".join(map(str, ages))] + [f"{i},{w}," + ",".join(map(str, r)) for i, (w, r) in enumerate(rows.items())]
    (folder / "cdi_human.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_track_revisions_are_the_official_step_lists():
    small = [f"chck_{i}M" for i in range(1, 10)] + [f"chck_{i * 10}M" for i in range(1, 11)]
    assert list(TRACK_REVISIONS["strict-small"]) == small
    assert list(TRACK_REVISIONS["strict"]) == small + [f"chck_{i * 100}M" for i in range(2, 11)]


def test_model_fit_recovers_a_known_learning_curve():
    rng = np.random.default_rng(0)
    a, b, c, d = 12.0, 3.0, 7.2, -20.0  # negated surprisal rises from 20 to 8 nats around 10**7.2 words
    x = np.log10(np.array(WORDS_SEEN) + 1)
    surprisals, steps = [], []
    for words, xi in zip(WORDS_SEEN, x):
        for _ in range(5):  # five contexts per checkpoint: every one is a point of the fit
            surprisals.append(-(sigmoid(xi, a, b, c, d) + rng.normal(0, 0.05)))
            steps.append(words)
    threshold = CHANCE_SURPRISAL - 0.5 * (CHANCE_SURPRISAL - min(surprisals))
    expected = c - math.log(a / (-threshold - d) - 1) / b
    assert model_aoa(surprisals, steps) == pytest.approx(expected, abs=0.02)
    surprisals[3] = math.nan  # a failed context is dropped, not fatal
    assert model_aoa(surprisals, steps) == pytest.approx(expected, abs=0.02)


def test_child_fit_recovers_a_known_cdi_curve():
    ages = np.arange(16, 31)
    a, b, c, d = 0.9, 0.6, 23.0, 0.05
    proportions = sigmoid(ages.astype(float), a, b, c, d)
    proportions[[0, 5]] = np.nan
    expected = c - math.log(a / (0.5 - d) - 1) / b
    assert child_aoa(ages, proportions) == pytest.approx(expected, abs=1e-3)


def test_fits_without_a_crossing_give_no_aoa():
    ages = np.arange(16, 31)
    assert child_aoa(ages, np.full(15, 0.1)) is None  # never reaches 0.5
    assert child_aoa(ages, np.array([0.2, 0.6] + [np.nan] * 13)) is None  # fewer than 3 ages
    assert model_aoa([5.0, 5.0], [1e6, 2e6]) is None  # fewer than 3 points
    assert model_aoa([math.nan] * 19, WORDS_SEEN) is None
    assert model_aoa([10.0 + 0.5 * i for i in range(19)], WORDS_SEEN) is None  # surprisal rising: b or a <= 0
    with pytest.raises(ValueError, match="19 surprisals but 2 checkpoints"):
        model_aoa([1.0] * 19, [1.0, 2.0])


def reference_score(records, cdi_ages, cdi):
    """The pipeline's score from the raw records, written independently: group, fit, Pearson by formula."""
    points = {}
    for r in records:
        words = float(r["step"].removeprefix("chck_").removesuffix("M")) * 1e6
        points.setdefault(r["target_word"], []).append((words, r["surprisal"]))
    model_aoas, child_aoas = [], []
    for word, pts in points.items():
        if word not in cdi:
            continue
        keep = ~np.isnan(cdi[word])
        ages, props = cdi_ages[keep].astype(float), cdi[word][keep]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ca, cb, cc, cd = curve_fit(sigmoid, ages, props, p0=[1.0, 0.1, ages.mean(), 0.0],
                                           bounds=([0, 0, ages[0], -0.5], [2, 1, ages[-1], 0.5]), maxfev=1000)[0]
            except RuntimeError:
                continue
            if not (ca > 0 and cb > 0 and cd < 0.5 < ca + cd):
                continue
            child = cc - np.log(ca / (0.5 - cd) - 1) / cb
            if not ages[0] <= child <= ages[-1]:
                continue
            steps = np.array([p[0] for p in pts if not np.isnan(p[1])])
            s = np.array([p[1] for p in pts if not np.isnan(p[1])])
            chance = np.log2(300000)
            level = -(chance - 0.5 * (chance - s.min()))
            x, y = np.log10(steps + 1), -s
            try:
                a, b, c, d = curve_fit(sigmoid, x, y, p0=[y.max() - y.min(), 1.0, x.mean(), y.min()], maxfev=1000)[0]
            except RuntimeError:
                continue
        if not (a > 0 and b > 0 and d < level < a + d):
            continue
        log_aoa = c - np.log(a / (level - d) - 1) / b
        if steps[0] <= 10**log_aoa - 1 <= steps[-1]:
            model_aoas.append(log_aoa)
            child_aoas.append(child)
    return np.corrcoef(model_aoas, child_aoas)[0, 1], len(model_aoas)


def test_correlation_equals_an_independent_reference():
    rng = np.random.default_rng(1)
    ages = np.arange(16, 31)
    words = [f"w{i}" for i in range(30)]
    cdi, records = {}, []
    for i, word in enumerate(words):
        child_mid = rng.uniform(18, 28)
        cdi[word] = np.clip(sigmoid(ages.astype(float), 0.95, 0.7, child_mid, 0.02) + rng.normal(0, 0.02, 15), 0, 1)
        mid = 6.2 + (child_mid - 18) / 10 * 1.5 + rng.normal(0, 0.2)  # later for words children learn later
        for step, words_seen in zip(STEPS, WORDS_SEEN):
            for context_id in range(3):
                s = -(sigmoid(math.log10(words_seen + 1), 10.0, 4.0, mid, -19.0)) + rng.normal(0, 0.3)
                records.append({"step": step, "target_word": word, "context_id": context_id, "surprisal": s})
    cdi["unfittable"] = np.full(15, 0.05)
    records += [{"step": s, "target_word": "unfittable", "surprisal": 9.0} for s in STEPS]
    fit = curve_fitness(records, dict(zip(STEPS, WORDS_SEEN)), ages, cdi)
    expected_r, expected_n = reference_score(records, ages, cdi)
    assert fit.n_words == expected_n >= 20
    assert fit.correlation == pytest.approx(expected_r, abs=1e-6)
    assert fit.correlation > 0.5  # the synthetic model learns words in the children's order
    few = [r for r in records if r["target_word"] in ("w0", "w1")]
    assert curve_fitness(few, dict(zip(STEPS, WORDS_SEEN)), ages, cdi).correlation == 0.0  # < 3 words: the pipeline's 0


@pytest.mark.parametrize("arch,tok_kind", [("llama", "plain"), ("llama", "bos_eos"), ("gpt2", "bos")])
def test_batched_surprisals_equal_the_official_per_item_loop(arch, tok_kind, tmp_path):
    tokenizer, model = tokenizer_variant(tok_kind), tiny_lm(arch)
    contexts = {**CONTEXTS, "dog": CONTEXTS["dog"] + [LONG_CONTEXT]}
    data = load_aoa_data(SuiteData(write_suite(tmp_path, contexts)))
    assert data.words == ("dog", "ball", "airplane", "milk")
    ours = revision_surprisals(model, tokenizer, data, batch_tokens=64, progress=False)
    reference = [official_surprisal(model, tokenizer, c, w) for w, cs in zip(data.words, data.contexts) for c in cs]
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)
    assert math.isnan(ours[2]) == (arch == "gpt2")  # the long context: past GPT-2's 64 positions only


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run with three word-mark revisions (different random weights), each a HF model folder."""
    run = tmp_path_factory.mktemp("aoa") / "run"
    tokenizer = tokenizer_variant("bos")
    for seed, name in enumerate(["chck_1M", "chck_10M", "chck_100M"]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64))
        model.save_pretrained(run / "revisions" / name)
        tokenizer.save_pretrained(run / "revisions" / name)
    return run


def test_cli_writes_official_surprisals_and_results_and_rescores_them(run_dir, tmp_path, capsys):
    suite = write_suite(tmp_path / "suite")
    revisions = ["chck_100M", "chck_1M", "chck_10M"]
    written = main([str(run_dir), "--data", str(suite), "--revisions", *revisions, "--no-progress"])
    surprisal_file = run_dir / "eval" / "aoa_partial_surprisal.json"  # --revisions: kept out of the submission
    stamp, official = unstamped(json.loads(surprisal_file.read_text()))
    assert stamp["weights_sha256"] == revisions_sha256(run_dir, revisions) and not stamp["setup"]["official"]
    assert official["metadata"]["total_steps"] == 3
    records = official["results"]
    assert len(records) == 3 * 7 and [r["step"] for r in records[::7]] == ["chck_1M", "chck_10M", "chck_100M"]
    assert set(records[0]) == {"step", "word_count", "target_word", "context_id", "context", "surprisal"}
    assert records[7]["word_count"] == 10_000_000 and records[1]["context"] == CONTEXTS["dog"][1]
    entry = json.loads((run_dir / "eval" / "results.json").read_text())["tasks"]["aoa"]
    assert entry == written["tasks"]["aoa"] and entry["revisions"] == ["chck_1M", "chck_10M", "chck_100M"]
    assert not entry["official_setup"] and not (run_dir / "eval" / "predictions" / "main" / "aoa.json").exists()
    data = load_aoa_data(SuiteData(suite))
    fit = curve_fitness(records, {"chck_1M": 1e6, "chck_10M": 1e7, "chck_100M": 1e8}, data.cdi_ages, data.cdi)
    assert entry["score"] == fit.correlation and entry["n_words"] == fit.n_words
    found = main([str(run_dir), "--data", str(suite), "--revisions", "found", "--no-progress", "--output", str(tmp_path / "f.json")])
    assert found["tasks"]["aoa"]["score"] == entry["score"] and found["tasks"]["aoa"]["revisions"] == entry["revisions"]
    rescored = main([str(run_dir), "--data", str(suite), "--from-surprisals", str(surprisal_file),
                     "--output", str(tmp_path / "r.json")])
    assert {k: v for k, v in rescored["tasks"]["aoa"].items() if k != "surprisal_file"} == \
        {k: v for k, v in entry.items() if k != "surprisal_file"}
    assert "aoa r = " in capsys.readouterr().out


def test_a_full_track_run_is_the_submission_aoa_part(run_dir, tmp_path):
    """All 19 strict-small revisions (links to three weight sets) -> predictions/main/aoa.json, collated."""
    run = tmp_path / "run"
    (run / "revisions").mkdir(parents=True)
    for k, name in enumerate(TRACK_REVISIONS["strict-small"]):
        (run / "revisions" / name).symlink_to(run_dir / "revisions" / ["chck_1M", "chck_10M", "chck_100M"][k % 3])
    written = main([str(run), "--data", str(write_suite(tmp_path / "suite")), "--no-progress"])
    assert written["tasks"]["aoa"]["official_setup"] and len(written["tasks"]["aoa"]["revisions"]) == 19
    stamp, part = unstamped(json.loads((run / "eval" / "predictions" / "main" / "aoa.json").read_text()))
    assert stamp["weights_sha256"] == revisions_sha256(run, TRACK_REVISIONS["strict-small"])  # the revisions' weights
    assert len(part["results"]) == 19 * 7 and part["metadata"]["completed_steps"] == 19
    submission = json.loads(next((run / "eval").glob("all_full_preds_and_fast_scores_*.json")).read_text())
    assert submission["aoa"] == part


def test_without_scipy_the_surprisals_are_kept_and_the_error_says_how_to_score_them(run_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # as on the GPU machine
    with pytest.raises(SystemExit, match=r"scipy .*--from-surprisals .*aoa_partial_surprisal\.json"):
        main([str(run_dir), "--data", str(write_suite(tmp_path / "suite")), "--revisions", "chck_1M", "chck_10M", "--no-progress"])
    assert len(unstamped(json.loads((run_dir / "eval" / "aoa_partial_surprisal.json").read_text()))[1]["results"]) == 2 * 7


def test_missing_revisions_and_data_are_named(run_dir, tmp_path):
    suite = write_suite(tmp_path / "suite")
    with pytest.raises(SystemExit, match=r"missing revision\(s\) chck_2M, chck_3M.*present: chck_100M, chck_10M, chck_1M"):
        main([str(run_dir), "--data", str(suite), "--no-progress"])
    (suite / "full_eval" / "aoa" / "cdi_human.csv").unlink()
    with pytest.raises(SystemExit, match="full_eval/aoa/cdi_human.csv not found"):
        main([str(run_dir), "--data", str(suite), "--revisions", "chck_1M"])


RECORD = {"step": "chck_1M", "word_count": 1_000_000, "target_word": "dog", "context_id": 0, "context": "a",
          "surprisal": 4.0}


@pytest.mark.parametrize("content, problem", [
    ({"results": [{**RECORD, "step": "../../x"}]}, "record 0: step '../../x' is not a checkpoint revision name"),
    ({"results": [RECORD, {**RECORD, "step": "main"}]}, "record 1: step 'main' is not a checkpoint revision name"),
    ({"results": [{**RECORD, "step": 5}]}, "record 0: step 5 is not a checkpoint revision name"),
    ({"results": [{**RECORD, "surprisal": "4"}]}, "record 0: surprisal must be a number, got '4'"),
    ({"results": ["chck_1M"]}, "record 0: not a surprisal record"),
    ({"results": [{"step": "chck_1M"}]}, "record 0: not a surprisal record"),
    ({"results": []}, "not a surprisal file"),
    ("{", "not a JSON file"),
])
def test_a_crafted_surprisal_file_is_one_error_line_naming_the_file_and_record(tmp_path, content, problem):
    """--from-surprisals with a step that is no revision name ended in a ValueError traceback from the fit."""
    path = tmp_path / "surprisal.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path), "--data", str(write_suite(tmp_path / "suite")), "--from-surprisals", str(path)])
    message = str(stopped.value)
    assert message.startswith(f"error: {path}: ") and problem in message and "\n" not in message, message


def test_real_aoa_files_load_with_the_documented_counts():
    data = load_aoa_data(SuiteData(shared_or_skip("evaluation_data_2025.zip")))
    assert isinstance(data, AoAData)
    # The official data gives the records per revision the submission check asks for (AOA_SIZE).
    assert len(data.words) == 504 and data.n_contexts == OFFICIAL_CONTEXTS
    assert list(data.cdi_ages) == list(range(16, 31)) and "airplane" in data.cdi
