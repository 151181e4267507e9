"""Train, save and load the byte-level BPE tokenizer (the published BabyLlama recipe).

Why byte-level with the full byte alphabet: every character, newline included,
must survive encoding (the evaluation sets contain dialogue with literal
newlines and the odd non-ASCII name); a byte-level vocabulary that starts from
all 256 bytes never needs an unknown token. NFKC folds compatibility forms
(``ﬁ`` -> ``fi``, ``①`` -> ``1``) so rare presentation variants do not take
vocabulary slots. Saved as a standard Hugging Face tokenizer so
``AutoTokenizer.from_pretrained`` and any downstream tool loads it unchanged.

Why a start-token post-processor: the official BabyLM 2025 pipeline tokenizes
each sentence with the tokenizer's DEFAULT special tokens and, for a causal LM,
never scores the first token (it has no left context). With a start token
prepended by default, the first word is scored too; without it, every BLiMP
sentence loses its first word. The start token is ``</s>``, not ``<s>``: the
token cache puts ``</s>`` between documents, so the model has learned what
follows it (the start of a text), while ``<s>`` never occurs in training and
its embedding stays at its random initialisation. Training never sees the
post-processor: the token cache encodes with ``add_special_tokens=False``
(`babykd.data.cache`), and so does the 2024 evaluation protocol.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from ..run.atomic import atomic_directory
from ..errors import UserError

logger = logging.getLogger(__name__)

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
#: In this order, so their ids are 0, 1, 2.
SPECIAL_TOKENS = (PAD, BOS, EOS)
TOKENIZER_FILE = "tokenizer.json"
#: The token the tokenizer prepends by default (see the module docstring for why this one).
DOCUMENT_START = EOS
DOCUMENT_START_ID = SPECIAL_TOKENS.index(DOCUMENT_START)


class TokenizerError(UserError, ValueError):
    """A saved tokenizer that cannot be used; the message names its folder."""


def train_tokenizer(
    texts: Iterable[str],
    *,
    vocab_size: int = 16000,
    min_frequency: int = 2,
    length: int | None = None,
    show_progress: bool = True,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` (pass the train split only).

    ``length`` (the number of texts, if known) lets the progress bar show a total.
    """
    if vocab_size <= len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size must exceed the 259 special and byte tokens, not {vocab_size}")
    core = Tokenizer(models.BPE())
    core.normalizer = normalizers.NFKC()
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    core.decoder = decoders.ByteLevel()
    core.post_processor = bos_post_processor()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    core.train_from_iterator(texts, trainer, length=length)
    logger.info("trained tokenizer: %d tokens", core.get_vocab_size())
    return wrap(core)


def bos_post_processor() -> processors.PostProcessor:
    """Byte-level offset trimming, then `DOCUMENT_START` before each sequence (with special tokens on)."""
    start = DOCUMENT_START
    return processors.Sequence([
        processors.ByteLevel(trim_offsets=True),
        processors.TemplateProcessing(
            single=f"{start} $A", pair=f"{start} $A {start} $B", special_tokens=[(start, DOCUMENT_START_ID)]
        ),
    ])


def with_bos(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerFast:
    """A copy of a saved (older) tokenizer of ours that prepends `DOCUMENT_START` by default.

    For tokenizers trained before the BOS post-processor: the ids of every
    text are unchanged, so a model trained with the old one is scored with this
    one.
    """
    core = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    core.post_processor = bos_post_processor()
    return wrap(core)


def wrap(core: Tokenizer) -> PreTrainedTokenizerFast:
    """The Hugging Face tokenizer around a ``tokenizers`` object, with its special tokens named.

    Tokenization spaces are not "cleaned up" on decode: that would change
    ``" ."`` and break the byte-exact round trip.
    """
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: str | Path) -> None:
    """Write ``tokenizer`` to ``directory`` atomically (a reader never sees half a tokenizer)."""
    with atomic_directory(directory) as tmp:
        tokenizer.save_pretrained(tmp)
    logger.info("saved tokenizer to %s", directory)


def has_tokenizer(directory: str | Path) -> bool:
    """Whether ``directory`` holds a saved tokenizer."""
    return (Path(directory) / TOKENIZER_FILE).is_file()


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    """Load a saved tokenizer and check the special-token ids the data pipeline relies on."""
    if not has_tokenizer(directory):
        raise FileNotFoundError(f"{directory}: no {TOKENIZER_FILE} (train a tokenizer first)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except Exception as error:  # a truncated tokenizer.json raises a bare JSONDecodeError (no path)
        raise TokenizerError(
            f"{directory}: the saved tokenizer cannot be loaded ({type(error).__name__}: {error}); "
            "delete the folder to retrain it"
        ) from error
    ids = [tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS]
    if ids != [0, 1, 2]:
        raise TokenizerError(f"{directory}: special tokens {SPECIAL_TOKENS} have ids {ids}, expected [0, 1, 2]")
    return tokenizer


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """SHA-256 of the tokenizer's ``tokenizer.json`` content (canonical, unindented form).

    Taken from the live object, not the file, so a tokenizer just trained and
    the same one reloaded from disk give the same fingerprint.
    """
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8")).hexdigest()
