"""Batched log-likelihoods with the exact arithmetic of the official BabyLM 2024 pipeline.

The official pipeline is lm-evaluation-harness (``multiple_choice`` tasks,
``acc`` metric). What this module reproduces, rule by rule:

* Requests (``TemplateLM.loglikelihood`` / ``_encode_pair``): each choice is the
  continuation ``" " + choice`` (the harness's target delimiter). With an empty
  context the input is ``[prefix] + encode(continuation)``, where the prefix is
  the tokenizer's BOS id (else EOS, else pad). Otherwise trailing spaces of the
  context move to the continuation, ``context + continuation`` is encoded whole,
  and the continuation tokens are the whole encoding minus the first
  ``len(encode(context))`` tokens; the input is ``encode(context)`` followed by
  them. No special tokens are added; sequences longer than the model's
  context are left-truncated to ``max_length + 1`` tokens.
* Score of a choice: the sum of the log-softmax of the continuation tokens
  (no length normalisation), in fp32 by default.
* ``acc`` of an item: ``argmax`` over [correct, wrong] picks index 0 on an exact
  tie, so a tie counts as correct (ties are counted and reported).
* Subtask stderr: ``mean_stderr`` (sample std with ``n - 1``, over ``sqrt(n)``).
* Task score: ``aggregate_subtask_metrics(weight_by_size=False)``, the
  unweighted mean over subtasks; task stderr: ``pooled_sample_stderr``
  (``lm_eval/api/metrics.py``), which the 2024 pipeline's evaluator uses for
  groups even when the mean is unweighted.

What is ours: requests are de-duplicated, sorted by length and packed into
batches by a token budget, one forward pass per batch. Right padding is masked
and every real position attends only to real earlier positions, so padding
never changes a real log-prob; the LM head runs only at the scored positions
(`logits_at`). The 2025 protocol packs shared prefixes instead (`prefix_scorer`).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from babykd.evaluation.request import Request
from babykd.evaluation.request_cache import cached_requests
from babykd.evaluation.tasks import DEFAULT_TASKS, Item, Task, load_tasks
from babykd.run.provenance import provenance

#: The harness's `target_delimiter`: prepended to every choice.
TARGET_DELIMITER = " "
#: Evaluation precisions: fp32 matches the official numbers; bf16 is an opt-in speed mode (autocast).
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}
#: The harness's fallback when neither the model config nor the tokenizer gives a context length.
_DEFAULT_MAX_LENGTH = 2048


def prefix_token_id(tokenizer: Any) -> int:
    """The token an empty context is replaced by (the harness's `prefix_token_id`)."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id):
        if token_id is not None:
            return int(token_id)
    raise ValueError("the tokenizer has no BOS, EOS or pad token to condition an empty context on")


def max_sequence_length(model: torch.nn.Module, tokenizer: Any) -> int:
    """The model's context length, looked up as the harness's `HFLM.max_length` does."""
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        if hasattr(model.config, attr):
            return int(getattr(model.config, attr))
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit is not None and limit < 1e29 else _DEFAULT_MAX_LENGTH


def _encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """`tokenizer.encode(text, add_special_tokens=False)` for many texts in one (parallel) call."""
    return list(tokenizer(list(texts), add_special_tokens=False)["input_ids"]) if texts else []


def item_pairs(items: Iterable[Item]) -> list[tuple[str, str]]:
    """(context, continuation) of every choice, correct then wrong, as the harness builds them."""
    return [
        (item.context, TARGET_DELIMITER + choice) for item in items for choice in (item.correct, item.wrong)
    ]


def encode_requests(
    tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int, origins: Sequence[str] | None = None
) -> list[Request]:
    """Tokenize (context, continuation) pairs exactly as `TemplateLM.loglikelihood` does.

    `origins` (file:line of each pair) name an over-long choice instead of quoting it whole.
    """
    prefix = prefix_token_id(tokenizer)
    split = []
    for context, continuation in pairs:
        if context:
            n_spaces = len(context) - len(context.rstrip())
            if n_spaces:
                context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        split.append((context, continuation))
    # Only the texts the harness encodes: the continuation alone for an empty context,
    # else the whole string and the (stripped) context; contexts repeat, so encode each once.
    contexts = sorted({c for c, _ in split if c})
    context_ids = dict(zip(contexts, _encode(tokenizer, contexts)))
    encoded = _encode(tokenizer, [c + cont if c else cont for c, cont in split])
    requests = []
    for i, ((context, continuation), (raw_context, _), ids) in enumerate(zip(split, pairs, encoded)):
        if raw_context:
            ctx = context_ids.get(context, [])
            if not ctx:
                raise ValueError(f"context {raw_context!r} encodes to no tokens")
            cont = ids[len(ctx):]
        else:
            ctx, cont = [prefix], ids
        if not cont:
            raise ValueError(f"continuation {continuation!r} (context {raw_context!r}) encodes to no tokens")
        if len(cont) > max_length:
            what = origins[i] if origins and origins[i] else f"continuation {continuation!r}"
            raise ValueError(f"{what}: a choice of {len(cont)} tokens is longer than the model's {max_length} positions")
        requests.append(Request(tuple((ctx + cont)[-(max_length + 1):]), len(cont)))
    return requests


def default_batch_tokens(model: torch.nn.Module, device: torch.device) -> int:
    """A token budget per batch: on GPU, fp32 logits of about 2 GiB; on CPU, 512 tokens, as measured.

    CPU: `bench_evaluation.py --batch-plan` and an interleaved A/B in one process (2026-12-03, 1
    thread, 2-core VM loaded by other jobs) put 512 within noise of the best of 256-16384 tokens
    for a 0.8M and a 44M Llama on BLiMP/EWoK requests (1024: 0.94x and 0.90x of its speed; 2048:
    0.89x and 0.64x; larger budgets pad more and leave the cache). One constant keeps the batch
    plan, and so the float rounding of every score, the same from run to run.
    """
    if device.type != "cuda":
        return 512
    return int(min(65536, max(1024, 2**31 // (4 * model.config.vocab_size))))


def split_sizes(values: Sequence[Any], sizes: Sequence[int]) -> list[Sequence[Any]]:
    """Consecutive slices of `values` of the given sizes (a flat score array back into items)."""
    bounds = np.cumsum([0, *sizes])
    return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def plan_batches(lengths: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Indices of each batch: longest first (an OOM shows at once), rows * width <= budget."""
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        rows = max(1, batch_tokens // int(lengths[order[start]]))
        batches.append(order[start:start + rows])
        start += rows
    return batches


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """Host array to `device`; pinned on CUDA, so the copy does not wait for the previous batch's kernels."""
    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log-softmax of each target token, in fp32 whatever the logits' dtype (the harness's `F.log_softmax`).

    `log_softmax` then a gather, as the harness and the 2025 pipeline do: one fused pass, about
    twice as fast on a CPU as the gather minus `logsumexp` it replaced.
    """
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)


@contextlib.contextmanager
def logits_at(model: torch.nn.Module, index: torch.Tensor) -> Iterator[None]:
    """Within it, `model(...).logits` is [1, len(index), V]: the LM head runs on those hidden states only.

    `index` counts positions over the flattened [batch, width] input. A forward pre-hook on the
    output embeddings gathers them before the vocabulary projection, so no padded or unscored
    position reaches the head (on a small-vocabulary-heavy model, most of the FLOPs). HF's
    `logits_to_keep` cannot do it: it keeps the same positions in every row of a batch. Whatever
    the model does to the head's output (none of GPT-2 and Llama do anything) still applies.
    """
    ran: list[bool] = []

    def gather(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        ran.append(True)
        hidden = args[0]
        return (hidden.reshape(-1, hidden.shape[-1])[index][None], *args[1:])

    handle = model.get_output_embeddings().register_forward_pre_hook(gather)
    try:
        yield
    finally:
        handle.remove()
    if not ran:  # e.g. a model compiled before the hook existed: its logits would be read at the wrong rows
        raise RuntimeError(f"the LM head of {type(model).__name__} ran without the position gather (compiled model?)")


def check_dtype(dtype: str) -> None:
    """A bad --dtype fails before any work, also when there is nothing to score."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


@contextlib.contextmanager
def scoring_mode(model: torch.nn.Module, dtype: str) -> Iterator[torch.device]:
    """Eval mode, no grad and the precision of `dtype` around scoring; yields the model's device.

    The model's train/eval state is restored afterwards, so the Trainer callback can score mid-training.
    """
    check_dtype(dtype)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    # fp32 turns autocast *off*, so a caller inside a mixed-precision region still gets fp32.
    precision = torch.autocast(device.type, dtype=DTYPES[dtype], enabled=dtype != "fp32")
    try:
        with torch.no_grad(), precision:
            yield device
    finally:
        model.train(was_training)


def _batch_logprobs(model: torch.nn.Module, requests: Sequence[Request], device: torch.device) -> torch.Tensor:
    """Summed log-probs (float64) of the scored tokens of each request, one forward pass (on `device`)."""
    lengths = np.fromiter((len(r.tokens) for r in requests), dtype=np.int64, count=len(requests))
    n_scored = np.fromiter((r.n_scored for r in requests), dtype=np.int64, count=len(requests))
    ids = np.zeros((len(requests), int(lengths.max())), dtype=np.int64)
    for row, request in enumerate(requests):
        ids[row, : len(request.tokens)] = request.tokens
    # Input position p predicts token p + 1: the scored inputs are the last n_scored of the length - 1 inputs.
    rows = np.repeat(np.arange(len(requests)), n_scored)
    inputs = np.concatenate([np.arange(n - 1 - k, n - 1) for n, k in zip(lengths, n_scored)])
    width = ids.shape[1] - 1
    ids_t = to_device(ids, device)
    padding = (torch.arange(width, device=device)[None, :] < to_device(lengths - 1, device)[:, None]).long()
    with logits_at(model, to_device(rows * width + inputs, device)):
        logits = model(input_ids=ids_t[:, :-1], attention_mask=padding, use_cache=False).logits[0]
    logprobs = token_logprobs(logits, to_device(ids[rows, inputs + 1], device))
    sums = torch.zeros(len(requests), dtype=torch.float64, device=device)
    return sums.index_add_(0, to_device(rows, device), logprobs.double())


def loglikelihoods(
    model: torch.nn.Module,
    requests: Sequence[Request],
    *,
    dtype: str = "fp32",
    batch_tokens: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Log-likelihood of every request (float64 array in request order); the model is left as found."""
    check_dtype(dtype)
    if not requests:
        return np.empty(0)
    unique = list(dict.fromkeys(requests))
    index = {request: i for i, request in enumerate(unique)}
    lengths = np.fromiter((len(r.tokens) - 1 for r in unique), dtype=np.int64, count=len(unique))
    outputs = []
    with scoring_mode(model, dtype) as device, tqdm(
        total=len(unique), unit="seq", desc="scoring", disable=not progress, leave=False
    ) as bar:
        batches = plan_batches(lengths, batch_tokens or default_batch_tokens(model, device))
        for batch in batches:
            outputs.append(_batch_logprobs(model, [unique[i] for i in batch], device))
            bar.update(len(batch))
    unique_scores = np.empty(len(unique))
    unique_scores[np.concatenate(batches)] = torch.cat(outputs).double().cpu().numpy()  # one sync, at the end
    return unique_scores[np.fromiter((index[r] for r in requests), dtype=np.int64, count=len(requests))]


def score_items(
    model: torch.nn.Module,
    tokenizer: Any,
    items: Sequence[Item],
    *,
    dtype: str = "fp32",
    batch_tokens: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Log-likelihoods of [correct, wrong] for each item: an array of shape (len(items), 2)."""
    origins = [item.where for item in items for _ in range(2)]
    pairs, max_length = item_pairs(items), max_sequence_length(model, tokenizer)
    requests = cached_requests(  # the Trainer callback scores the same items at every evaluation
        tokenizer, f"2024 max_length={max_length}", pairs,
        lambda: encode_requests(tokenizer, pairs, max_length, origins),
    )
    lls = loglikelihoods(model, requests, dtype=dtype, batch_tokens=batch_tokens, progress=progress)
    return lls.reshape(len(items), 2)


def mean_stderr(values: np.ndarray) -> float | None:
    """The harness's `mean_stderr`: sample standard deviation (n - 1) over sqrt(n); None if n < 2."""
    n = len(values)
    if n < 2:
        return None
    return math.sqrt(float(np.sum((values - values.mean()) ** 2)) / (n - 1)) / math.sqrt(n)


def pooled_sample_stderr(stderrs: Sequence[float | None], sizes: Sequence[int]) -> float | None:
    """The harness's `pooled_sample_stderr` (pooled variance across subtasks); None if any is None."""
    if any(s is None for s in stderrs) or sum(sizes) <= len(sizes):
        return None
    pooled_var = sum((n - 1) * s**2 * n for n, s in zip(sizes, stderrs)) / (sum(sizes) - len(sizes))
    return math.sqrt(pooled_var / sum(sizes))


def summarise_task(task: Task, lls: np.ndarray) -> dict[str, Any]:
    """Per-subtask acc/stderr/n/ties and the task's unweighted mean with pooled stderr."""
    subtasks, offset = {}, 0
    for sub in task.subtasks:
        good, bad = lls[offset: offset + len(sub.items)].T
        offset += len(sub.items)
        correct = (good >= bad).astype(np.float64)  # argmax takes index 0 (correct) on a tie
        subtasks[sub.name] = {
            "acc": float(correct.mean()),
            "stderr": mean_stderr(correct),
            "n": len(sub.items),
            "ties": int(np.sum(good == bad)),
        }
    accs = [s["acc"] for s in subtasks.values()]
    sizes = [s["n"] for s in subtasks.values()]
    return {
        "score": float(np.mean(accs)),
        "stderr": pooled_sample_stderr([s["stderr"] for s in subtasks.values()], sizes),
        "n_subtasks": len(subtasks),
        "n_items": sum(sizes),
        "ties": sum(s["ties"] for s in subtasks.values()),
        "path": str(task.path),
        "data_sha256": task.sha256,
        "max_items_per_subtask": task.max_items_per_subtask,
        "subtasks": subtasks,
    }


def evaluate_model(
    model: torch.nn.Module,
    tokenizer: Any,
    tasks: Sequence[str | os.PathLike | Task] = DEFAULT_TASKS,
    data_dir: str | os.PathLike | None = None,
    *,
    max_items_per_subtask: int | None = None,
    dtype: str = "fp32",
    batch_tokens: int | None = None,
    progress: bool = True,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Score a causal LM (in memory) on zero-shot tasks; returns the results record (not written).

    `tasks` are names, directories or loaded `Task`s (`max_items_per_subtask`
    and `data_dir` apply to the ones loaded here).
    """
    start = time.perf_counter()
    loaded = load_tasks(tasks, data_dir, max_items_per_subtask)
    items = [item for task in loaded for sub in task.subtasks for item in sub.items]
    lls = score_items(model, tokenizer, items, dtype=dtype, batch_tokens=batch_tokens, progress=progress)
    results, offset = {}, 0
    for task in loaded:
        results[task.name] = {**summarise_task(task, lls[offset: offset + task.n_items]), "dtype": dtype}
        offset += task.n_items
    wall = time.perf_counter() - start
    sentences = 2 * len(items)
    data_digest = hashlib.sha256("".join(t.sha256 for t in loaded).encode()).hexdigest()
    return {
        "model": model_name or getattr(model, "name_or_path", "") or type(model).__name__,
        "data_sha256": data_digest,
        "dtype": dtype,
        "model_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "sentences": sentences,
        "wall_time_s": round(wall, 3),
        "sentences_per_s": round(sentences / wall, 1) if wall > 0 else None,
        "tasks": results,
        **provenance(torch_device=str(next(model.parameters()).device)),
    }
