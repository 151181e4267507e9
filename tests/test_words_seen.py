"""Words seen (exact, from the chunks), checkpoints by words seen (every mark once, across a
resume), the track's words-seen cap, and the lineage count in provenance.json."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from babykd.data.cache import encode_documents
from babykd.data.dataset import WORDS_KEY, ChunkDataset
from babykd.data.pipeline import prepare_data
from babykd.data.tokenizer import train_tokenizer
from babykd.data.words import count_words, word_starts, word_table
from babykd.export import ExportError, export_run
from babykd.rules import RulesError, check_words_budget, checkpoint_marks, revision_name, revision_words
from babykd.trainer import KDTrainer
from babykd.training import is_finished, run_training
from babykd.run.words_seen import REVISION_INFO_FILE, saved_revisions

from test_training import LLAMA, SignalAtStep

TRICKY = [
    "Hello, world!  It's   me.",
    "\tleading tab\nand a newline\n\nand a blank line ",
    "naïve café — “quoted” words\u00a0with a no-break space",
    "Who cleaned?\nDavid cleaned.",
    "x",
]


def test_word_starts_sum_to_split_count_on_tricky_text() -> None:
    tokenizer = train_tokenizer(TRICKY * 20, vocab_size=300, show_progress=False)
    table = word_table(tokenizer)
    for boundaries in ("eos", "none"):
        tokens = encode_documents(TRICKY, tokenizer, boundaries)
        assert int(word_starts(tokens, table).sum()) == sum(count_words(doc) for doc in TRICKY), boundaries


def test_chunk_word_counts_equal_an_independent_count_from_decoded_text(demo_corpus, tmp_path) -> None:
    data = prepare_data(demo_corpus.corpus_dir, tmp_path / "tok", tmp_path / "cache", seq_length=16,
                        vocab_size=400, eval_chunks=4)
    dataset = data.train_dataset
    # every word of the train split starts in exactly one position of the token stream
    assert int(dataset.word_starts.sum(dtype=np.int64)) == data.train_words
    tokens = np.asarray(dataset.tokens, dtype=np.int64)

    def words_before(position: int) -> int:  # words of the text up to a token position, by str.split
        return count_words(data.tokenizer.decode(tokens[:position].tolist(), skip_special_tokens=True))

    for index in (0, 1, 7, len(dataset) // 2, len(dataset) - 1):
        start, end = index * 16, (index + 1) * 16
        assert int(dataset[index][WORDS_KEY]) == words_before(end) - words_before(start), index


def test_chunk_dataset_rejects_word_starts_of_another_length() -> None:
    with pytest.raises(ValueError, match="word_starts has 3 entries for 64 tokens"):
        ChunkDataset(np.zeros(64, dtype=np.uint16), 8, word_starts=np.zeros(3, dtype=np.uint8))


class RecordingTrainer(KDTrainer):
    """Keeps every micro-batch's word count, as an independent tally of what was consumed."""

    consumed: list[int] = []

    def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        RecordingTrainer.consumed.append(inputs[WORDS_KEY])  # the collator's host int
        return super().training_step(model, inputs, *args, **kwargs)


MARKS = [500, 1000, 1500, 2000, 10**9]  # the last is never reached


def marks_override() -> str:
    return f"training.checkpoint_words=[{', '.join(map(str, MARKS))}]"


def test_words_seen_counts_what_the_optimizer_consumed(tiny_config, monkeypatch) -> None:
    monkeypatch.setattr("babykd.training.KDTrainer", RecordingTrainer)
    RecordingTrainer.consumed = []
    # 4-chunk micro-batches, 2 accumulation steps, chunk offsets redrawn per epoch, more than one epoch
    config = tiny_config(LLAMA, "words-count", "training.max_steps=9", "training.per_device_batch_size=4",
                         "training.logging_steps=3", "data.random_offset=true")
    result = run_training(config)
    provenance = json.loads((result.run_dir / "provenance.json").read_text())
    assert len(RecordingTrainer.consumed) == 18
    assert provenance["words_seen"] == sum(RecordingTrainer.consumed) > 0
    logged = [entry["words_seen"] for entry in result.history if "words_seen" in entry]
    assert logged == sorted(logged) and logged[-1] == provenance["words_seen"]
    print(f"words seen: {provenance['words_seen']:,} (independent tally {sum(RecordingTrainer.consumed):,})")


MARKED_RUN = ("training.max_steps=12", "data.random_offset=true", marks_override())


@pytest.fixture(scope="module")
def marked_run(tiny_config) -> Path:
    """An uninterrupted tiny run that saves revisions at word marks."""
    return run_training(tiny_config(LLAMA, "marks-uninterrupted", *MARKED_RUN)).run_dir


def test_checkpoint_words_saves_each_mark_once_also_when_interrupted_and_resumed(tiny_config, marked_run) -> None:
    expected = saved_revisions(marked_run)
    assert [p.name for p in expected] == ["chck_500", "chck_1K", "chck_1500", "chck_2K"]

    config = tiny_config(LLAMA, "marks-interrupted", *MARKED_RUN)
    stopped = run_training(config, callbacks=[SignalAtStep(5)])
    assert stopped.preempted and 0 < len(saved_revisions(stopped.run_dir)) < len(expected)
    resumed = run_training(config, resume=True)
    assert is_finished(resumed.run_dir)
    actual = saved_revisions(resumed.run_dir)
    assert [p.name for p in actual] == [p.name for p in expected]

    words = 0
    for want, got in zip(expected, actual):
        info = json.loads((got / REVISION_INFO_FILE).read_text())
        assert info == json.loads((want / REVISION_INFO_FILE).read_text())
        assert info["mark"] == revision_words(got.name) <= info["words_seen"]
        assert info["words_seen"] > words  # each mark at the first step at or past it
        words = info["words_seen"]
        want_weights, got_weights = load_file(str(want / "model.safetensors")), load_file(str(got / "model.safetensors"))
        assert all(torch.equal(want_weights[k], got_weights[k]) for k in want_weights)
        AutoModelForCausalLM.from_pretrained(got)
        assert AutoTokenizer.from_pretrained(got).eos_token_id == 2
        assert not any(name.startswith("distillation_modules") for name in (f.name for f in got.iterdir()))
    final = json.loads((resumed.run_dir / "provenance.json").read_text())
    assert final["words_seen"] == json.loads((marked_run / "provenance.json").read_text())["words_seen"]


def test_export_lays_out_a_hub_repository_with_one_branch_per_revision(marked_run, tmp_path) -> None:
    branches = export_run(marked_run, tmp_path / "repo")
    assert branches == ["main", "chck_500", "chck_1K", "chck_1500", "chck_2K"]
    bare = tmp_path / "hub.git"  # stands in for the hub remote: push every branch, clone it back
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    subprocess.run(["git", "-C", str(tmp_path / "repo"), "push", "-q", "--all", str(bare)], check=True)
    heads = subprocess.run(["git", "ls-remote", "--heads", str(bare)], capture_output=True, text=True, check=True)
    assert sorted(line.rsplit("/", 1)[-1] for line in heads.stdout.splitlines()) == sorted(branches)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
    for branch in branches:
        # transformers ignores `revision=` for a local folder, so check each branch out and load it
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", branch], check=True)
        source = marked_run if branch == "main" else marked_run / "revisions" / branch
        model = AutoModelForCausalLM.from_pretrained(clone)
        want = load_file(str(source / "model.safetensors"))
        assert all(torch.equal(want[k], v) for k, v in model.state_dict().items() if k in want), branch
        assert AutoTokenizer.from_pretrained(clone).eos_token_id == 2
        card = (clone / "README.md").read_text()
        assert "Words seen:" in card and "Corpus:" in card and ("revision " + branch in card) == (branch != "main")
    with pytest.raises(ExportError, match="not empty"):
        export_run(marked_run, tmp_path / "repo")


def test_a_fresh_run_in_the_same_folder_drops_the_old_revisions(tiny_config) -> None:
    run_training(tiny_config(LLAMA, "marks-rerun", "training.max_steps=12", marks_override()))
    rerun = run_training(tiny_config(LLAMA, "marks-rerun", "training.max_steps=2", marks_override()), fresh=True)
    words = json.loads((rerun.run_dir / "provenance.json").read_text())["words_seen"]
    assert all(revision_words(p.name) <= words for p in saved_revisions(rerun.run_dir))


def test_distilled_student_reports_words_seen_by_its_whole_lineage(tiny_config, tiny_teachers) -> None:
    config = tiny_config("config/runs/demo/student-kd.yaml", "lineage-student", "training.max_steps=3",
                         f"distillation.teachers=[{tiny_teachers[0]}, {tiny_teachers[1]}]")
    result = run_training(config)
    record = json.loads((result.run_dir / "provenance.json").read_text())
    teachers = [json.loads((t / "provenance.json").read_text()) for t in tiny_teachers]
    tokenizer_entries = [k for k in record["lineage"] if k.startswith("tokenizer:")]
    assert len(tokenizer_entries) == 1  # shared by both teachers and the student: counted once
    expected = record["lineage"][tokenizer_entries[0]] + record["words_seen"] + sum(t["words_seen"] for t in teachers)
    assert record["lineage_words_seen"] == expected
    assert record["lineage_words_seen"] > record["words_seen"] > 0


def test_schedule_over_the_cap_is_refused_before_training(tiny_config) -> None:
    config = tiny_config(LLAMA, "over-cap", "training.max_steps=2000000", "rules.track=strict-small")
    with pytest.raises(RulesError, match=r"would see [\d,]+ words \(2,000,000 steps x 8 chunks .* cap of 100,000,000"):
        run_training(config)
    assert not (config.output.run_dir / "checkpoints").exists()


def test_epoch_cap_numbers_and_track_none() -> None:
    with pytest.raises(RulesError, match=r"100,000,001 words \(x\), over the track's cap of 100,000,000"):
        check_words_budget("strict-small", 9_800_000, 100_000_001, "x")
    with pytest.raises(RulesError, match="training corpus has 10,000,001 words"):
        check_words_budget("strict-small", 10_000_001, 10_000_001, "1 epochs")
    check_words_budget("strict-small", 9_412_301, 94_123_010, "10 epochs")  # ten epochs are allowed
    check_words_budget("none", 10**10, 10**12, "anything")


def test_official_schedule_and_revision_names() -> None:
    marks = checkpoint_marks("babylm", "strict-small")
    names = [revision_name(m) for m in marks]
    assert len(marks) == 19 and names[:2] == ["chck_1M", "chck_2M"] and names[9:11] == ["chck_10M", "chck_20M"]
    assert names[-1] == "chck_100M" and all(revision_words(n) == m for n, m in zip(names, marks))
    assert revision_name(250_000) == "chck_250K" and revision_name(1_500) == "chck_1500"
    with pytest.raises(RulesError, match="needs a track"):
        checkpoint_marks("babylm", "none")
