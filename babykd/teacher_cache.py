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
:data:`LOG_PROB_FLOOR`), ``filled.npy`` (which chunks hold targets), ``meta.json`` (written after
the data). Only the chunks a run will read are computed (a 1,000-step run of 32 chunks reads 32,000
of the corpus's ~108,000); a later run that shares the cache (another seed, arm or grid point:
the same fingerprint) adds the chunks it reads that are not there yet, under a lock, and every
build's cost is logged and kept in ``meta.json``. The default directory name carries a fingerprint of
everything the targets depend on (token stream, chunking, teacher weights,
config and tokenizer, temperature, combination, K), so changing any of them builds a new cache
instead of silently reusing a stale one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from babykd.run.atomic import atomic_directory, atomic_write_bytes, atomic_write_json
from babykd.config import DistillationConfig
from babykd.data.dataset import ChunkDataset
from babykd.losses import combined_teacher_log_probs, top_k_targets
from babykd.run.lock import folder_lock

logger = logging.getLogger(__name__)

CACHE_FORMAT = 4  # 4: filled per chunk (3 was all or nothing; 2 could hold -inf; 1 renormalised over the top K)
#: Floor of a stored log-prob: float16's most negative finite value. The combined teachers give a
#: masked vocabulary entry float32's floor (-3.4e38), which is -inf in float16, and the loss's
#: q·log q is then 0·(−inf) = NaN. Floored, the entry keeps q = exp(floor) = 0 and a finite log q.
LOG_PROB_FLOOR = float(torch.finfo(torch.float16).min)
#: Batch keys the cached targets travel under (the trainer reads them, the model never sees them).
IDS_KEY = "teacher_top_ids"
LOG_PROBS_KEY = "teacher_top_log_probs"
#: Which chunks of the cache hold targets (a bool per chunk).
FILLED_FILE = "filled.npy"
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
    #: ``[N_chunks]`` bools: which chunks hold targets.
    filled: np.ndarray

    def missing(self, chunks: np.ndarray) -> np.ndarray:
        """The chunks of `chunks` whose targets are not in the cache yet."""
        return chunks[~self.filled[chunks]]


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
    for path, expected in ((directory / "ids.npy", shape), (directory / "log_probs.npy", shape),
                           (directory / FILLED_FILE, shape[:1])):
        try:
            arrays.append(np.load(path, mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError, EOFError) as error:
            return _damaged(path, error)
        if arrays[-1].shape != expected:
            logger.warning("%s: shape %s, meta.json says %s: rebuilding", path, arrays[-1].shape, expected)
            return None
    ids, log_probs, filled = arrays
    return TeacherCache(directory, ids, log_probs, meta, built=False, filled=np.array(filled, dtype=bool))


def _damaged(path: Path, error: Exception) -> None:
    logger.warning("%s: damaged teacher cache file (%s): rebuilding", path, " ".join(str(error).split()))


def build_teacher_cache(
    directory: Path,
    dataset: ChunkDataset,
    teachers: Sequence[PreTrainedModel],
    cfg: DistillationConfig,
    fingerprint: str,
    *,
    chunks: np.ndarray | None = None,
    batch_size: int = 128,
    progress: bool = True,
) -> TeacherCache:
    """The cache in `directory` (created when absent) with the targets of `chunks` (default: all) filled."""
    cache = load_teacher_cache(directory, fingerprint) or empty_cache(directory, dataset, cfg, fingerprint, teachers)
    return fill_teacher_cache(cache, dataset, teachers, cfg, chunks, batch_size=batch_size, progress=progress)


@torch.inference_mode()
def fill_teacher_cache(
    cache: TeacherCache,
    dataset: ChunkDataset,
    teachers: Sequence[PreTrainedModel],
    cfg: DistillationConfig,
    chunks: np.ndarray | None = None,
    *,
    batch_size: int = 128,
    progress: bool = True,
) -> TeacherCache:
    """Run the teachers over the `chunks` of `dataset` (default: all) that `cache` lacks; store their top-k targets.

    Why it is written this way: the corpus is thousands of batches, and a build that reads
    each batch's results back synchronously leaves the device idle while the host copies
    and writes. Here the targets are narrowed on the device (uint16/int32 ids, float16
    log-probs), copied into pinned host buffers without blocking, and written to disk one
    batch later, while the device already computes the next; the top-k mass is summed on
    the device and read once at the end. `filled.npy` and `meta.json` are replaced after the
    data is flushed, so a build killed half-way leaves chunks that are simply built again.
    """
    k = cfg.teacher_cache_top_k
    assert k is not None, "distillation.teacher_cache_top_k is not set"
    directory, vocab = cache.directory, teachers[0].get_output_embeddings().weight.size(0)
    wanted = chunks_asked(dataset, chunks)
    missing = cache.missing(wanted)
    if missing.size == 0:
        return cache
    started = time.perf_counter()
    device = next(teachers[0].parameters()).device
    ids = np.load(directory / "ids.npy", mmap_mode="r+")
    log_probs = np.load(directory / "log_probs.npy", mmap_mode="r+")
    staging = _Staging((min(batch_size, missing.size), dataset.seq_length, k), ids.dtype.type, device)
    mass = torch.zeros((), dtype=torch.float64, device=device)
    for start in tqdm(range(0, missing.size, batch_size), desc="teacher top-k cache", unit="batch",
                      disable=not progress):
        batch = missing[start:start + batch_size]
        input_ids = torch.stack([dataset[int(i)]["input_ids"] for i in batch]).to(device, non_blocking=True)
        rows = (t(input_ids=input_ids).logits.reshape(-1, vocab) for t in teachers)
        combined = combined_teacher_log_probs(rows, cfg.temperature, cfg.combine)
        top_ids, top_log_probs = top_k_targets(combined, k)
        mass += top_log_probs.exp().sum(dtype=torch.float64)
        floored = top_log_probs.clamp(min=LOG_PROB_FLOOR)
        batch_shape = (len(batch), dataset.seq_length, k)
        staging.send(batch, top_ids.reshape(batch_shape), floored.reshape(batch_shape), ids, log_probs)
    staging.flush(ids, log_probs)
    ids.flush()
    log_probs.flush()
    del ids, log_probs
    filled = cache.filled.copy()
    filled[missing] = True
    atomic_write_bytes(directory / FILLED_FILE, _npy_bytes(filled))
    seconds = time.perf_counter() - started
    meta = _meta_after_build(cache.meta, float(mass), int(missing.size) * dataset.seq_length, int(missing.size),
                             int(wanted.size), seconds)
    atomic_write_json(directory / "meta.json", meta)
    logger.info("teacher cache %s: built %d chunks (of the %d asked for, %d in the corpus) in %.0f s; "
                "top-%d holds %.1f%% of the teachers' mass", directory, missing.size, wanted.size, len(dataset),
                seconds, k, 100 * meta["top_k_mass"])
    loaded = load_teacher_cache(directory, meta["fingerprint"])
    assert loaded is not None, f"{directory} was just written"
    return dataclasses.replace(loaded, built=True)


def chunks_asked(dataset: ChunkDataset, chunks: np.ndarray | None) -> np.ndarray:
    """The sorted distinct chunk indices a build is asked for (None: every chunk of `dataset`)."""
    return np.arange(len(dataset)) if chunks is None else np.unique(np.asarray(chunks, dtype=np.int64))


def empty_cache(directory: Path, dataset: ChunkDataset, cfg: DistillationConfig, fingerprint: str,
                teachers: Sequence[PreTrainedModel]) -> TeacherCache:
    """A cache of the corpus's shape with no chunk filled (sparse files: unfilled chunks take no disk)."""
    k = cfg.teacher_cache_top_k
    if k is None:
        raise ValueError("distillation.teacher_cache_top_k is not set")
    vocab = teachers[0].get_output_embeddings().weight.size(0)
    shape = (len(dataset), dataset.seq_length, k)
    with atomic_directory(directory) as tmp:
        for name, dtype in (("ids.npy", np.uint16 if vocab <= 65536 else np.int32), ("log_probs.npy", np.float16)):
            np.lib.format.open_memmap(tmp / name, mode="w+", dtype=dtype, shape=shape).flush()
        atomic_write_bytes(tmp / FILLED_FILE, _npy_bytes(np.zeros(len(dataset), dtype=bool)))
        atomic_write_json(tmp / "meta.json", {
            "format": CACHE_FORMAT, "fingerprint": fingerprint, "shape": list(shape),
            "teachers": [str(t) for t in cfg.teachers], "temperature": cfg.temperature, "combine": cfg.combine,
            "top_k": k, "top_k_mass": None, "mass_sum": 0.0, "positions": 0, "builds": [],
        })
    loaded = load_teacher_cache(directory, fingerprint)
    assert loaded is not None, f"{directory} was just written"
    return loaded


def _meta_after_build(meta: dict[str, Any], mass: float, positions: int, built: int, asked: int,
                      seconds: float) -> dict[str, Any]:
    """`meta` with one more build: the mean top-k mass over every filled position, and the build's cost."""
    mass_sum, total_positions = meta["mass_sum"] + mass, meta["positions"] + positions
    return {**meta, "mass_sum": mass_sum, "positions": total_positions,
            "top_k_mass": round(mass_sum / total_positions, 6),
            "builds": [*meta["builds"], {"chunks_built": built, "chunks_asked": asked, "seconds": round(seconds, 1)}]}


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


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
        self.pending: tuple[Any, np.ndarray, int] | None = None  # (copied event, chunk indices, buffer)

    def send(self, chunks: np.ndarray, top_ids: torch.Tensor, log_probs: torch.Tensor, ids_out: np.ndarray,
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
        self.pending = (event, chunks, self.turn)
        self.turn = 1 - self.turn

    def flush(self, ids_out: np.ndarray, log_probs_out: np.ndarray) -> None:
        """Write the batch still in a host buffer (waiting for its copy only, not for later work)."""
        if self.pending is None:
            return
        event, chunks, turn = self.pending
        if event is not None:
            event.synchronize()
        ids_host, log_probs_host = self.buffers[turn]
        n = len(chunks)
        ids_out[chunks] = ids_host[:n].numpy()
        log_probs_out[chunks] = log_probs_host[:n].numpy()
        self.pending = None


def prepare_teacher_cache(
    cfg: DistillationConfig,
    dataset: ChunkDataset,
    tokenizer: PreTrainedTokenizerBase,
    data_cache_dir: Path,
    device: torch.device,
    dtype: torch.dtype | None = None,
    chunks: np.ndarray | None = None,
) -> TeacherCache:
    """The run's cache holding the targets of `chunks` (default: all): reused, completed, or built.

    The teachers are loaded, checked and run only when some of those chunks are missing, under a
    lock, so two runs sharing a cache build each chunk once.
    """
    from babykd.teachers import load_teachers  # the teachers are only needed to build

    fingerprint = cache_fingerprint(dataset, cfg)
    directory = Path(cfg.teacher_cache_dir) if cfg.teacher_cache_dir else default_cache_dir(data_cache_dir, fingerprint)
    wanted = chunks_asked(dataset, chunks)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(directory.parent, wait=True, purpose="another run building this teacher cache",
                     lock_file=f".{directory.name}.lock"):
        cache = load_teacher_cache(directory, fingerprint)
        if cache is not None and cache.missing(wanted).size == 0:
            logger.info("teacher cache %s reused (top-%d, the %d chunks this run reads)", directory,
                        cfg.teacher_cache_top_k, wanted.size)
            return cache
        teachers = [t.to(device=device, dtype=dtype).eval()
                    for t in load_teachers(cfg, tokenizer, dataset.seq_length)]
        cache = cache or empty_cache(directory, dataset, cfg, fingerprint, teachers)
        return fill_teacher_cache(cache, dataset, teachers, cfg, wanted)


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
        if not self.cache.filled[index]:
            raise RuntimeError(f"chunk {index} has no targets in {self.cache.directory}: the cache was built for "
                               "the chunks of another run length or seed (prepare_teacher_cache's chunks)")
        item = self.dataset[index]
        item[IDS_KEY] = torch.from_numpy(np.array(self.cache.ids[index]))
        item[LOG_PROBS_KEY] = torch.from_numpy(np.array(self.cache.log_probs[index]))
        return item
