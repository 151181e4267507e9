"""Offline KD: the teacher ensemble's soft targets, computed once and reused every epoch.

Why: the training chunks are fixed (no random offset), so the teachers give the
same answer for a chunk every epoch. In the BabyLlama recipe their forwards cost
about 2·(705M + 360M) FLOPs per token against 6·58M for the student's step, most
of every distillation step. One pass of the teachers stores, per chunk and position,
what the KL term needs, in one of two representations (the fidelity table is in
benchmarks/README.md):

- ``teacher_cache_head_inputs: true``, the faithful one: what each teacher's output head
  reads (its last hidden state after the final norm, float16, 2·Σ d_model bytes a position)
  and the heads' weights once (``heads.safetensors``). A step recomputes the teachers'
  logits with one matmul per teacher and trains on the dense KL: the online loss up to
  float16 rounding of the head inputs, without a teacher's blocks. The build checks that
  each teacher's logits are its head applied to that input.
- ``teacher_cache_top_k: K``, the cheap one: the K most likely tokens of the combined
  tempered distribution and their log-probabilities (4·K bytes a position), trained on by
  :func:`babykd.losses.sparse_kl_distillation_loss`, which keeps the remaining mass as one
  "rest" outcome. How the teacher spreads that rest mass is what it loses: at T = 2 a
  teacher's distribution is broad (the top 64 of 4,000 tokens hold about a third of it),
  so the cached KL is another, weaker loss. The build records the mean mass the top K hold
  (``meta.json``: ``top_k_mass``).

On disk (memory-mapped ``.npy``, ``N_chunks × seq_length × width`` each): ``head_inputs``, or
``ids`` (uint16 when the vocabulary fits, else int32) and ``log_probs`` (float16, floored at a finite
:data:`LOG_PROB_FLOOR`); ``filled.npy`` (which chunks hold targets), ``meta.json`` (written after
the data). Only the chunks a run will read are computed (a 1,000-step run of 32 chunks reads 32,000
of the corpus's ~108,000); a later run that shares the cache (another seed, arm or grid point:
the same fingerprint) adds the chunks it reads that are not there yet, under a lock, and every
build's cost is logged and kept in ``meta.json``. The default directory name carries a fingerprint of
everything the targets depend on (token stream, chunking, teacher weights,
config and tokenizer, temperature, combination, representation), so changing any of them builds a new cache
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
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from babykd.run.atomic import atomic_directory, atomic_write_bytes, atomic_write_json
from babykd.config import DistillationConfig
from babykd.data.dataset import ChunkDataset
from babykd.losses import combined_teacher_log_probs, top_k_targets
from babykd.run.lock import folder_lock

logger = logging.getLogger(__name__)

CACHE_FORMAT = 5  # 5: named arrays (head inputs); 4: filled per chunk; 3 all or nothing; 2 -inf; 1 renormalised
#: Floor of a stored log-prob: float16's most negative finite value. The combined teachers give a
#: masked vocabulary entry float32's floor (-3.4e38), which is -inf in float16, and the loss's
#: q·log q is then 0·(−inf) = NaN. Floored, the entry keeps q = exp(floor) = 0 and a finite log q.
LOG_PROB_FLOOR = float(torch.finfo(torch.float16).min)
#: Batch keys the cached targets travel under (the trainer reads them, the model never sees them).
IDS_KEY = "teacher_top_ids"
LOG_PROBS_KEY = "teacher_top_log_probs"
HEAD_INPUTS_KEY = "teacher_head_inputs"
#: The batch key each stored array travels under, by array name.
BATCH_KEYS = {"ids": IDS_KEY, "log_probs": LOG_PROBS_KEY, "head_inputs": HEAD_INPUTS_KEY}
#: The teachers' output heads of a head-input cache (safetensors: weight.<i>, bias.<i>; nothing to unpickle).
HEADS_FILE = "heads.safetensors"
#: How far a teacher's logits may be from its head applied to the captured input (same precision) before
#: the build refuses it: a soft-cap or a scale after the head would make the cache another teacher.
HEAD_CHECK_TOLERANCE = 1e-3
#: Which chunks of the cache hold targets (a bool per chunk).
FILLED_FILE = "filled.npy"
#: Weight files whose size and modification time identify a teacher checkpoint (hashing GBs at every start is slow).
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
#: The small files that say what the weights compute and which tokens they read: identified by their content.
DEFINITION_PATTERNS = ("config.json", "tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab*",
                       "merges.txt", "*.model")


@dataclass(frozen=True)
class StoredArray:
    """One per-position array of a cache: its file stem (a key of :data:`BATCH_KEYS`), width per position, dtype."""

    name: str
    width: int
    dtype: type


def cache_layout(cfg: DistillationConfig, teachers: Sequence[PreTrainedModel]) -> tuple[StoredArray, ...]:
    """The arrays a cache of `cfg`'s representation holds for these teachers."""
    if cfg.teacher_cache_head_inputs:
        width = sum(output_head(t).in_features for t in teachers)
        return (StoredArray("head_inputs", width, np.float16),)
    k = cfg.teacher_cache_top_k
    if k is None:
        raise ValueError("no teacher cache configured (distillation.teacher_cache_top_k / teacher_cache_head_inputs)")
    vocab = output_head(teachers[0]).out_features
    return (StoredArray("ids", k, np.uint16 if vocab <= 65536 else np.int32), StoredArray("log_probs", k, np.float16))


def layout_bytes(layout: Sequence[StoredArray]) -> int:
    """What a cache of this layout stores per position (each array's width times its dtype's size)."""
    return sum(a.width * np.dtype(a.dtype).itemsize for a in layout)


def output_head(teacher: PreTrainedModel) -> nn.Linear:
    """The teacher's output head (its logits are this layer applied to its last hidden state)."""
    head = teacher.get_output_embeddings()
    if not isinstance(head, nn.Linear):
        raise ValueError(f"{type(teacher).__name__}'s output head is {type(head).__name__}, not a linear layer: "
                         "its logits cannot be cached as head inputs (use distillation.teacher_cache_top_k)")
    return head


@dataclass(frozen=True)
class TeacherCache:
    """A loaded cache: ``arrays`` are ``[N_chunks, seq_length, width]`` memory maps, by name."""

    directory: Path
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    built: bool
    #: ``[N_chunks]`` bools: which chunks hold targets.
    filled: np.ndarray

    @property
    def ids(self) -> np.ndarray:
        """A top-k cache's token ids."""
        return self.arrays["ids"]

    @property
    def log_probs(self) -> np.ndarray:
        """A top-k cache's log-probabilities."""
        return self.arrays["log_probs"]

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
        f"{cfg.temperature}\0{cfg.combine}\0{cfg.teacher_cache_top_k}\0{cfg.teacher_cache_head_inputs}\0".encode()
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
        if meta.get("fingerprint") != fingerprint:
            logger.warning("%s holds targets of other teachers, data or settings: rebuilding", directory)
            return None
        expected = {f"{name}.npy": (*meta["shape"], width) for name, width in meta["arrays"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return _damaged(meta_path, error)
    loaded = {}
    for file, shape in {**expected, FILLED_FILE: tuple(meta["shape"][:1])}.items():
        path = directory / file
        try:
            loaded[file] = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            return _damaged(path, error)
        if loaded[file].shape != shape:
            logger.warning("%s: shape %s, meta.json says %s: rebuilding", path, loaded[file].shape, shape)
            return None
    filled = np.array(loaded.pop(FILLED_FILE), dtype=bool)
    arrays = {file.removesuffix(".npy"): array for file, array in loaded.items()}
    return TeacherCache(directory, arrays, meta, built=False, filled=filled)


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
    """Run the teachers over the `chunks` of `dataset` (default: all) that `cache` lacks; store their targets.

    Why it is written this way: the corpus is thousands of batches, and a build that reads
    each batch's results back synchronously leaves the device idle while the host copies
    and writes. Here the targets are narrowed on the device (uint16/int32 ids, float16
    log-probs or head inputs), copied into pinned host buffers without blocking, and written to disk one
    batch later, while the device already computes the next; the top-k mass is summed on
    the device and read once at the end. `filled.npy` and `meta.json` are replaced after the
    data is flushed, so a build killed half-way leaves chunks that are simply built again.
    """
    directory, layout = cache.directory, cache_layout(cfg, teachers)
    wanted = chunks_asked(dataset, chunks)
    missing = cache.missing(wanted)
    if missing.size == 0:
        return cache
    started = time.perf_counter()
    device = next(teachers[0].parameters()).device
    outputs = {a.name: np.load(directory / f"{a.name}.npy", mmap_mode="r+") for a in layout}
    staging = _Staging(layout, (min(batch_size, missing.size), dataset.seq_length), device)
    mass = torch.zeros((), dtype=torch.float64, device=device)
    encode = head_inputs_batch if cfg.teacher_cache_head_inputs else _top_k
    for start in tqdm(range(0, missing.size, batch_size), desc="teacher cache", unit="batch",
                      disable=not progress):
        batch = missing[start:start + batch_size]
        input_ids = torch.stack([dataset[int(i)]["input_ids"] for i in batch]).to(device, non_blocking=True)
        arrays, batch_mass = encode(teachers, input_ids, cfg, check=start == 0)
        mass += batch_mass
        staging.send(batch, arrays, outputs)
    staging.flush(outputs)
    for array in outputs.values():
        array.flush()
    del outputs
    filled = cache.filled.copy()
    filled[missing] = True
    atomic_write_bytes(directory / FILLED_FILE, _npy_bytes(filled))
    seconds = time.perf_counter() - started
    meta = _meta_after_build(cache.meta, float(mass), int(missing.size) * dataset.seq_length, int(missing.size),
                             int(wanted.size), seconds)
    atomic_write_json(directory / "meta.json", meta)
    logger.info("teacher cache %s: built %d chunks (of the %d asked for, %d in the corpus) in %.0f s; "
                "%s holds %.1f%% of the teachers' mass", directory, missing.size, wanted.size, len(dataset),
                seconds, describe(cfg), 100 * meta["top_k_mass"])
    loaded = load_teacher_cache(directory, meta["fingerprint"])
    assert loaded is not None, f"{directory} was just written"
    return dataclasses.replace(loaded, built=True)


def describe(cfg: DistillationConfig) -> str:
    """The representation in a few words, for the logs."""
    return "the head-input cache" if cfg.teacher_cache_head_inputs else f"top-{cfg.teacher_cache_top_k}"


def _top_k(teachers: Sequence[PreTrainedModel], input_ids: torch.Tensor, cfg: DistillationConfig, *,
           check: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One batch's top-k ids and floored log-probs of the combined teachers, and the mass they hold.

    (`check` is the encoders' shared signature: top-k targets of any teacher are what they are.)
    """
    vocab = output_head(teachers[0]).out_features
    rows = (t(input_ids=input_ids).logits.reshape(-1, vocab) for t in teachers)
    combined = combined_teacher_log_probs(rows, cfg.temperature, cfg.combine)
    assert cfg.teacher_cache_top_k is not None
    top_ids, top_log_probs = top_k_targets(combined, cfg.teacher_cache_top_k)
    shape = (*input_ids.shape, cfg.teacher_cache_top_k)
    arrays = {"ids": top_ids.reshape(shape), "log_probs": top_log_probs.clamp(min=LOG_PROB_FLOOR).reshape(shape)}
    return arrays, top_log_probs.exp().sum(dtype=torch.float64)


def head_inputs_batch(teachers: Sequence[PreTrainedModel], input_ids: torch.Tensor, cfg: DistillationConfig, *,
                      check: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One batch's head inputs of every teacher, side by side; they hold all the mass (one per position).

    Only the teachers' bodies run (`base_model`): the vocabulary-wide logits are what the cache
    exists not to store, so they are not computed either. With `check` (the first batch of a
    build), the full model runs once with a hook on its head, and both links are verified: the
    body's output is what the head reads, and the logits are the head applied to it. A model that
    transforms its logits after the head is refused, not cached wrongly.
    """
    captured = [_checked_head_input(t, input_ids) if check else t.base_model(input_ids=input_ids).last_hidden_state
                for t in teachers]
    return {"head_inputs": torch.cat(captured, dim=-1)}, torch.full((), float(input_ids.numel()),
                                                                     dtype=torch.float64, device=input_ids.device)


def _checked_head_input(teacher: PreTrainedModel, input_ids: torch.Tensor) -> torch.Tensor:
    """What `teacher`'s output head reads for `input_ids`, verified against its logits and its body's output.

    One forward: hooks capture the body's output and the head's input as the full model computes them.
    """
    head = output_head(teacher)
    seen: list[torch.Tensor] = []
    bodies: list[torch.Tensor] = []
    body = getattr(teacher, "base_model", None)
    hooks = [head.register_forward_pre_hook(lambda module, args: seen.append(args[0]))]
    if body is not None:
        hooks.append(body.register_forward_hook(lambda module, args, output: bodies.append(output.last_hidden_state)))
    try:
        logits = teacher(input_ids=input_ids).logits
    finally:
        for hook in hooks:
            hook.remove()
    _check_head(teacher, head(seen[0]), logits)
    if not bodies or not _relative_difference(bodies[0], seen[0]) <= HEAD_CHECK_TOLERANCE:
        why = "it has no base_model to run alone" if not bodies else \
            "its body's last hidden state is not what its output head reads"
        raise ValueError(f"teacher {getattr(teacher, 'name_or_path', type(teacher).__name__)}: {why}, so its head "
                         "inputs cannot be cached from the body: use distillation.teacher_cache_top_k")
    return seen[0]


def _relative_difference(expected: torch.Tensor, actual: torch.Tensor) -> float:
    """Largest absolute difference over the largest magnitude (at least 1); not finite for a masked -inf."""
    return float((expected - actual).abs().amax() / expected.abs().amax().clamp(min=1.0))


def _check_head(teacher: PreTrainedModel, recomputed: torch.Tensor, logits: torch.Tensor) -> None:
    error = _relative_difference(recomputed, logits)
    if not error <= HEAD_CHECK_TOLERANCE:  # also a masked (-inf) logit: the difference is not finite
        raise ValueError(
            f"teacher {getattr(teacher, 'name_or_path', type(teacher).__name__)}: its logits are not its output "
            f"head applied to the head's input (relative difference {error:.2g}: a soft-cap or scale after the "
            "head?), so they cannot be cached as head inputs: use distillation.teacher_cache_top_k"
        )


def chunks_asked(dataset: ChunkDataset, chunks: np.ndarray | None) -> np.ndarray:
    """The sorted distinct chunk indices a build is asked for (None: every chunk of `dataset`)."""
    return np.arange(len(dataset)) if chunks is None else np.unique(np.asarray(chunks, dtype=np.int64))


def empty_cache(directory: Path, dataset: ChunkDataset, cfg: DistillationConfig, fingerprint: str,
                teachers: Sequence[PreTrainedModel]) -> TeacherCache:
    """A cache of the corpus's shape with no chunk filled (sparse files: unfilled chunks take no disk).

    A head-input cache also gets the teachers' heads, so that training never loads a teacher.
    """
    layout = cache_layout(cfg, teachers)
    shape = (len(dataset), dataset.seq_length)
    with atomic_directory(directory) as tmp:
        for array in layout:
            np.lib.format.open_memmap(tmp / f"{array.name}.npy", mode="w+", dtype=array.dtype,
                                      shape=(*shape, array.width)).flush()
        if cfg.teacher_cache_head_inputs:
            save_heads(tmp / HEADS_FILE, teachers)
        atomic_write_bytes(tmp / FILLED_FILE, _npy_bytes(np.zeros(len(dataset), dtype=bool)))
        atomic_write_json(tmp / "meta.json", {
            "format": CACHE_FORMAT, "fingerprint": fingerprint, "shape": list(shape),
            "arrays": {array.name: array.width for array in layout}, "bytes_per_position": layout_bytes(layout),
            "teachers": [str(t) for t in cfg.teachers], "temperature": cfg.temperature, "combine": cfg.combine,
            "top_k": cfg.teacher_cache_top_k, "head_inputs": cfg.teacher_cache_head_inputs,
            "top_k_mass": None, "mass_sum": 0.0, "positions": 0, "builds": [],
        })
    loaded = load_teacher_cache(directory, fingerprint)
    assert loaded is not None, f"{directory} was just written"
    return loaded


def save_heads(path: Path, teachers: Sequence[PreTrainedModel]) -> None:
    """Each teacher's output head in one safetensors file."""
    save_file(head_tensors(teachers), str(path))


def head_tensors(teachers: Sequence[PreTrainedModel]) -> dict[str, torch.Tensor]:
    """Each teacher's output head as float32 tensors: ``weight.<i>``, and ``bias.<i>`` if it has one."""
    tensors = {}
    for index, teacher in enumerate(teachers):
        head = output_head(teacher)
        tensors[f"weight.{index}"] = head.weight.detach().float().cpu().contiguous()
        if head.bias is not None:
            tensors[f"bias.{index}"] = head.bias.detach().float().cpu().contiguous()
    return tensors


class CachedHeads(nn.Module):
    """The teachers' output heads of a head-input cache: a batch's stored head inputs back to teacher logits.

    The logits are computed in float32 from the float16 inputs, as the live teachers give them on a CPU; the
    dense KL then reads them as it reads the live teachers' (`babykd.losses.kl_distillation_loss`).
    """

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        count = sum(1 for name in tensors if name.startswith("weight."))
        self.heads = nn.ModuleList()
        for index in range(count):
            weight, bias = tensors[f"weight.{index}"], tensors.get(f"bias.{index}")
            head = nn.Linear(weight.size(1), weight.size(0), bias=bias is not None)
            head.weight.data.copy_(weight)
            if bias is not None:
                head.bias.data.copy_(bias)
            self.heads.append(head)
        self.requires_grad_(False)

    @classmethod
    def load(cls, path: Path) -> "CachedHeads":
        """The heads a head-input cache saved (:data:`HEADS_FILE`)."""
        return cls(load_file(str(path)))

    def forward(self, head_inputs: torch.Tensor) -> list[torch.Tensor]:
        """``[B, L, Σd]`` stored inputs → one ``[B, L, V]`` float32 logits tensor per teacher."""
        widths = [head.in_features for head in self.heads]
        if head_inputs.size(-1) != sum(widths):
            raise ValueError(f"head inputs of width {head_inputs.size(-1)}, the cached heads read {sum(widths)}")
        parts = head_inputs.split(widths, dim=-1)
        return [head(part.to(head.weight.dtype)) for head, part in zip(self.heads, parts)]


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


_TORCH_DTYPES = {np.uint16: torch.uint16, np.int32: torch.int32, np.float16: torch.float16}


class _Staging:
    """Two pinned host buffers per array: one batch's targets copy in while the previous batch's are written out."""

    def __init__(self, layout: Sequence[StoredArray], shape: tuple[int, int], device: torch.device) -> None:
        pin = device.type == "cuda"
        self.buffers = [
            {a.name: torch.empty((*shape, a.width), dtype=_TORCH_DTYPES[a.dtype], pin_memory=pin) for a in layout}
            for _ in range(2)
        ]
        self.device = device
        self.turn = 0
        self.pending: tuple[Any, np.ndarray, int] | None = None  # (copied event, chunk indices, buffer)

    def send(self, chunks: np.ndarray, arrays: dict[str, torch.Tensor], outputs: dict[str, np.ndarray]) -> None:
        """Start copying one batch to the host; write the previous one (its copy has finished by then)."""
        buffers = self.buffers[self.turn]
        for name, values in arrays.items():
            host = buffers[name]
            host[:values.size(0)].copy_(values.to(host.dtype), non_blocking=True)
        event = torch.cuda.Event() if self.device.type == "cuda" else None
        if event is not None:
            event.record()
        self.flush(outputs)
        self.pending = (event, chunks, self.turn)
        self.turn = 1 - self.turn

    def flush(self, outputs: dict[str, np.ndarray]) -> None:
        """Write the batch still in a host buffer (waiting for its copy only, not for later work)."""
        if self.pending is None:
            return
        event, chunks, turn = self.pending
        if event is not None:
            event.synchronize()
        for name, host in self.buffers[turn].items():
            outputs[name][chunks] = host[:len(chunks)].numpy()
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
            logger.info("teacher cache %s reused (%s, the %d chunks this run reads)", directory,
                        describe(cfg), wanted.size)
            return cache
        teachers = [t.to(device=device, dtype=dtype).eval()
                    for t in load_teachers(cfg, tokenizer, dataset.seq_length)]
        cache = cache or empty_cache(directory, dataset, cfg, fingerprint, teachers)
        return fill_teacher_cache(cache, dataset, teachers, cfg, wanted)


class CachedTargetsDataset(Dataset):
    """A chunk dataset whose items also carry their cached teacher targets (under each array's batch key)."""

    def __init__(self, dataset: ChunkDataset, cache: TeacherCache) -> None:
        for name, array in cache.arrays.items():
            if array.shape[:2] != (len(dataset), dataset.seq_length):
                raise ValueError(f"cache {cache.directory} has {name} of shape {array.shape}, "
                                 f"the dataset {len(dataset)} chunks of {dataset.seq_length}")
        self.dataset = dataset
        self.cache = cache
        self.keys = {name: BATCH_KEYS[name] for name in cache.arrays}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """The chunk and its targets in their stored dtypes: the loss widens them on the device (fewer bytes)."""
        if not self.cache.filled[index]:
            raise RuntimeError(f"chunk {index} has no targets in {self.cache.directory}: the cache was built for "
                               "the chunks of another run length or seed (prepare_teacher_cache's chunks)")
        item = self.dataset[index]
        for name, key in self.keys.items():
            item[key] = torch.from_numpy(np.array(self.cache.arrays[name][index]))
        return item
