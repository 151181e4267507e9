"""The built-in evaluator against an unbatched reference written from the harness's rules, and minicons.

Tiny random models (2 layers, d=64) with a real byte-level BPE tokenizer trained
here; synthetic tasks written to tmp_path, plus a few real items from
../shared when it is there.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from babykd import REPO_ROOT
from babykd.data.tokenizer import train_tokenizer
from babykd.evaluation.scorer import (
    encode_requests,
    evaluate_model,
    item_pairs,
    loglikelihoods,
    mean_stderr,
    pooled_sample_stderr,
    score_items,
    summarise_task,
)
from babykd.evaluation.tasks import Item, TaskDataError, default_data_dir, load_task, load_tasks

SHARED_DATA = Path(os.environ.get("BABYKD_SHARED", REPO_ROOT.parent / "shared")) / "evaluation_data"

CORPUS = [
    "The cat sat on the mat.", "The dogs were barking at the mailman.", "Who did Mary see yesterday?",
    "Ali is in the bakery. Ali sees the candle inside.", "David: Should you quit?\nSarah: No, I shouldn't.",
    "Every child has read a book about those horses.", "The glass is on the table, not under it.",
    "A big red ball rolled down the hill quickly.", "These men were not known to have left.",
] * 20

PAIRS_A = [
    {"sentence_good": "The cat sat on the mat.", "sentence_bad": "The cat sat mat the on."},
    {"sentence_good": "Who cleaned?\nDavid cleaned.", "sentence_bad": "Who cleaned?\nDavid cleaning."},
    {"sentence_good": "Same sentence twice.", "sentence_bad": "Same sentence twice."},  # an exact tie
]
PAIRS_B = [
    {"sentence_good": "These men were not known to have left.", "sentence_bad": "These men was not known."},
    {"sentence_good": "A big red ball rolled.", "sentence_bad": "A ball big red rolled."},
]
EWOK = [
    {"Context1": "Ali is in the bakery. ", "Target1": "Ali is inside.", "Target2": "Ali is outside."},
    {"Context1": "The glass is on the table.", "Target1": "It is above the floor.", "Target2": "It is below."},
    {"Context1": "The glass is on the table.", "Target1": "It is below.", "Target2": "It is above the floor."},
]


def tiny_tokenizer(bos: bool = True) -> PreTrainedTokenizerFast:
    """The project's tokenizer recipe on a tiny corpus; without `bos`, only EOS and pad are named."""
    tok = train_tokenizer(CORPUS, vocab_size=400, min_frequency=1, show_progress=False)
    if bos:
        return tok
    return PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token="</s>", pad_token="<pad>")


def tiny_model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "llama":
        config = LlamaConfig(
            vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=128,
        )
        return LlamaForCausalLM(config).eval()
    config = GPT2Config(vocab_size=400, n_embd=64, n_layer=2, n_head=4, n_positions=128, bos_token_id=1, eos_token_id=2)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def llama() -> torch.nn.Module:
    return tiny_model("llama")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer, llama) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny-llama"
    llama.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_task(folder: Path, subtasks: dict[str, list[dict]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in subtasks.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return folder


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """A data dir in the official layout, with synthetic items."""
    write_task(tmp_path / "data" / "blimp_filtered", {"sub_a": PAIRS_A, "sub_b": PAIRS_B})
    write_task(tmp_path / "data" / "supplement_filtered", {"turns": PAIRS_A[1:]})
    write_task(tmp_path / "data" / "ewok_filtered", {"spatial": EWOK})
    return tmp_path / "data"


def reference_loglikelihood(model, tok, context: str, continuation: str) -> float:
    """Unbatched, straight from the harness's rules: one sequence, full log_softmax, no padding."""
    if context == "":
        ctx = [tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]
        cont = tok.encode(continuation, add_special_tokens=False)
    else:
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation, context = context[-n_spaces:] + continuation, context[:-n_spaces]
        whole = tok.encode(context + continuation, add_special_tokens=False)
        ctx = tok.encode(context, add_special_tokens=False)
        cont = whole[len(ctx):]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
    per_token = logprobs[torch.arange(ids.shape[1] - 1), ids[0, 1:]]
    return float(per_token[-len(cont):].sum())


def all_items(data_dir: Path) -> list[Item]:
    items = [i for t in load_tasks(["blimp_filtered", "ewok_filtered"], data_dir) for s in t.subtasks for i in s.items]
    if SHARED_DATA.is_dir():  # a few real items of each set, when ../shared is there
        real = load_tasks(["blimp_filtered", "blimp_supplement", "ewok_filtered"], SHARED_DATA, 1)
        items += [i for t in real for s in t.subtasks[:6] for i in s.items]
    return items


def test_requests_follow_the_harness_encoding(tokenizer):
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    (blimp_good, blimp_bad, ewok_good, _) = encode_requests(
        tokenizer,
        item_pairs([Item("", "Who cleaned?\nDavid cleaned.", "x"), Item("Ali is in the bakery.  ", "Ali is in.", "y")]),
        max_length=128,
    )
    assert blimp_good.tokens == (tokenizer.bos_token_id, *enc(" Who cleaned?\nDavid cleaned."))
    assert blimp_good.n_scored == len(enc(" Who cleaned?\nDavid cleaned."))
    assert blimp_bad.tokens == (tokenizer.bos_token_id, *enc(" x"))
    # Trailing spaces of the context move to the continuation, which is cut from the whole encoding.
    ctx, whole = enc("Ali is in the bakery."), enc("Ali is in the bakery.   Ali is in.")
    assert ewok_good.tokens == tuple(ctx + whole[len(ctx):])
    assert ewok_good.n_scored == len(whole) - len(ctx)
    assert tokenizer.bos_token_id not in ewok_good.tokens
    # No BOS: the EOS id is the prefix of an empty context.
    (no_bos, _) = encode_requests(tiny_tokenizer(bos=False), item_pairs([Item("", "a b", "c")]), 128)
    assert no_bos.tokens[0] == tokenizer.eos_token_id
    # Left truncation to max_length + 1 tokens, as the harness does.
    ctx, whole = enc("The cat sat on the mat."), enc("The cat sat on the mat. The dogs.")
    limit = len(whole) - len(ctx) + 1
    (short, _) = encode_requests(tokenizer, item_pairs([Item("The cat sat on the mat.", "The dogs.", "z")]), limit)
    assert short.tokens == tuple(whole[-(limit + 1):]) and short.n_scored == limit - 1


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_batched_loglikelihoods_equal_the_unbatched_reference(kind, tokenizer, data_dir):
    model = tiny_model(kind)
    items = all_items(data_dir)
    choices = [(item.context, " " + choice) for item in items for choice in (item.correct, item.wrong)]
    expected = np.array([reference_loglikelihood(model, tokenizer, c, k) for c, k in choices])
    for batch_tokens in (24, None):  # many small padded batches, and the default budget
        got = score_items(model, tokenizer, items, batch_tokens=batch_tokens, progress=False).ravel()
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_padding_never_changes_real_logprobs(tokenizer, llama, data_dir):
    items = all_items(data_dir)
    requests = encode_requests(tokenizer, item_pairs(items), 128)
    one_per_batch = loglikelihoods(llama, requests, batch_tokens=1, progress=False)
    packed = loglikelihoods(llama, requests, batch_tokens=4096, progress=False)
    np.testing.assert_allclose(packed, one_per_batch, atol=1e-5, rtol=1e-6)


def test_minicons_agrees_on_the_same_token_sequences(tokenizer, llama, data_dir):
    from minicons.scorer import IncrementalLMScorer
    from transformers import BatchEncoding

    requests = encode_requests(tokenizer, item_pairs(all_items(data_dir)), 128)
    ours = loglikelihoods(llama, requests, progress=False)
    lm = IncrementalLMScorer(llama, "cpu", tokenizer=tokenizer)
    width = max(len(r.tokens) for r in requests)
    ids = torch.zeros(len(requests), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, request in enumerate(requests):
        ids[row, : len(request.tokens)] = torch.tensor(request.tokens)
        mask[row, : len(request.tokens)] = 1
    encoded = BatchEncoding({"input_ids": ids, "attention_mask": mask})
    per_token = lm.compute_stats(lm.prepare_text(encoded), return_tensors=True)
    theirs = np.array([float(scores[-r.n_scored:].sum()) for scores, r in zip(per_token, requests)])
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_metrics_follow_the_harness(data_dir):
    values = np.array([1.0, 0.0, 1.0, 1.0])
    assert mean_stderr(values) == pytest.approx(np.std(values, ddof=1) / 2)
    assert mean_stderr(np.array([1.0])) is None
    stderrs, sizes = [0.1, 0.2], [10, 30]
    pooled = math.sqrt((9 * 0.01 * 10 + 29 * 0.04 * 30) / 38 / 40)
    assert pooled_sample_stderr(stderrs, sizes) == pytest.approx(pooled)
    # Three items in sub_a (the last a tie: counted correct), two in sub_b.
    task = load_task("blimp_filtered", data_dir)
    lls = np.array([[-1.0, -2.0], [-3.0, -1.0], [-5.0, -5.0], [-1.0, -0.5], [-2.0, -4.0]])
    summary = summarise_task(task, lls)
    sub_a, sub_b = summary["subtasks"]["sub_a"], summary["subtasks"]["sub_b"]
    assert (sub_a["acc"], sub_a["n"], sub_a["ties"]) == (pytest.approx(2 / 3), 3, 1)
    assert (sub_b["acc"], sub_b["ties"]) == (0.5, 0)
    assert summary["score"] == pytest.approx((2 / 3 + 0.5) / 2)  # unweighted mean over subtasks
    assert summary["stderr"] == pytest.approx(pooled_sample_stderr([sub_a["stderr"], sub_b["stderr"]], [3, 2]))
    assert summary["ties"] == 1 and summary["n_items"] == 5


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "invalid JSON"),
        ('{"sentence_good": "a"}', "missing field 'sentence_bad'"),
        ('{"sentence_good": "a", "sentence_bad": 3}', "'sentence_bad' must be a string"),
        ('["a", "b"]', "expected a JSON object"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    folder = tmp_path / "mine"
    folder.mkdir()
    good = json.dumps(PAIRS_A[0])
    (folder / "sub.jsonl").write_text(f"{good}\n{good}\n{line}\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=f"sub.jsonl:3: .*{message}"):
        load_task(folder)


def test_task_resolution_errors(tmp_path, data_dir):
    with pytest.raises(TaskDataError, match="unknown task 'blimp'"):
        load_task("blimp", data_dir)
    with pytest.raises(TaskDataError, match="no \\*.jsonl files"):
        load_task(tmp_path)
    with pytest.raises(TaskDataError, match="supplement_filtered.*not found"):
        load_task("blimp_supplement", tmp_path)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "x.jsonl").write_text('{"text": "hello"}\n', encoding="utf-8")
    with pytest.raises(TaskDataError, match="x.jsonl:1: no item fields"):
        load_task(tmp_path / "odd")


def test_subsample_is_evenly_spaced_and_checksum_covers_the_files(data_dir):
    full = load_task("blimp_filtered", data_dir)
    sub = load_task("blimp_filtered", data_dir, max_items_per_subtask=2)
    assert [len(s.items) for s in sub.subtasks] == [2, 2]
    assert sub.subtasks[0].items == (full.subtasks[0].items[0], full.subtasks[0].items[1])
    assert sub.sha256 == full.sha256 and sub.max_items_per_subtask == 2
    (data_dir / "blimp_filtered" / "sub_b.jsonl").write_text(json.dumps(PAIRS_B[0]) + "\n", encoding="utf-8")
    assert load_task("blimp_filtered", data_dir).sha256 != full.sha256


def test_official_names_map_to_the_shared_folders(monkeypatch):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared not found: no evaluation data at {SHARED_DATA}")
    monkeypatch.delenv("BABYKD_EVAL_DATA", raising=False)
    assert default_data_dir().resolve() == SHARED_DATA.resolve()
    sizes = {t.name: (len(t.subtasks), t.n_items) for t in load_tasks(["blimp_supplement", "ewok_filtered"])}
    assert sizes == {"blimp_supplement": (5, 5218), "ewok_filtered": (11, 7618)}
    assert len(load_task("blimp_filtered", max_items_per_subtask=1).subtasks) == 67


def test_cli_writes_results_merges_tasks_and_prints_summary(checkpoint, data_dir, capsys, monkeypatch):
    from babykd.evaluate import main

    monkeypatch.setenv("BABYKD_EVAL_DATA", str(data_dir))
    main([str(checkpoint), "--protocol", "2024", "--tasks", "blimp_filtered", "blimp_supplement", "--no-progress"])
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{checkpoint.resolve()}: blimp_filtered ") and "blimp_supplement" in line
    user_task = write_task(data_dir.parent / "my_pairs", {"mine": PAIRS_B})
    main([str(checkpoint), "--protocol", "2024", "--tasks", "ewok_filtered", str(user_task), "--no-progress", "--dtype", "bf16"])
    results = json.loads((checkpoint / "eval" / "results.json").read_text())
    assert list(results["tasks"]) == ["blimp_filtered", "blimp_supplement", "ewok_filtered", "my_pairs"]
    assert [results["tasks"][t]["dtype"] for t in ("blimp_filtered", "ewok_filtered")] == ["fp32", "bf16"]
    assert results["tasks"]["blimp_filtered"]["subtasks"]["sub_a"]["ties"] == 1  # identical choices tie exactly
    ewok = results["tasks"]["ewok_filtered"]
    assert ewok["subtasks"]["spatial"]["n"] == 3 and len(ewok["data_sha256"]) == 64
    assert results["sentences"] == 2 * (3 + 2) and results["versions"]["babykd"]
    for key in ("model", "data_sha256", "wall_time_s", "date", "model_dtype"):
        assert results[key]


def test_cli_reports_bad_data_before_loading_the_model(tmp_path, capsys):
    from babykd.evaluate import main

    folder = write_task(tmp_path / "broken", {"a": PAIRS_A})
    (folder / "a.jsonl").write_text("{}\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="a.jsonl:1: no item fields"):
        main([str(tmp_path / "no-model-here"), "--protocol", "2024", "--tasks", str(folder), "--output", str(tmp_path / "r.json")])


def test_shell_script_runs_from_any_directory(checkpoint, data_dir, tmp_path):
    out = tmp_path / "ewok.json"
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "eval-ewok.sh"), str(checkpoint), "--data-dir", str(data_dir),
         "--output", str(out), "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ewok_filtered" in proc.stdout
    assert list(json.loads(out.read_text())["tasks"]) == ["ewok_filtered"]


def test_report_table_csv_and_figure(tmp_path, tokenizer, llama, data_dir):
    from babykd.evaluation.report import main, write_results

    (tmp_path / "model-a" / "eval").mkdir(parents=True)
    (tmp_path / "model-a" / "eval" / "results.json").write_text("{truncated", encoding="utf-8")
    for name, limit in (("model-a", None), ("model-b", 1)):  # a damaged old file is replaced, not fatal
        results = evaluate_model(
            llama, tokenizer, ["blimp_filtered", "blimp_supplement", "ewok_filtered"], data_dir,
            max_items_per_subtask=limit, progress=False, model_name=str(tmp_path / name),
        )
        write_results(tmp_path / name / "eval" / "results.json", results)
    md, csv_path, png = tmp_path / "t.md", tmp_path / "t.csv", tmp_path / "f.png"
    main([str(tmp_path / "model-a"), str(tmp_path / "model-b" / "eval" / "results.json"),
          "--markdown", str(md), "--csv", str(csv_path), "--figure", str(png)])
    table = md.read_text().splitlines()
    assert table[0] == "| model | blimp_supplement | blimp_filtered | ewok_filtered |"
    a_row = next(r for r in table if r.startswith("| model-a |"))
    assert all(" ± " in cell for cell in a_row.split("|")[2:-1])
    assert "*" in next(r for r in table if r.startswith("| model-b |"))
    header, row_a, _ = csv_path.read_text().splitlines()
    assert header.split(",")[:4] == ["model", "path", "blimp_supplement", "blimp_supplement_stderr"]
    assert row_a.startswith("model-a,")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bf16_mode_stays_close_to_fp32(tokenizer, llama, data_dir):
    items = all_items(data_dir)
    fp32 = score_items(llama, tokenizer, items, progress=False)
    bf16 = score_items(llama, tokenizer, items, dtype="bf16", progress=False)
    assert np.all(np.isfinite(bf16))
    np.testing.assert_allclose(bf16, fp32, rtol=0.02)
    assert next(llama.parameters()).dtype == torch.float32 and not llama.training


def test_callback_scores_during_training_and_logs_to_tensorboard(tmp_path, tokenizer, data_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers import Trainer, TrainingArguments

    from babykd.evaluation.callback import EvaluationCallback

    model = tiny_model("llama").train()
    rows = [tokenizer.encode(s, add_special_tokens=False)[:6] for s in CORPUS[:8]]
    dataset = [{"input_ids": torch.tensor(r), "labels": torch.tensor(r)} for r in rows]
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=4, per_device_train_batch_size=2, learning_rate=1e-3,
        report_to=["tensorboard"], save_strategy="no", use_cpu=True, disable_tqdm=True, logging_steps=100,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset)
    callback = EvaluationCallback(
        tokenizer, ["blimp_filtered", "ewok_filtered"], data_dir, every_n_steps=2, max_items_per_subtask=2
    ).attach(trainer)
    trainer.train()
    # Steps 2 and 4; the epoch also ends at step 4 and is not scored twice.
    assert [h["step"] for h in callback.history] == [2, 4]
    logged = [h for h in trainer.state.log_history if "eval_blimp_filtered" in h]
    assert [h["step"] for h in logged] == [2, 4] and "eval_ewok_filtered" in logged[0]
    assert model.training
    events = EventAccumulator(str(next((tmp_path / "run").rglob("events.out.tfevents*")).parent))
    events.Reload()
    assert {"eval/blimp_filtered", "eval/ewok_filtered"} <= set(events.Tags()["scalars"])


def test_callback_needs_the_trainer(tokenizer, data_dir):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from babykd.evaluation.callback import EvaluationCallback

    callback = EvaluationCallback(tokenizer, ["ewok_filtered"], data_dir)
    with pytest.raises(RuntimeError, match="attach"):
        callback.on_train_begin(TrainingArguments(output_dir="unused", report_to=[]), TrainerState(), TrainerControl())


def test_evaluate_model_restores_training_mode(tokenizer, data_dir):
    model = tiny_model("llama").train()
    results = evaluate_model(model, tokenizer, ["ewok_filtered"], data_dir, progress=False)
    assert model.training
    assert results["tasks"]["ewok_filtered"]["n_items"] == 3
    assert results["model_dtype"] == "float32" and results["dtype"] == "fp32"
