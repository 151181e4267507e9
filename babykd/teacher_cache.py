"""Offline KD: the teacher ensemble's top-k soft targets, computed once and reused every epoch.

Why: the training chunks are fixed (no random offset), so the teachers give the
same answer for a chunk every epoch. In the BabyLlama recipe their forwards cost
about 2·(705M + 360M) FLOPs per token against 6·58M for the student's step, most
of every distillation step. With ``distillation.teacher_cache_top_k: K`` one
pass over the corpus stores, per chunk and position, the K most likely tokens of
the combined tempered teacher distribution and their log-probabilities; every
epoch then trains on them (:func:`babykd.losses.sparse_kl_distillation_loss`,
which keeps the remaining mass as one "rest" outcome) without loading a
teacher. How the teacher spreads that rest mass is what the cache loses: the
build records the mean mass the top K hold (``meta.json``: ``top_k_mass``).

On disk (memory-mapped ``.npy``, ``N_chunks × seq_length × K`` each): ``ids``
(uint16 when the vocabulary fits, else int32) and ``log_probs`` (float16, floored at a finite
:data:`LOG_PROB_FLOOR`), with
``meta.json`` written last. The default directory name carries a fingerprint of
everything the targets depend on (token stream, chunking, teacher weights,
config and tokenizer, temperature, combination, K), so changing any of them builds a new cache
instead of silently reusing a stale one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from babykd.atomic import atomic_directory, atomic_write_json
from babykd.config import DistillationConfig
from babykd.data.dataset import ChunkDataset
from babykd.losses import combined_teacher_log_probs, top_k_targets

logger = logging.getLogger(__name__)

CACHE_FORMAT = 3  # 3: log-probs floored at LOG_PROB_FLOOR (2 could hold -inf; 1 renormalised over the top K)
#: Floor of a stored log-prob: float16's most negative finite value. The combined teachers give a
#: masked vocabulary entry float32's floor (-3.4e38), which is -inf in float16, and the loss's
#: q·log q is then 0·(−inf) = NaN. Floored, the entry keeps q = exp(floor) = 0 and a finite log q.
LOG_PROB_FLOOR = float(torch.finfo(torch.float16).min)
#: Batch keys the cached targets travel under (the trainer reads them, the model never sees them).
IDS_KEY = "teacher_top_ids"
LOG_PROBS_KEY = "teacher_top_log_probs"
#: Weight files whose size and modification time identify a teacher checkpoint (hashing GBs at every start is slow).
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
#: The small files that say what the weights compute and which tokens they read: identified by their content.
DEFINITION_PATTERNS = ("config.json", "tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab*",
                       "merges.txt", "*.model")


@dataclass(frozen=True)
class TeacherCache:
    """A loaded cache: ``ids`` and ``log_probs`` are ``[N_chunks, seq_length, K]`` memory maps."""

    directory: Path
    ids: np.ndarray
    log_probs: np.ndarray
    meta: dict[str, Any]
    built: bool


def teacher_identity(path: str | Path) -> str:
    """The resolved path, each weight file's name, size and mtime, and the content of the config and tokenizer files.

    Why those files too: the same weights under another RoPE base or weight tying predict otherwise,
    and a changed tokenizer has to pass the teachers' tokenizer check again. Their content is hashed,
    not their mtime, so a copy or a touch that changes nothing rebuilds nothing.
    """
    root = Path(path).resolve()
    weights = sorted({f for pattern in WEIGHT_PATTERNS for f in root.glob(pattern)})
    definitions = sorted({f for pattern in DEFINITION_PATTERNS for f in root.glob(pattern) if f.is_file()})
    return "|".join([str(root), *(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in weights),
                     *(f"{f.name}:{hashlib.sha256(f.read_bytes()).hexdigest()}" for f in definitions)])


def cache_fingerprint(dataset: ChunkDataset, cfg: DistillationConfig) -> str:
    """SHA-256 over everything the cached targets depend on."""
    if dataset.random_offset:
        raise ValueError("cached teacher targets need fixed chunks (data.random_offset: false)")
    digest = hashlib.sha256(
        f"babykd-teacher-cache-v{CACHE_FORMAT}\0{dataset.seq_length}\0{len(dataset)}\0"
        f"{cfg.temperature}\0{cfg.combine}\0{cfg.teacher_cache_top_k}\0".encode()
    )
    for teacher in cfg.teachers:
        digest.update(teacher_identity(teacher).encode() + b"\0")
    digest.update(np.ascontiguousarray(dataset.tokens[: len(dataset) * dataset.seq_length]).tobytes())
    return digest.hexdigest()


def default_cache_dir(data_cache_dir: Path, fingerprint: str) -> Path:
    """Where a run's cache goes unless `distillation.teacher_cache_dir` says otherwise."""
    return data_cache_dir / f"teachers-{fingerprint[:16]}"


def load_teacher_cache(directory: Path, fingerprint: str) -> TeacherCache | None:
    """The cache in `directory` if it is complete and has this fingerprint; None (and why, logged) otherwise.

    A damaged file (a copy or a disk that lost its tail) is named in one warning and the cache rebuilt:
    its targets cost one pass of the teachers, never a failed run.
    """
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        shape = tuple(meta["shape"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        return _damaged(meta_path, error)
    if meta.get("fingerprint") != fingerprint:
        logger.warning("%s holds targets of other teachers, data or settings: rebuilding", directory)
        return None
    arrays = []
    for path in (directory / "ids.npy", directory / "log_probs.npy"):
        try:
            arrays.append(np.load(path, mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError, EOFError) as error:
            return _damaged(path, error)
        if arrays[-1].shape != shape:
            logger.warning("%s: shape %s, meta.json says %s: rebuilding", path, arrays[-1].shape, shape)
            return None
    return TeacherCache(directory, *arrays, meta, built=False)


def _damaged(path: Path, error: Exception) -> None:
    logger.warning("%s: damaged teacher cache file (%s): rebuilding", path, " ".join(str(error).split()))


@torch.inference_mode()
def build_teacher_cache(
    directory: Path,
    dataset: ChunkDataset,
    teachers: Sequence[PreTrainedModel],
    cfg: DistillationConfig,
    fingerprint: str,
    *,
    batch_size: int = 128,
    progress: bool = True,
) -> TeacherCache:
    """Run the teachers once over every chunk of `dataset` and store their top-k targets in `directory`.

    Why it is written this way: the corpus is thousands of batches, and a build that reads
    each batch's results back synchronously leaves the device idle while the host copies
    and writes. Here the targets are narrowed on the device (uint16/int32 ids, float16
    log-probs), copied into pinned host buffers without blocking, and written to disk one
    batch later, while the device already computes the next; the top-k mass is summed on
    the device and read once at the end.
    """
    k = cfg.teacher_cache_top_k
    if k is None:
        raise ValueError("distillation.teacher_cache_top_k is not set")
    vocab = teachers[0].get_output_embeddings().weight.size(0)
    shape = (len(dataset), dataset.seq_length, k)
    device = next(teachers[0].parameters()).device
    ids_dtype = np.uint16 if vocab <= 65536 else np.int32
    with atomic_directory(directory) as tmp:
        ids = np.lib.format.open_memmap(tmp / "ids.npy", mode="w+", dtype=ids_dtype, shape=shape)
        log_probs = np.lib.format.open_memmap(tmp / "log_probs.npy", mode="w+", dtype=np.float16, shape=shape)
        staging = _Staging((min(batch_size, len(dataset)), dataset.seq_length, k), ids_dtype, device)
        mass = torch.zeros((), dtype=torch.float64, device=device)
        for start in tqdm(range(0, len(dataset), batch_size), desc="teacher top-k cache", unit="batch",
                          disable=not progress):
            chunks = range(start, min(start + batch_size, len(dataset)))
            input_ids = torch.stack([dataset[i]["input_ids"] for i in chunks]).to(device, non_blocking=True)
            rows = (t(input_ids=input_ids).logits.reshape(-1, vocab) for t in teachers)
            combined = combined_teacher_log_probs(rows, cfg.temperature, cfg.combine)
            top_ids, top_log_probs = top_k_targets(combined, k)
            mass += top_log_probs.exp().sum(dtype=torch.float64)
            floored = top_log_probs.clamp(min=LOG_PROB_FLOOR)
            batch_shape = (len(chunks), dataset.seq_length, k)
            staging.send(start, top_ids.reshape(batch_shape), floored.reshape(batch_shape), ids, log_probs)
        staging.flush(ids, log_probs)
        ids.flush()
        log_probs.flush()
        meta = {
            "format": CACHE_FORMAT, "fingerprint": fingerprint, "shape": list(shape),
            "teachers": [str(t) for t in cfg.teachers], "temperature": cfg.temperature, "combine": cfg.combine,
            "top_k": k, "top_k_mass": round(float(mass) / (shape[0] * shape[1]), 6),
        }
        atomic_write_json(tmp / "meta.json", meta)
        del ids, log_probs
    logger.info("teacher cache %s: %d chunks, top-%d holds %.1f%% of the teachers' mass",
                directory, shape[0], k, 100 * meta["top_k_mass"])
    loaded = load_teacher_cache(directory, fingerprint)
    assert loaded is not None, f"{directory} was just written"
    return dataclasses.replace(loaded, built=True)


class _Staging:
    """Two pinned host buffers: one batch's targets copy in while the previous batch's are written out."""

    def __init__(self, shape: tuple[int, int, int], ids_dtype: type, device: torch.device) -> None:
        pin = device.type == "cuda"
        ids = torch.uint16 if ids_dtype is np.uint16 else torch.int32
        self.buffers = [
            (torch.empty(shape, dtype=ids, pin_memory=pin), torch.empty(shape, dtype=torch.float16, pin_memory=pin))
            for _ in range(2)
        ]
        self.device = device
        self.turn = 0
        self.pending: tuple[Any, int, int, int] | None = None  # (copied event, start, rows, buffer)

    def send(self, start: int, top_ids: torch.Tensor, log_probs: torch.Tensor, ids_out: np.ndarray,
             log_probs_out: np.ndarray) -> None:
        """Start copying one batch to the host; write the previous one (its copy has finished by then)."""
        ids_host, log_probs_host = self.buffers[self.turn]
        n = top_ids.size(0)
        ids_host[:n].copy_(top_ids.to(ids_host.dtype), non_blocking=True)
        log_probs_host[:n].copy_(log_probs.to(torch.float16), non_blocking=True)
        event = torch.cuda.Event() if self.device.type == "cuda" else None
        if event is not None:
            event.record()
        self.flush(ids_out, log_probs_out)
        self.pending = (event, start, n, self.turn)
        self.turn = 1 - self.turn

    def flush(self, ids_out: np.ndarray, log_probs_out: np.ndarray) -> None:
        """Write the batch still in a host buffer (waiting for its copy only, not for later work)."""
        if self.pending is None:
            return
        event, start, n, turn = self.pending
        if event is not None:
            event.synchronize()
        ids_host, log_probs_host = self.buffers[turn]
        ids_out[start:start + n] = ids_host[:n].numpy()
        log_probs_out[start:start + n] = log_probs_host[:n].numpy()
        self.pending = None


def prepare_teacher_cache(
    cfg: DistillationConfig,
    dataset: ChunkDataset,
    tokenizer: PreTrainedTokenizerBase,
    data_cache_dir: Path,
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> TeacherCache:
    """The run's cache: reused when current, else built (teachers loaded, checked, run once, released)."""
    from babykd.teachers import load_teachers  # the teachers are only needed to build

    fingerprint = cache_fingerprint(dataset, cfg)
    directory = Path(cfg.teacher_cache_dir) if cfg.teacher_cache_dir else default_cache_dir(data_cache_dir, fingerprint)
    cache = load_teacher_cache(directory, fingerprint)
    if cache is not None:
        logger.info("teacher cache %s reused (top-%d)", directory, cfg.teacher_cache_top_k)
        return cache
    teachers = [t.to(device=device, dtype=dtype).eval() for t in load_teachers(cfg, tokenizer, dataset.seq_length)]
    return build_teacher_cache(directory, dataset, teachers, cfg, fingerprint)


class CachedTargetsDataset(Dataset):
    """A chunk dataset whose items also carry their cached top-k teacher targets."""

    def __init__(self, dataset: ChunkDataset, cache: TeacherCache) -> None:
        if cache.ids.shape[:2] != (len(dataset), dataset.seq_length):
            raise ValueError(f"cache {cache.directory} has shape {cache.ids.shape}, "
                             f"the dataset {len(dataset)} chunks of {dataset.seq_length}")
        self.dataset = dataset
        self.cache = cache

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """The chunk and its targets in their stored dtypes: the loss widens them on the device (4x fewer bytes)."""
        item = self.dataset[index]
        item[IDS_KEY] = torch.from_numpy(np.array(self.cache.ids[index]))
        item[LOG_PROBS_KEY] = torch.from_numpy(np.array(self.cache.log_probs[index]))
        return item
