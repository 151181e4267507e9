"""A `datasets` corpus in the hub's parquet layout: read with per-source cleaning, trained on;
an unreachable hub id is a one-line error naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from babykd.data.corpus import CorpusError
from babykd.data.hub import HUB_PREFIX, is_datasets_corpus, open_datasets_corpus
from babykd.training import run_training

from test_training import LLAMA

datasets = pytest.importorskip("datasets")


def write_hub_layout(root: Path, train: list[dict], validation: list[dict]) -> Path:
    """Parquet files named as the hub stores a dataset's splits."""
    (root / "data").mkdir(parents=True)
    datasets.Dataset.from_list(train).to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    datasets.Dataset.from_list(validation).to_parquet(str(root / "data" / "validation-00000-of-00001.parquet"))
    return root


@pytest.fixture(scope="module")
def hub_corpus(demo_corpus, tmp_path_factory) -> Path:
    """The demo corpus's documents as parquet rows, plus CHILDES rows with speaker tags to clean."""
    train_text = (demo_corpus.corpus_dir / "train_10M").glob("*.train")
    rows = [{"text": doc, "source": "plain"} for file in sorted(train_text)
            for doc in file.read_text().split("\n\n") if doc.strip()]
    rows += [{"text": "*CHI:\twhere is the ball ?\n*MOT:\tthe ball is here .", "source": "childes"}] * 40
    dev = [{"text": "the dog sees the ball .", "source": "plain"}] * 50
    return write_hub_layout(tmp_path_factory.mktemp("hub"), rows, dev)


def test_parquet_folder_is_read_with_each_sources_cleaner(hub_corpus) -> None:
    assert is_datasets_corpus(hub_corpus) and is_datasets_corpus(HUB_PREFIX + "owner/name")
    corpus = open_datasets_corpus(hub_corpus)
    train = {part.file.label: part for part in corpus.read("train")}
    assert set(train) == {"childes", "plain"}
    childes = train["childes"].documents
    assert childes and not any("*CHI" in doc or "*MOT" in doc for doc in childes)
    assert any("where is the ball" in doc for doc in childes)
    assert [len(part.documents) for part in corpus.read("dev")] == [50]


def test_without_a_dev_split_rows_are_held_out(tmp_path) -> None:
    (tmp_path / "data").mkdir()
    rows = [{"text": f"document number {i} .", "source": "plain"} for i in range(30)]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "data" / "train-00000-of-00001.parquet"))
    corpus = open_datasets_corpus(tmp_path, dev_every=10)
    assert [len(p.documents) for p in corpus.read("train")] == [27]
    assert corpus.read("dev")[0].documents == ["document number 9 .", "document number 19 .", "document number 29 ."]


def test_missing_text_column_names_the_columns(hub_corpus) -> None:
    with pytest.raises(ValueError, match="no column 'content' .*columns: text, source.*data.text_column"):
        open_datasets_corpus(hub_corpus, text_column="content")


def test_a_text_column_that_holds_no_text_names_the_text_columns(tmp_path) -> None:
    rows = [{"id": i, "tokens": [1, 2], "body": f"document {i} ."} for i in range(20)]
    corpus = write_hub_layout(tmp_path, rows, rows[:5])
    for column, holds in (("id", "int64"), ("tokens", "List")):
        with pytest.raises(CorpusError, match=rf"train split: column '{column}' holds .*{holds}.*, not text; "
                                              r"set data.text_column to a text column \(body\)"):
            open_datasets_corpus(corpus, text_column=column)


def test_a_parquet_corpus_trains(tiny_config, hub_corpus, tmp_path) -> None:
    config = tiny_config(LLAMA, "parquet-corpus", f"data.corpus={hub_corpus}", f"data.cache_dir={tmp_path / 'cache'}",
                         "training.max_steps=3")
    result = run_training(config)
    record = json.loads((result.run_dir / "provenance.json").read_text())
    assert record["global_steps"] == 3 and record["words_seen"] > 0
    assert config.data.corpus == str(hub_corpus)


def test_unreachable_hub_is_a_one_line_error_naming_the_id() -> None:
    code = ("from babykd.data.hub import open_datasets_corpus\n"
            "open_datasets_corpus('hf://datasets/BabyLM-community/no-such-corpus')")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "hf://datasets/BabyLM-community/no-such-corpus" in last and "could not be reached" in last


def test_hub_id_in_a_config_is_kept_as_given(tiny_config) -> None:
    config = tiny_config(LLAMA, "hub-id", "data.corpus=hf://datasets/BabyLM-community/babylm-eng")
    assert config.data.corpus == "hf://datasets/BabyLM-community/babylm-eng"
