"""A shared head tokenized once gives every candidate the requests of its whole sentence, or is not used.

`ranking._encode_candidates` tokenizes an item's shared head once and each candidate's rest alone
when `ranking.splits_before_spaces` allows it; the requests must equal those of each sentence
tokenized whole (the same function with the split refused), token for token and scored count for count.
"""

from __future__ import annotations

import pytest
from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers, processors

from babykd.data.tokenizer import train_tokenizer, wrap
from babykd.evaluation import ranking
from babykd.evaluation.suite import load_candidates, make_source
from conftest import shared_or_skip

CORPUS = ["Box 0 contains the apple and the book, Box 1 contains nothing. Box 0 contains the apple.",
          "Ali is in the bakery. Ali is inside.", "Héllo wörld, don't go. Tab\tthen a line\nbreak."] * 20
#: Contexts and options around the cut: unicode, runs of spaces, tabs, newlines, contractions, digits, marks.
CONTEXTS = ["Héllo wörld,  Box 1 contains ", "A\u0301 b\u00a0c 2² ", "x's  ", "Tab\tthen ", "line\nbreak ",
            "ｆｕｌｌ width ", "ΣΑΣ ", "(1) ", "end. ", "don't ", "a  \n ", "\u00a8 ", "multi   spaces   "]
OPTIONS = ["the key.", "'s own", " \u0301x", "  two", "\nnew", "Ωmega", "123 go", "ﬁne", "<s> in text", "</s>"]
CRAFTED = [ranking.Candidates("t", tuple(c + o for o in OPTIONS), tuple(OPTIONS)) for c in CONTEXTS] + [
    ranking.Candidates("e", (f"{c.rstrip()} {o}", f"{c.rstrip()} {o}!"), (f" {o}", f" {o}!"))
    for c in CONTEXTS for o in OPTIONS[:4]
]


@pytest.fixture(scope="module")
def ours():
    """The project's recipe with a small vocabulary (many lone space tokens, the case the cut must survive)."""
    return train_tokenizer(CORPUS, vocab_size=300, min_frequency=1, show_progress=False)


def edited(tokenizer, edit):
    core = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    edit(core)
    return wrap(core)


def gpt2_like(core: Tokenizer) -> None:
    core.normalizer = None
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.post_processor = processors.ByteLevel(trim_offsets=True)


def lower_cased(core: Tokenizer) -> None:
    core.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase()])


def end_token(core: Tokenizer) -> None:
    core.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])


def metaspace(core: Tokenizer) -> None:
    core.pre_tokenizer = pre_tokenizers.Metaspace()


def stripping_token(core: Tokenizer) -> None:
    core.add_special_tokens([AddedToken("<mask>", lstrip=True)])


def whole_sentences(tokenizer, items, monkeypatch) -> list:
    with monkeypatch.context() as patch:
        patch.setattr(ranking, "splits_before_spaces", lambda _: False)
        return ranking._encode_candidates(tokenizer, items)


@pytest.mark.parametrize("edit", [None, gpt2_like, lower_cased], ids=["ours", "gpt2-like", "nfd-lowercase"])
def test_crafted_texts_split_as_their_whole_sentences(ours, edit, monkeypatch):
    tokenizer = edited(ours, edit) if edit else ours
    assert ranking.splits_before_spaces(tokenizer)
    assert sum(map(ranking.shared_head, CRAFTED)) > 0
    assert ranking._encode_candidates(tokenizer, CRAFTED) == whole_sentences(tokenizer, CRAFTED, monkeypatch)


@pytest.mark.parametrize("edit", [end_token, metaspace, stripping_token])
def test_other_tokenizers_tokenize_every_sentence_whole(ours, edit):
    assert not ranking.splits_before_spaces(edited(ours, edit))


def test_a_head_is_shared_only_when_every_candidate_continues_it_with_the_space():
    entity = ranking.Candidates("x", ("Box 1 contains the key.", "Box 1 contains nothing."), ("the key.", "nothing."))
    assert ranking.shared_head(entity) == len("Box 1 contains")
    differing = ranking.Candidates("x", ("Box 1 holds it.", "Box 2 holds it."), (" it.", " it."))
    assert ranking.shared_head(differing) == 0  # the heads differ
    pair = ranking.Candidates("x", ("The cat sat.", "The mat sat."), ("The cat sat.", "The mat sat."))
    assert ranking.shared_head(pair) == 0  # nothing precedes the completion


@pytest.mark.parametrize("task", ["entity_tracking", "ewok_filtered"])
def test_every_fast_item_splits_as_its_whole_sentences(task, monkeypatch):
    zip_path = shared_or_skip("evaluation_data_2025.zip")
    items, _ = load_candidates(task, make_source(True, None, zip_path))
    tokenizer = train_tokenizer([s for item in items[::10] for s in item.sentences], vocab_size=2000,
                                show_progress=False)
    assert all(map(ranking.shared_head, items))
    assert ranking._encode_candidates(tokenizer, items) == whole_sentences(tokenizer, items, monkeypatch)
