"""Token cache: the tokenized split as one flat integer array on disk, memory-mapped on load.

Why: tokenizing 10M words takes a minute or more on a laptop, and every run,
ablation and data-loader worker needs the same stream. The array is the
concatenation of all documents' token ids (with ``</s>`` after each document
by default); a JSON sidecar records what it was built from.

It is rebuilt only when its inputs change: the fingerprint hashes the cleaned
text, the tokenizer's ``tokenizer.json`` content and the boundary option. A
cache whose array does not match its sidecar (truncated, corrupted, wrong
length) or whose fingerprint is stale is rebuilt with a warning that says
why, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from ..run.atomic import atomic_write_bytes, atomic_write_json
from .tokenizer import tokenizer_fingerprint

logger = logging.getLogger(__name__)

DocumentBoundaries = Literal["eos", "none"]
BOUNDARY_OPTIONS = ("eos", "none")
CACHE_FORMAT = 1
#: Documents are tokenized in batches of about this many characters (books are long, lines short).
BATCH_CHARS = 1 << 20


@dataclass(frozen=True)
class TokenCache:
    """A loaded cache. ``built`` says whether this call (re)built it and ``reason`` why."""

    tokens: np.ndarray
    meta: dict[str, Any]
    built: bool
    reason: str


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id (0 .. vocab_size - 1) fits, else uint32: half the disk and page cache."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def check_boundaries(document_boundaries: str) -> None:
    """Reject an unknown ``document_boundaries`` option, naming the allowed ones."""
    if document_boundaries not in BOUNDARY_OPTIONS:
        raise ValueError(
            f"document_boundaries must be one of {BOUNDARY_OPTIONS}, not {document_boundaries!r}"
        )


def fingerprint(
    documents: Sequence[str], tokenizer: PreTrainedTokenizerBase, document_boundaries: str
) -> str:
    """SHA-256 over the cache format, the boundary option, the tokenizer and every document.

    Each document is length-prefixed, so moving text across a document
    boundary also changes the fingerprint.
    """
    digest = hashlib.sha256(f"babykd-token-cache-v{CACHE_FORMAT}\0{document_boundaries}\0".encode())
    digest.update(tokenizer_fingerprint(tokenizer).encode())
    _hash_documents(digest, documents)
    return digest.hexdigest()


def text_fingerprint(documents: Mapping[str, Sequence[str]]) -> str:
    """SHA-256 of the cleaned documents of every split: what a corpus IS, whatever its folder is called.

    Tokenizers and token caches are filed under it, so a different corpus in a
    folder of the same name gets its own, and two corpora never overwrite each other's.
    """
    digest = hashlib.sha256(b"babykd-corpus-text-v1\0")
    for split in sorted(documents):
        digest.update(f"{split}\0{len(documents[split])}\0".encode())
        _hash_documents(digest, documents[split])
    return digest.hexdigest()


def _hash_documents(digest: Any, documents: Sequence[str]) -> None:
    """Feed `documents` to `digest`, each length-prefixed (moving text across a boundary changes it)."""
    for document in documents:
        data = document.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)


def cache_paths(stem: str | Path) -> tuple[Path, Path]:
    """The array and sidecar files of the cache named ``stem`` (``cache/train-eos`` -> ``.bin``/``.json``)."""
    stem = Path(stem)
    return stem.with_name(stem.name + ".bin"), stem.with_name(stem.name + ".json")


def load_or_build(
    stem: str | Path,
    documents: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    *,
    document_boundaries: DocumentBoundaries = "eos",
) -> TokenCache:
    """Return the cached token stream of ``documents``, building it first if needed."""
    check_boundaries(document_boundaries)
    array_path, meta_path = cache_paths(stem)
    expected = fingerprint(documents, tokenizer, document_boundaries)
    problem = _problem(array_path, meta_path, expected)
    if problem is None:
        meta = json.loads(meta_path.read_text())
        return TokenCache(_memmap(array_path, meta), meta, built=False, reason="up to date")
    if problem == "missing":
        logger.info("building token cache %s", array_path)
    else:
        logger.warning("rebuilding token cache %s: %s", array_path, problem)
    tokens = encode_documents(documents, tokenizer, document_boundaries)
    data = tokens.tobytes()
    meta = {
        "format": CACHE_FORMAT,
        "fingerprint": expected,
        "dtype": tokens.dtype.name,
        "length": int(tokens.size),
        "sha256": hashlib.sha256(data).hexdigest(),
        "documents": len(documents),
        "vocab_size": len(tokenizer),
        "document_boundaries": document_boundaries,
    }
    # Array first: a job killed between the two writes leaves a sidecar that
    # no longer matches, which the next run detects.
    atomic_write_bytes(array_path, data)
    atomic_write_json(meta_path, meta)
    return TokenCache(_memmap(array_path, meta), meta, built=True, reason=problem)


def encode_documents(
    documents: Sequence[str], tokenizer: PreTrainedTokenizerBase, document_boundaries: str
) -> np.ndarray:
    """Tokenize ``documents`` in batches into one flat array, ``</s>`` after each if ``"eos"``."""
    check_boundaries(document_boundaries)
    dtype = token_dtype(len(tokenizer))
    eos = [tokenizer.eos_token_id] if document_boundaries == "eos" else []
    backend = tokenizer.backend_tokenizer
    pieces: list[np.ndarray] = []
    # encode_batch_fast skips character offsets, which a token cache never needs (~1.5x faster).
    with tqdm(total=sum(map(len, documents)), desc="tokenizing", unit="char", unit_scale=True) as bar:
        for batch in _batches(documents):
            for encoding in backend.encode_batch_fast(batch, add_special_tokens=False):
                pieces.append(np.asarray(encoding.ids + eos, dtype=dtype))
            bar.update(sum(map(len, batch)))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)


def _batches(documents: Sequence[str]) -> list[list[str]]:
    batches, current, size = [], [], 0
    for document in documents:
        current.append(document)
        size += len(document)
        if size >= BATCH_CHARS:
            batches.append(current)
            current, size = [], 0
    if current:
        batches.append(current)
    return batches


def _problem(array_path: Path, meta_path: Path, expected: str) -> str | None:
    """Why the cache cannot be used as is, or None if it can."""
    if not array_path.exists() or not meta_path.exists():
        return "missing"
    try:
        meta = json.loads(meta_path.read_text())
        dtype, length, checksum = np.dtype(meta["dtype"]), int(meta["length"]), meta["sha256"]
        stored = meta["fingerprint"]
    except (ValueError, KeyError, TypeError) as error:
        return f"unreadable sidecar {meta_path.name} ({error})"
    if stored != expected:
        return "stale: the cleaned text, the tokenizer or the boundary option changed"
    size = array_path.stat().st_size
    if size != length * dtype.itemsize:
        return f"wrong length: {size} bytes on disk, sidecar says {length} {dtype.name} tokens"
    if _file_sha256(array_path) != checksum:
        return "checksum mismatch: the array was modified or corrupted"
    return None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _memmap(path: Path, meta: dict[str, Any]) -> np.ndarray:
    if meta["length"] == 0:
        return np.zeros(0, dtype=meta["dtype"])
    return np.memmap(path, dtype=meta["dtype"], mode="r", shape=(meta["length"],))
