"""Encoded requests cached per tokenizer and data: in memory within a process, on disk across processes.

Tokenizing the suite is host work that does not depend on the weights (7-8 s for the 145,422
sentences of BLiMP/supplement/EWoK), yet a submission scores 19 revisions, a reproduction ~20
models with one tokenizer, and the Trainer callback the same items at every evaluation. Both
protocols use it (`ranking.candidate_requests`, `scorer.score_items`); a slow tokenizer is never
cached. The key is a sha256 of everything the requests depend on:

* the tokenizer's full content (`backend_tokenizer.to_str()`: vocabulary, merges, normalizer,
  pre-tokenizer, post-processor with its start token, truncation), its class, special tokens and
  the transformers/tokenizers versions;
* every text the requests are built from, and the caller's parameters (`kind`, e.g. a max length);
* the source of the module that builds them, so a change of the rules is a miss, never a stale hit.

Disk entries are written atomically (`babykd.run.atomic`); an unreadable one is a miss and rewritten.
Folder: ``$BABYKD_EVAL_CACHE`` (``off`` disables the disk copy), else
``${XDG_CACHE_HOME:-~/.cache}/babykd/eval-requests``.

Requests are built (or read back) with Python's cyclic garbage collector paused (`collector_paused`):
the tokenizer returns one Python tuple per token offset (4.3M for the fast entity-tracking set), and
the full collections those allocations triggered traversed the whole heap again and again: the
fast suite's process spent 1.35 s of CPU in the collector, 0.23 s with the pause (2-core VM, 2026-12-07).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import inspect
import io
import logging
import os
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from babykd.run.atomic import atomic_write_bytes
from babykd.evaluation.request import Request

logger = logging.getLogger(__name__)
#: Request lists kept in memory (a task's set each; the least recently used is dropped first).
MEMORY_ENTRIES = 16
_memory: OrderedDict[str, list[Request]] = OrderedDict()


def cache_dir() -> Path | None:
    """Where encoded requests are kept on disk; None when ``BABYKD_EVAL_CACHE=off``."""
    configured = os.environ.get("BABYKD_EVAL_CACHE")
    if configured == "off":
        return None
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "babykd" / "eval-requests"


def tokenizer_fingerprint(tokenizer: Any) -> str | None:
    """sha256 of everything that decides a fast tokenizer's ids and offsets; None for a slow one (not cached)."""
    import tokenizers
    import transformers

    if not getattr(tokenizer, "is_fast", False):
        return None

    digest = hashlib.sha256()
    for part in (type(tokenizer).__name__, transformers.__version__, tokenizers.__version__,
                 repr(sorted(tokenizer.special_tokens_map.items())), tokenizer.backend_tokenizer.to_str()):
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()


def request_key(tokenizer: Any, kind: str, texts: Sequence[tuple[str, ...]], build: Callable[[], Any]) -> str | None:
    """The cache key of the requests `build` makes from `texts` with `tokenizer` (None: not cacheable)."""
    fingerprint = tokenizer_fingerprint(tokenizer)
    if fingerprint is None:
        return None
    digest = hashlib.sha256()
    module = inspect.getmodule(build)
    for part in (fingerprint, kind, inspect.getsource(module) if module else build.__qualname__):
        digest.update(part.encode("utf-8") + b"\0")
    for row in texts:
        digest.update(len(row).to_bytes(4, "little"))
        for text in row:
            encoded = text.encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "little") + encoded)
    return digest.hexdigest()


def _to_bytes(requests: Sequence[Request]) -> bytes:
    lengths = np.fromiter((len(r.tokens) for r in requests), dtype=np.int64, count=len(requests))
    tokens = np.fromiter((t for r in requests for t in r.tokens), dtype=np.int64, count=int(lengths.sum()))
    n_scored = np.fromiter((r.n_scored for r in requests), dtype=np.int64, count=len(requests))
    buffer = io.BytesIO()
    np.savez(buffer, tokens=tokens, lengths=lengths, n_scored=n_scored)
    return buffer.getvalue()


def _from_file(path: Path) -> list[Request] | None:
    """The requests stored at `path`, or None if it is absent or unreadable (then it is rewritten)."""
    try:
        with np.load(path) as data:
            tokens, lengths, n_scored = data["tokens"].tolist(), data["lengths"], data["n_scored"].tolist()
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    return [Request(tuple(tokens[a:b]), k) for a, b, k in zip(bounds[:-1], bounds[1:], n_scored)]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic cyclic garbage collection inside the block; the collector's previous state after it.

    Reference counting still frees every object; only cycles made inside wait for the next collection.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def cached_requests(
    tokenizer: Any, kind: str, texts: Sequence[tuple[str, ...]], build: Callable[[], list[Request]]
) -> list[Request]:
    """`build()`, or the requests it made before for the same tokenizer, texts, `kind` and code."""
    key = request_key(tokenizer, kind, texts, build)
    if key is None:
        with collector_paused():
            return build()
    if key in _memory:
        _memory.move_to_end(key)
        return list(_memory[key])
    folder = cache_dir()
    path = folder / f"{key}.npz" if folder is not None else None
    with collector_paused():
        stored = _from_file(path) if path is not None else None
        requests = stored if stored is not None else build()
    if stored is None and path is not None:
        try:
            atomic_write_bytes(path, _to_bytes(requests))
        except OSError as exc:  # a read-only or full cache folder only costs the next process the encoding
            logger.warning("encoded requests not cached on disk: %s", exc)
    _memory[key] = requests
    if len(_memory) > MEMORY_ENTRIES:
        _memory.popitem(last=False)
    return list(requests)  # a copy: a caller's edit never reaches the cache
