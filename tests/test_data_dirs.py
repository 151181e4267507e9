"""Tokenizers and token caches are filed by the corpus text, not by the corpus folder's name;
interrupted writes leave nothing behind for the next run to trip over."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from babykd import REPO_ROOT
from babykd.config import RunConfig, load_run_config
from babykd.data.cache import cache_paths
from babykd.data.corpus import CorpusError
from babykd.training import load_data
from test_dataset import write_corpus

LLAMA = "config/runs/tiny/pretrain-tiny-llama.yaml"


def config_for(corpus: Path, root: Path, *overrides: str) -> RunConfig:
    """A run on `corpus` with the default (derived) tokenizer and cache folders under `root`."""
    return load_run_config(REPO_ROOT / LLAMA, [
        f"data.corpus={corpus}", f"output.root={root}", "data.vocab_size=300", "model.vocab_size=300",
        "data.seq_length=16", "data.eval_chunks=4", *overrides,
    ])


def test_same_named_corpus_folders_with_different_text_get_their_own_tokenizer_and_cache(tmp_path: Path) -> None:
    root = tmp_path / "models"
    kids, trucks = tmp_path / "a" / "babylm", tmp_path / "b" / "babylm"
    write_corpus(kids, "*CHI:\tmore cookie .\n*MOT:\tyou want a cookie ?\n\n" * 40)
    write_corpus(trucks, "*CHI:\tbig truck go vroom .\n*MOT:\tthe truck is red ?\n\n" * 40)
    first = load_data(config_for(kids, root))
    second = load_data(config_for(trucks, root))
    assert first.stats["tokenizer"]["trained"] and second.stats["tokenizer"]["trained"], "a tokenizer was reused"
    assert first.stats["tokenizer"]["dir"] != second.stats["tokenizer"]["dir"]
    assert first.cache_dir != second.cache_dir
    assert all(Path(d).name.startswith("babylm-300-") for d in (first.stats["tokenizer"]["dir"], first.cache_dir))
    # neither overwrote the other: the first corpus finds its tokenizer and caches as it left them
    again = load_data(config_for(kids, root))
    assert not again.stats["tokenizer"]["trained"]
    assert not any(split["cache"]["rebuilt"] for split in again.stats["splits"].values())
    assert again.tokenizer.backend_tokenizer.to_str() == first.tokenizer.backend_tokenizer.to_str()


def test_leftovers_of_an_interrupted_cache_build_are_removed(tmp_path: Path) -> None:
    write_corpus(tmp_path / "corpus", "*CHI:\tmore cookie .\n\n" * 40)
    config = config_for(tmp_path / "corpus", tmp_path / "models")
    data = load_data(config)
    array, _ = cache_paths(data.cache_dir / "train-eos")
    tokenizer_dir = Path(data.stats["tokenizer"]["dir"])
    # what SIGKILL leaves in the middle of atomic writes of the cache and of the tokenizer
    leftovers = [array.with_name(f".{array.name}.k1ll3d.tmp"), tokenizer_dir.with_name(f".{tokenizer_dir.name}.x7.tmp")]
    leftovers[0].write_bytes(b"\0" * 64)
    leftovers[1].mkdir()
    (leftovers[1] / "tokenizer.json").write_text("{")
    load_data(config)
    assert not any(path.exists() for path in leftovers)
    assert array.is_file() and (tokenizer_dir / "tokenizer.json").is_file()


def test_every_tokenizer_setting_is_part_of_the_folders_key(tmp_path: Path) -> None:
    write_corpus(tmp_path / "corpus", "*CHI:\tmore cookie .\n*MOT:\tyou want a cookie ?\n\n" * 40)
    first = load_data(config_for(tmp_path / "corpus", tmp_path / "models"))
    changed = load_data(config_for(tmp_path / "corpus", tmp_path / "models", "data.min_frequency=5"))
    assert changed.stats["tokenizer"]["trained"], "the tokenizer of min_frequency 2 was reused"
    assert Path(first.stats["tokenizer"]["dir"]).name.startswith("corpus-300-min2-")
    assert Path(changed.stats["tokenizer"]["dir"]).name.startswith("corpus-300-min5-")


def test_a_dev_split_shorter_than_one_chunk_names_the_split_and_its_files(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    write_corpus(corpus, "*CHI:\tmore cookie .\n\n" * 40)
    (corpus / "dev" / "childes.dev").write_text("*MOT:\thi .\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=rf"the dev split \({re.escape(str(corpus / 'dev' / 'childes.dev'))}\) "
                                          r"is too short for data.seq_length: .* no chunk of 16 tokens"):
        load_data(config_for(corpus, tmp_path / "models"))


def test_doc_format_lines_reads_a_plain_corpus_that_starts_with_a_tag(tmp_path: Path) -> None:
    (tmp_path / "corpus.txt").write_text("<s> is how a tag starts .\n" + "".join(
        f"line {i} of the corpus is plain text .\n" for i in range(59)))
    with pytest.raises(CorpusError, match="line 1: text outside <s> ... </s>"):
        load_data(config_for(tmp_path / "corpus.txt", tmp_path / "models"))
    data = load_data(config_for(tmp_path / "corpus.txt", tmp_path / "models", "data.doc_format=lines"))
    assert data.stats["splits"]["train"]["documents"] == 54
