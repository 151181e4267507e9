"""The byte-level BPE tokenizer: special ids, byte-exact round trip, NFKC, save and reload."""

import pytest
from transformers import AutoTokenizer

from babykd.data.tokenizer import (
    DOCUMENT_START_ID,
    load_tokenizer,
    save_tokenizer,
    tokenizer_fingerprint,
    train_tokenizer,
)

TEXTS = [
    "what's that?\nit's a chicken.\nyeah.",
    "Dorothy lived in the midst of the great Kansas prairies.",
    "The little dog barked at the big dog, and the cat ran away.",
] * 20


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tok") / "tokenizer"
    tokenizer = train_tokenizer(TEXTS, vocab_size=400, min_frequency=2, length=len(TEXTS))
    save_tokenizer(tokenizer, directory)
    return tokenizer, directory


def test_special_token_ids(saved):
    tokenizer, directory = saved
    for tok in (tokenizer, load_tokenizer(directory)):
        assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<pad>", "<s>", "</s>")
        assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)


def test_vocabulary_has_all_bytes_and_merges_from_training(saved):
    tokenizer, _ = saved
    assert 3 + 256 < len(tokenizer) <= 400
    assert len(tokenizer("the chicken")["input_ids"]) < len("the chicken")


@pytest.mark.parametrize(
    "text",
    [
        "Who cleaned?\nDavid cleaned.",
        "tabs\tand  double  spaces, trailing newline\n",
        "Zoë's café in Kraków: 東京 😀 — «quoted»",
        "a\n\n\nb",
    ],
)
def test_round_trip_is_byte_exact_including_unseen_characters(saved, text):
    tokenizer, _ = saved
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    # The pre-tokenizer adds one space before the text (prefix space), nothing else changes.
    assert tokenizer.decode(ids) == " " + text


def test_nfkc_folds_compatibility_characters(saved):
    tokenizer, _ = saved
    assert tokenizer.decode(tokenizer("ﬁne ① Ｆｕｌｌ", add_special_tokens=False)["input_ids"]) == " fine 1 Full"


def test_default_encoding_prepends_the_document_start_token_only(saved):
    """The official 2025 pipeline scores every word only if the tokenizer prepends a start token by default."""
    tokenizer, directory = saved
    for tok in (tokenizer, AutoTokenizer.from_pretrained(str(directory))):
        plain = tok("yeah.", add_special_tokens=False)["input_ids"]
        assert not {0, 1, 2} & set(plain)
        encoded = tok("yeah.", return_offsets_mapping=True)
        assert encoded["input_ids"] == [DOCUMENT_START_ID] + plain
        assert encoded["offset_mapping"][0] == (0, 0)  # never overlaps a word, so never scored itself


def test_autotokenizer_reload_is_identical(saved):
    tokenizer, directory = saved
    assert (directory / "tokenizer.json").is_file()
    reloaded = AutoTokenizer.from_pretrained(str(directory))
    text = "what's that?\nit's a chicken."
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert tokenizer_fingerprint(reloaded) == tokenizer_fingerprint(tokenizer)


def test_training_data_changes_the_fingerprint(saved):
    tokenizer, _ = saved
    other = train_tokenizer(TEXTS[:3] + ["zebra zebra zebra"] * 5, vocab_size=400, show_progress=False)
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tokenizer)


def test_save_replaces_an_existing_tokenizer(tmp_path, saved):
    tokenizer, _ = saved
    directory = tmp_path / "tok"
    directory.mkdir()
    (directory / "stale.txt").write_text("old")
    save_tokenizer(tokenizer, directory)
    assert not (directory / "stale.txt").exists()
    assert load_tokenizer(directory).eos_token_id == 2


def test_load_without_tokenizer_names_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"empty: no tokenizer\.json"):
        load_tokenizer(tmp_path / "empty")


def test_too_small_vocabulary_is_refused():
    with pytest.raises(ValueError, match="vocab_size must exceed"):
        train_tokenizer(TEXTS, vocab_size=200)
