"""Protocol 2025 against batch-1 float64 references written from the official pipeline's rules.

Each reference below restates one rule of ``babylm/evaluation-pipeline-2025``
in the plainest form (one sentence per forward pass, float64 log-softmax, no
shared code with `babykd.evaluation.ranking` / `.reading`), on a tiny random
Llama and the project's tokenizer recipe. Data are written by the tests.
"""

from __future__ import annotations

import csv
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, processors
from transformers import LlamaConfig, LlamaForCausalLM

from babykd.data.cache import encode_documents
from babykd.data.tokenizer import DOCUMENT_START_ID, train_tokenizer, wrap
from babykd.evaluate import main as evaluate_main
from babykd.evaluation import ranking, reading
from babykd.evaluation.prefix_scorer import supports_packing
from babykd.evaluation.stats import ols_r2, spearman
from babykd.evaluation.suite import evaluate_suite, load_candidates, make_source
from babykd.evaluation.suite_data import MissingEvalData

CORPUS = [
    "The cat sat on the mat.", "The dogs were barking at the mailman.", "Who did Mary see yesterday?",
    "Box 0 contains the apple and the book, Box 1 contains nothing. Box 0 contains the apple.",
    "Create a noun out of the following adjective: happy. happiness", "They walk all the time. In fact, they walked",
    "Ali is in the bakery. Ali sees the candle inside.", "David: Should you quit?\nSarah: No, I shouldn't.",
] * 20

BLIMP = {
    "sub_a": [
        {"sentence_good": "The cat sat on the mat.", "sentence_bad": "The cat sat mat the on.", "field": "syntax", "UID": "sub_a"},
        {"sentence_good": "Same sentence twice.", "sentence_bad": "Same sentence twice.", "field": "syntax", "UID": "sub_a"},
        {"sentence_good": "Who did Mary see?", "sentence_bad": "Who Mary did see?", "field": "syntax", "UID": "sub_a"},
    ],
}
SUPPLEMENT = {"turns": [{"sentence_good": "Who cleaned?\nDavid cleaned.", "sentence_bad": "Who cleaned?\nDavid cleaning."}]}
EWOK = {
    "spatial": [
        {"Domain": "spatial", "Context1": "Ali is in the bakery.", "Context2": "x", "Target1": "Ali is inside.", "Target2": "Ali is outside."},
        {"Domain": "spatial", "Context1": "The mat is red.", "Context2": "x", "Target1": "It is red.", "Target2": "It is blue."},
    ],
}
ENTITY = {
    "regular": [
        {"numops": 0, "input_prefix": "Box 0 contains the apple, Box 1 contains nothing. Box 0 contains ",
         "options": ["the apple.", "nothing.", "the book."]},
        {"numops": 1, "input_prefix": "Box 0 contains the book. Box 1 contains ", "options": ["nothing.", "the book."]},
    ],
    "ambiref": [
        {"numops": 0, "input_prefix": "Box 1 contains the cat. Box 1 contains ", "options": ["the cat.", "the mat."]},
    ],
}
WUG_ADJ = [
    {"sentences": f"Create a noun out of the following adjective: {w}. {w}ity\tCreate a noun out of the following adjective: {w}. {w}ness", "ratio": r}
    for w, r in [("happy", 0.2), ("blick", 0.7), ("sad", 0.5), ("tove", 0.9), ("mimsy", 0.1)]
]
WUG_PAST = [
    {"sentences": f"They {w} all the time. In fact, they {w}ed\tThey {w} all the time. In fact, they {w}t\tThey {w} all the time. In fact, they {w}o", "ratio": r}
    for w, r in [("walk", 0.9), ("blick", 0.4), ("spling", 0.3), ("grib", 0.6)]
]


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def write_reading(path: Path, n: int = 40) -> None:
    """A reading CSV in the official columns; numbers random but fixed, some cells missing."""
    rng = np.random.default_rng(0)
    words = "the cat sat on mat dogs were barking at mailman".split()
    columns = ["", "item", "word", "context_length", "Subtlex_log10", "length", "RTfirstfix", "RTfirstpass",
               "RTgopast", "RTrightbound", "self_paced_reading_time", "prev_word", "prev_item", "prev_length"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for i in range(n):
            k = 1 + i % 6
            context = " ".join(words[:k])
            word = words[(k + i) % len(words)] + ("s" if i % 5 == 0 else "")  # some multi-token words
            first = i % 7 == 0
            writer.writerow([
                i, "" if i == 3 else context, word, k, "" if i == 5 else rng.normal(10, 2), len(word),
                *rng.normal(200, 40, 4), rng.normal(300, 50),
                "" if first else words[k - 1], "" if first else " ".join(words[: k - 1]) or "None", len(words[k - 1]),
            ])


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS, vocab_size=400, min_frequency=1, show_progress=False)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=256)
    return LlamaForCausalLM(config).eval()


def write_eval_folders(root: Path) -> tuple[Path, Path]:
    """(2024-layout folder with full BLiMP/supplement/EWoK, unpacked 2025 suite folder) of the items above."""
    for folder, subtasks in [("blimp_filtered", BLIMP), ("supplement_filtered", SUPPLEMENT), ("ewok_filtered", EWOK)]:
        for name, records in subtasks.items():
            write_jsonl(root / "legacy" / folder / f"{name}.jsonl", records)
    suite = root / "unpacked"
    for name, records in ENTITY.items():
        write_jsonl(suite / "full_eval" / "entity_tracking" / f"{name}.jsonl", records)
    write_jsonl(suite / "fast_eval" / "entity_tracking_fast" / "regular.jsonl", ENTITY["regular"])
    write_jsonl(suite / "fast_eval" / "blimp_fast" / "sub_a.jsonl", BLIMP["sub_a"][:2])
    for split in ("full_eval", "fast_eval"):
        write_jsonl(suite / split / "wug_adj_nominalization" / "wug_adj_nominalization.jsonl", WUG_ADJ)
        write_jsonl(suite / split / "wug_past_tense" / "wug_past_tense.jsonl", WUG_PAST)
        write_reading(suite / split / "reading" / "reading_data.csv")
    return root / "legacy", suite


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """The 2024-layout folder (full BLiMP/supplement/EWoK) and a 2025 suite zip with a top folder."""
    root = tmp_path_factory.mktemp("eval")
    legacy, suite = write_eval_folders(root)
    archive = root / "suite.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(suite.rglob("*")):
            if path.is_file():
                zf.write(path, "evaluation_data_2025/" + path.relative_to(suite).as_posix())
    return {"legacy": legacy, "zip": archive}


# -- references: one sentence at a time, float64 ------------------------------------------------
def logprobs64(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)


def reference_sentence_score(model, tokenizer, sentence: str, completion: str) -> float:
    """read_files/dataset/compute_results for one causal sentence, literally."""
    enc = tokenizer(sentence, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    start_char = len(sentence) - len(completion) + offsets[0][0]
    mask = [1 if end > start_char else 0 for _, end in offsets]
    lp = logprobs64(model, ids)
    return sum(float(lp[i - 1, ids[i]]) for i in range(1, len(ids)) if mask[i])


def reference_p2(model, tokenizer, sentence: str, word: str) -> float:
    """reading/evaluation_functions.get_p2, literally (product of softmax probabilities)."""
    def p_next(context: str, token_text: str | None, token_id: int | None = None) -> float:
        ids = tokenizer(context)["input_ids"]
        target = token_id if token_id is not None else tokenizer(token_text, add_special_tokens=False)["input_ids"][0]
        return float(torch.exp(logprobs64(model, ids)[-1, target]))

    target = tokenizer(word, add_special_tokens=False)["input_ids"]
    probs = [p_next(sentence, None, target[0])]
    sentence = sentence + tokenizer.decode(target[0])
    for token in target[1:]:
        piece = tokenizer.decode(token)
        probs.append(p_next(sentence, piece))
        sentence += piece
    return float(np.prod(probs))


def reference_r2(y: np.ndarray, columns: list[np.ndarray]) -> float:
    """OLS through the pseudo-inverse, as statsmodels fits it (R^2 by its definition).

    Not the normal equations: on this test's 40 reading rows the self-paced model (five predictors,
    their ten interactions, the surprisal) can be rank-deficient, and ``solve(X^T X)`` then either
    fails or returns noise depending on the last bits of the surprisals (it failed once the scorer
    computed them from shared prefixes, values unchanged to 1e-6); the pseudo-inverse gives the
    least-squares fit, and its R^2, either way.
    """
    x = np.column_stack([np.ones(len(y))] + columns)
    beta = np.linalg.pinv(x) @ y
    return 1 - np.sum((y - x @ beta) ** 2) / np.sum((y - y.mean()) ** 2)


# -- tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["blimp_filtered", "blimp_supplement", "ewok_filtered", "entity_tracking",
                                  "wug_adj_nominalization", "wug_past_tense"])
@pytest.mark.parametrize("packed", [True, False], ids=["shared-prefixes", "flat"])
def test_ranking_tasks_equal_the_batch1_reference(task, packed, tokenizer, model, data, monkeypatch):
    source = make_source(False, data["legacy"], data["zip"])
    items, _ = load_candidates(task, source)
    assert supports_packing(model)
    if not packed:  # the path of a model whose attention takes no 4D mask (flash attention)
        monkeypatch.setattr(ranking, "supports_packing", lambda model: False)
    ours = ranking.score_candidates(model, tokenizer, items, progress=False, batch_tokens=64)
    for item, scores in zip(items, ours):
        ref = [reference_sentence_score(model, tokenizer, s, c) for s, c in zip(item.sentences, item.completions)]
        np.testing.assert_allclose(scores, ref, atol=1e-6, rtol=1e-7)  # float32 sums of ~40 nats
        assert int(np.argmax(scores)) == int(np.argmax(ref))  # same decision, ties to candidate 0
    entries, preds, _ = evaluate_suite(model, tokenizer, [task], source, progress=False)
    entry = entries[task]
    if task.startswith("wug_"):
        ref_pref = []
        for item in items:
            ref = np.array([reference_sentence_score(model, tokenizer, s, c) for s, c in zip(item.sentences, item.completions)])
            ref_pref.append(float(torch.softmax(torch.tensor(ref, dtype=torch.float32), dim=0)[0]))  # as the pipeline
        scipy_stats = pytest.importorskip("scipy.stats")
        expected = scipy_stats.spearmanr(ref_pref, [i.extra["ratio"] for i in items])[0]
        assert entry["score"] == pytest.approx(expected, abs=1e-9)
        # float32 log-softmax (ours and the official) vs float64: ~1e-5 on 60-nat sentences
        assert [p["prob"] for p in preds[task][items[0].uid]["predictions"]] == pytest.approx(ref_pref, abs=2e-5)
        return
    by_uid: dict[str, list[bool]] = {}
    for item in items:
        ref = [reference_sentence_score(model, tokenizer, s, c) for s, c in zip(item.sentences, item.completions)]
        by_uid.setdefault(item.uid, []).append(ref.index(max(ref)) == 0)
    accs = {uid: sum(v) / len(v) for uid, v in by_uid.items()}
    if task == "entity_tracking":  # per split over numops, then over splits (run.py)
        splits = [[a for u, a in accs.items() if u.startswith(s)] for s in ("regular", "ambiref", "move_contents")]
        expected = np.mean([np.mean(s) for s in splits if s])
    else:
        expected = np.mean(list(accs.values()))
    assert entry["score"] == pytest.approx(expected, abs=1e-12)
    first = preds[task][items[0].uid]["predictions"][0]
    assert first["id"] == f"{items[0].uid}_0" and first["pred"] in items[0].completions


def without_start_token(tokenizer):
    """The tokenizer as saved before the start-token post-processor."""
    core = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    core.post_processor = processors.ByteLevel(trim_offsets=True)
    return wrap(core)


def test_training_tokens_are_unchanged_by_the_start_token(tokenizer):
    """The token cache encodes without special tokens: the same ids with and without the post-processor."""
    old = without_start_token(tokenizer)
    for boundaries in ("eos", "none"):
        new_ids = encode_documents(CORPUS[:12], tokenizer, boundaries)
        assert np.array_equal(new_ids, encode_documents(CORPUS[:12], old, boundaries))
        assert DOCUMENT_START_ID not in set(new_ids.tolist()) - ({2} if boundaries == "eos" else set())
    assert tokenizer("The cat.")["input_ids"] == [DOCUMENT_START_ID] + old("The cat.")["input_ids"]


def test_first_word_is_scored_only_with_a_bos(tokenizer, model):
    """The 2025 shift: without a start token the first token of a BLiMP sentence is never scored."""
    no_bos = without_start_token(tokenizer)
    item = ranking.Candidates("x", ("The cat sat.", "The mat sat."), ("The cat sat.", "The mat sat."))
    with_bos = ranking.candidate_requests(tokenizer, [item])
    without = ranking.candidate_requests(no_bos, [item])
    assert with_bos[0].tokens[0] == DOCUMENT_START_ID
    assert with_bos[0].n_scored == len(with_bos[0].tokens) - 1  # every word token
    assert without[0].n_scored == len(without[0].tokens) - 1 == with_bos[0].n_scored - 1


def test_reading_equals_the_batch1_reference(tokenizer, model, data):
    source = make_source(False, data["legacy"], data["zip"])
    where, raw = source.reading_csv()
    rows = reading.parse_reading_csv(raw, where)
    assert rows.items[3] == "None"  # the pipeline's fillna("None")
    pred, prev = reading.score_reading(model, tokenizer, rows, progress=False, batch_tokens=64)
    ref = np.array([-math.log(reference_p2(model, tokenizer, c, w)) for c, w in zip(rows.items, rows.words)])
    np.testing.assert_allclose(pred, ref, atol=1e-6, rtol=1e-9)
    for i, (item, word) in enumerate(zip(rows.prev_items, rows.prev_words)):
        if item is None:
            assert math.isnan(prev[i])
        else:
            assert prev[i] == pytest.approx(-math.log(reference_p2(model, tokenizer, item, word)), abs=1e-6)
    scores = reading.reading_scores(rows, pred, prev)
    cols = {**rows.columns, "pred": pred, "prev_pred": prev}

    def gain(dv: str, names: list[str]) -> float:
        def r2(variables: list[str]) -> float:
            keep = ~np.isnan(cols[dv])
            for v in variables:
                keep &= ~np.isnan(cols[v])
            xs = [cols[v][keep] for v in names]
            xs += [cols[a][keep] * cols[b][keep] for j, a in enumerate(names) for b in names[j + 1:]]
            if "pred" in variables:
                xs.append(cols["pred"][keep])
            return reference_r2(cols[dv][keep], xs)
        base = r2(names)
        return (r2(names + ["pred"]) - base) / (1 - base)

    base = ["Subtlex_log10", "length", "context_length"]
    eye = np.mean([gain(m, base) for m in ("RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound")])
    assert scores["eye_tracking"] == pytest.approx(eye, abs=1e-9)
    spr = gain("self_paced_reading_time", base + ["prev_length", "prev_pred"])
    assert scores["self_paced_reading"] == pytest.approx(spr, abs=1e-9)


def test_statistics_match_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 5, 50).astype(float), rng.normal(size=50)  # ties in x
    assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y)[0], abs=1e-12)
    cols = [rng.normal(size=50), rng.normal(size=50)]
    yy = 2 * cols[0] + rng.normal(size=50)
    assert ols_r2(yy, cols) == pytest.approx(reference_r2(yy, cols), abs=1e-12)


def test_cli_all_scores_what_exists_names_what_is_missing_and_writes_the_submission(tmp_path, tokenizer, model, data, capsys):
    model_dir = tmp_path / "m"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    written = evaluate_main([str(model_dir), "--tasks", "all", "--data-dir", str(data["legacy"]),
                             "--suite-data", str(data["zip"]), "--no-progress", "--device", "cpu"])
    assert set(written["tasks"]) == {"blimp_filtered", "blimp_supplement", "ewok_filtered", "entity_tracking",
                                     "wug_adj_nominalization", "wug_past_tense", "reading"}
    assert "full_eval/comps" in written["missing"]["comps"]
    err = capsys.readouterr().err
    assert "comps" in err and "full_eval/comps" in err
    sub = json.loads((model_dir / "eval" / "all_full_preds_and_fast_scores_causal.json").read_text())
    assert {"blimp", "blimp_supplement", "ewok", "entity_tracking", "wug_adj", "wug_past", "reading"} <= set(sub)
    assert len(sub["blimp"]["sub_a"]["predictions"]) == 3 and sub["reading"]["reading"]["predictions"][0]["id"] == 0
    # the fast evaluation of a revision feeds the submission's fast_eval_results
    rev = model_dir / "revisions" / "chck_1M"
    model.save_pretrained(rev)
    tokenizer.save_pretrained(rev)
    fast = evaluate_main([str(model_dir), "--fast", "--revision", "chck_1M", "--tasks", "blimp_filtered", "entity_tracking",
                          "--suite-data", str(data["zip"]), "--no-progress", "--device", "cpu"])
    assert set(fast["tasks"]) == {"blimp_filtered_fast", "entity_tracking_fast"}
    assert (model_dir / "eval" / "revisions" / "chck_1M" / "results.json").is_file()
    sub = json.loads((model_dir / "eval" / "all_full_preds_and_fast_scores_causal.json").read_text())
    assert sub["fast_eval_results"]["blimp"] == [{"sub_a": fast["tasks"]["blimp_filtered_fast"]["subtasks"]["sub_a"]["acc"]}]


def test_a_single_missing_task_is_an_error_naming_the_file(tmp_path, data):
    source = make_source(False, data["legacy"], data["zip"])
    with pytest.raises(MissingEvalData, match=r"full_eval/comps.*suite\.zip"):
        load_candidates("comps", source)
