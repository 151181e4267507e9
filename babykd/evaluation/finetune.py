"""(Super)GLUE fine-tuning of a causal LM (BabyLM 2025): a classification head trained per task, scored on validation.

    python -m babykd.evaluation.finetune MODEL_DIR [TASK ...] [--epochs N] [--max-train-examples N]

TASKs: boolq, multirc, rte, wsc, mrpc, qqp, mnli (default: all). The rules of
the official pipeline (``evaluation_pipeline/finetune/`` and
``eval_finetuning.sh``), reproduced here with a plain training loop as it has:

* Model: the checkpoint's base model (``AutoModel``: no LM head) and a new
  head -- LayerNorm (no affine) -> Linear(h, h) -> GELU -> LayerNorm (no
  affine) -> Dropout(0.1) -> Linear(h, labels) -- on the last layer's hidden
  state of the FIRST token (the script passes neither ``--take_final`` nor
  ``--causal``). For a causal LM whose tokenizer prepends BOS that state is the
  same for every input, so only the head's bias can learn (the class prior);
  ``--pooling last`` (the last real token, which has seen the whole input) is
  offered for such models and is recorded in the results as not official.
* Input: the (A, B) pair (`glue_data`) tokenized as a text pair with the
  tokenizer's default special tokens, right padding, truncation to 512
  tokens (to the position table of a learned-position model, where the
  official run would crash instead); a pad token is required.
* Training: seed 42; AdamW (lr 3e-5, betas 0.9/0.999, eps 1e-8, weight decay
  0.01 on every parameter); linear warm-up over int(6%) of the steps, then
  cosine decay to 0.1 x lr; batch 32 (BoolQ, MultiRC: 16), incomplete last
  batch dropped; 10 epochs (WSC: 30); cross-entropy.
* Selection and score: after each epoch the model is evaluated on the
  validation set (batch 64); the first epoch with the best accuracy (F1 for
  MRPC, QQP) is kept; its validation metrics are the task's result and its
  predictions the submission's. The leaderboard's GLUE score is the mean
  accuracy over the seven tasks (``calculate_results_from_pred.py``).

Results: the task entries of ``MODEL_DIR/eval/results.json`` (score =
accuracy) and the task's official predictions in
``MODEL_DIR/eval/predictions/main/glue/<task>.json`` (stamped with the weights and the setup, see
`store`), the task's share of the submission's ``glue`` part (collated again after each run); a run on a
subset (``--max-train-examples``, ``--max-valid-examples``) writes no predictions, and one with other
hyperparameters (epochs, seed, ...) is refused by collate as not official. Each task is its own unit: while it trains, its state after every
epoch is kept in ``MODEL_DIR/eval/finetune_state/<task>.pt`` (deleted once the
task's results are written), so a run stopped mid-task (preemption) continues
with the next epoch when started again. A task whose data is missing (BoolQ and MultiRC training sets
here) is an error naming the file; the other tasks still run.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from babykd.cli import library_progress_bars
from babykd.errors import EvaluationError, UserError
from babykd.evaluation import store
from babykd.evaluation.family_results import refresh_submission, save_family_results
from babykd.evaluation.finetune_resume import ResumeFile, load_epoch, resume_key, save_epoch
from babykd.evaluation.glue_data import GLUE_TASKS, GlueSplit, GlueTask, load_split
from babykd.evaluation.scorer import mean_stderr
from babykd.evaluation.suite_data import SuiteData
from babykd.evaluation.tasks import TaskDataError
from babykd.models import position_limit

POOLINGS = ("first", "last")
#: Under MODEL_DIR/eval: each task's end-of-epoch training state while it runs (`finetune_resume`).
RESUME_DIR = "finetune_state"


@dataclass(frozen=True)
class Hyperparameters:
    """The official defaults (``eval_finetuning.sh`` and ``finetune/run.py``)."""

    learning_rate: float = 3e-5
    batch_size: int = 32
    small_batch_size: int = 16
    epochs: int = 10
    wsc_epochs: int = 30
    seed: int = 42
    max_length: int = 512
    valid_batch_size: int = 64
    weight_decay: float = 0.01
    warmup_proportion: float = 0.06
    min_factor: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    classifier_dropout: float = 0.1
    layer_norm_eps: float = 1e-5
    pooling: str = "first"

    def for_task(self, task: GlueTask) -> tuple[int, int]:
        """(batch size, epochs) of `task`."""
        return (self.small_batch_size if task.small_batch else self.batch_size,
                self.wsc_epochs if task.long_training else self.epochs)


class ClassifierHead(nn.Module):
    """The pipeline's head: two parameter-free LayerNorms around a GELU layer, dropout, then the output layer."""

    def __init__(self, hidden: int, num_labels: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.LayerNorm(hidden, eps, elementwise_affine=False),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.LayerNorm(hidden, eps, elementwise_affine=False),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_labels),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class SequenceClassifier(nn.Module):
    """Base model + head on the first (official) or last real token's final hidden state."""

    def __init__(self, backbone: nn.Module, num_labels: int, hp: Hyperparameters) -> None:
        super().__init__()
        if hp.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {hp.pooling!r}")
        self.backbone = backbone
        self.pooling = hp.pooling
        self.head = ClassifierHead(backbone.config.hidden_size, num_labels, hp.classifier_dropout, hp.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "first":
            features = hidden[:, 0]
        else:  # right padding: the last real token is at (number of real tokens - 1)
            last = attention_mask.sum(dim=1) - 1
            features = hidden[torch.arange(len(hidden), device=hidden.device), last]
        return self.head(features)


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup: int, total: int, min_factor: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup` steps, then cosine decay to `min_factor` x lr at `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(min_factor, min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def classification_metrics(predictions: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Accuracy, binary F1 (positive class 1) and Matthews correlation, as scikit-learn defines them.

    F1 is 0 when there are no true positives; MCC is 0 when any margin of the
    confusion matrix is empty (scikit-learn's conventions).
    """
    out: dict[str, float] = {}
    for name in names:
        if name == "accuracy":
            out[name] = float(np.mean(predictions == labels))
        elif name == "f1":
            tp = float(np.sum((predictions == 1) & (labels == 1)))
            denominator = float(np.sum(predictions == 1) + np.sum(labels == 1))
            out[name] = 2 * tp / denominator if tp > 0 else 0.0
        elif name == "mcc":
            tp = float(np.sum((predictions == 1) & (labels == 1)))
            tn = float(np.sum((predictions == 0) & (labels == 0)))
            fp = float(np.sum((predictions == 1) & (labels == 0)))
            fn = float(np.sum((predictions == 0) & (labels == 1)))
            denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
            out[name] = (tp * tn - fp * fn) / denominator if denominator > 0 else 0.0
        else:
            raise ValueError(f"unknown metric {name!r}")
    return out


def first_token_is_special(tokenizer: Any) -> bool:
    """Whether every pair starts with the same special token (a prepended BOS): then first-token pooling sees no input."""
    starts = {encode_batch(tokenizer, [pair], 8)["input_ids"][0, 0].item() for pair in (("a b", "c"), ("z y", "x"))}
    return len(starts) == 1 and starts.pop() in tokenizer.all_special_ids


def encode_batch(tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int) -> dict[str, torch.Tensor]:
    """Text pairs -> right-padded, truncated ids and mask (the tokenizer's own pair template)."""
    return tokenizer(list(pairs), padding=True, truncation=True, max_length=max_length, return_tensors="pt")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def predict(model: SequenceClassifier, tokenizer: Any, split: GlueSplit, batch_size: int, max_length: int,
            device: torch.device, progress: bool) -> np.ndarray:
    """Argmax class of every example, in file order."""
    model.eval()
    predictions = []
    for start in tqdm(range(0, len(split), batch_size), desc="validation", leave=False, disable=not progress):
        batch = encode_batch(tokenizer, split.pairs[start:start + batch_size], max_length).to(device)
        predictions.append(model(batch["input_ids"], batch["attention_mask"]).argmax(-1).cpu())
    return torch.cat(predictions).numpy()


@dataclass
class FinetuneResult:
    """The kept epoch: its validation metrics and predictions; `epoch_metrics` has every epoch's."""

    metrics: dict[str, float]
    predictions: np.ndarray
    best_epoch: int
    epoch_metrics: list[dict[str, float]]
    max_length: int


def finetune(
    model_dir: Path, task: GlueTask, train: GlueSplit, valid: GlueSplit, hp: Hyperparameters,
    device: torch.device, progress: bool = True, resume: ResumeFile | None = None,
) -> FinetuneResult:
    """Train a head (and the whole model) on `train`; keep the epoch best on `valid`; return its metrics and predictions.

    With `resume` (`task_resume`), the state after each epoch is saved there and a run that
    finds a state of the same fine-tuning (its key) continues after its epoch (`finetune_resume`).
    """
    seed_everything(hp.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="right")
    if tokenizer.pad_token_id is None:
        raise TaskDataError(f"{model_dir}: the tokenizer has no pad token; the official fine-tuning pads batches and needs one")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the LM head left out of AutoModel is reported as "UNEXPECTED": expected here
    try:
        backbone = AutoModel.from_pretrained(model_dir, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(verbosity)
    if hp.pooling == "first" and first_token_is_special(tokenizer):
        print(f"warning: {model_dir}: the tokenizer prepends a special token, so the official first-token head sees the "
              "same state for every input and can learn only the class prior; --pooling last reads the whole input",
              file=sys.stderr)
    limit = position_limit(backbone.config)
    max_length = min(hp.max_length, limit) if limit is not None else hp.max_length
    model = SequenceClassifier(backbone, task.num_labels, hp).to(device)
    batch_size, epochs = hp.for_task(task)
    steps_per_epoch = len(train) // batch_size
    if steps_per_epoch == 0:
        raise TaskDataError(f"{train.path}: {len(train)} training examples, fewer than one batch of {batch_size}")
    total = steps_per_epoch * epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp.learning_rate, betas=hp.betas, eps=hp.eps, weight_decay=hp.weight_decay)
    scheduler = cosine_with_warmup(optimizer, int(hp.warmup_proportion * total), total, hp.min_factor)
    labels = torch.from_numpy(train.labels)
    best: FinetuneResult | None = None
    history: list[dict[str, float]] = []
    training = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    restored = load_epoch(resume.path, resume.key, training) if resume is not None else None
    first_epoch = 0
    if restored is not None:
        first_epoch, saved = restored
        history = saved["history"]
        best = FinetuneResult(**{**saved["best"], "epoch_metrics": history})
        print(f"{task.name}: resuming after epoch {first_epoch} of {epochs} from {resume.path}", file=sys.stderr)
    bar = tqdm(total=total, initial=first_epoch * steps_per_epoch, desc=f"fine-tuning {task.name}", unit="step",
               disable=not progress)
    for epoch in range(first_epoch, epochs):
        model.train()
        order = torch.randperm(len(train))[: steps_per_epoch * batch_size].view(steps_per_epoch, batch_size)
        for rows in order:
            batch = encode_batch(tokenizer, [train.pairs[i] for i in rows], max_length).to(device)
            loss = F.cross_entropy(model(batch["input_ids"], batch["attention_mask"]), labels[rows].to(device))
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        predictions = predict(model, tokenizer, valid, hp.valid_batch_size, max_length, device, progress)
        metrics = classification_metrics(predictions, valid.labels, task.metrics)
        history.append(metrics)
        # Strictly better: ties keep the earlier epoch. The pipeline re-evaluates a copy of the kept
        # model; evaluation is deterministic, so the kept epoch's own predictions are the same.
        if best is None or metrics[task.metric_for_valid] > best.metrics[task.metric_for_valid]:
            best = FinetuneResult(metrics, predictions, epoch + 1, history, max_length)
        if resume is not None:
            save_epoch(resume.path, resume.key, epoch + 1, training, {"history": history, "best": asdict(best)})
    bar.close()
    return best


def task_entry(task: GlueTask, result: FinetuneResult, train: GlueSplit, valid: GlueSplit, hp: Hyperparameters,
               predictions_file: Path | None, max_train_examples: int | None, max_valid_examples: int | None) -> dict[str, Any]:
    """The results entry of one task: score = validation accuracy of the kept epoch (the leaderboard's per-task number)."""
    batch_size, epochs = hp.for_task(task)
    return {
        "score": result.metrics["accuracy"],
        "stderr": mean_stderr((result.predictions == valid.labels).astype(np.float64)),
        "metric": "accuracy",
        **{name: value for name, value in result.metrics.items() if name != "accuracy"},
        "n_items": len(valid),
        "n_train": len(train),
        "best_epoch": result.best_epoch,
        "metric_for_valid": task.metric_for_valid,
        "epoch_metrics": result.epoch_metrics,
        "hyperparameters": {**asdict(hp), "batch_size": batch_size, "epochs": epochs, "max_length": result.max_length},
        "official_setup": hp == Hyperparameters() and max_train_examples is None and max_valid_examples is None,
        "max_train_examples": max_train_examples,
        "max_valid_examples": max_valid_examples,
        "predictions_file": str(predictions_file) if predictions_file else None,
        "path": valid.path,
        "train_path": train.path,
        "data_sha256": valid.sha256,
        "train_sha256": train.sha256,
    }


def task_setup(task: GlueTask, hp: Hyperparameters, train: GlueSplit, valid: GlueSplit,
               max_train_examples: int | None, max_valid_examples: int | None) -> dict[str, Any]:
    """How `task` is fine-tuned (the results store's setup): known before training, so a unit can ask if it is done."""
    data = hashlib.sha256(f"{train.sha256}\0{valid.sha256}".encode()).hexdigest()
    return store.glue_setup(_task_hyperparameters(task, hp), max_train_examples, max_valid_examples, data,
                            _task_hyperparameters(task, Hyperparameters()))


def task_resume(model_dir: Path, task: GlueTask, weights_sha256: str | None, setup: dict[str, Any]) -> ResumeFile:
    """Where `task` keeps its training state in ``MODEL_DIR/eval`` and its key: the task and the store's stamp."""
    return ResumeFile(store.eval_dir(model_dir) / RESUME_DIR / f"{task.name}.pt",
                      resume_key(task.name, store.stamp(weights_sha256, setup)))


def _task_hyperparameters(task: GlueTask, hp: Hyperparameters) -> dict[str, Any]:
    """`hp` as `task` uses it (its batch size and epochs resolved)."""
    batch_size, epochs = hp.for_task(task)
    return {**asdict(hp), "batch_size": batch_size, "epochs": epochs}


def write_glue_predictions(eval_dir: Path, task: str, predictions: np.ndarray, weights_sha256: str | None,
                           setup: dict[str, Any]) -> Path:
    """One task's part of the submission's ``glue``: {"predictions": [{"id": "rte_0", "pred": 1}, ...]}, stamped."""
    content = {"predictions": [{"id": f"{task}_{i}", "pred": int(p)} for i, p in enumerate(predictions)]}
    return store.write_predictions(eval_dir, None, f"glue/{task}", content, weights_sha256, setup)


def glue_aggregate(tasks: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The leaderboard's GLUE number: mean accuracy over all seven tasks; None until all are scored."""
    if any(name not in tasks for name in GLUE_TASKS):
        return None
    accuracies = [tasks[name]["score"] for name in GLUE_TASKS]
    return {"score": float(np.mean(accuracies)), "stderr": None, "metric": "mean accuracy over " + ", ".join(GLUE_TASKS),
            "n_subtasks": len(accuracies)}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Hyperparameters()
    parser = argparse.ArgumentParser(prog="python -m babykd.evaluation.finetune", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="checkpoint directory (model and tokenizer)")
    parser.add_argument("tasks", nargs="*", default=list(GLUE_TASKS), help=f"tasks ({', '.join(GLUE_TASKS)}; default: all)")
    parser.add_argument("--tasks", dest="task_option", nargs="+", default=None,
                        help="the same as the positional TASKs (for the job scripts, whose leading words are runs)")
    parser.add_argument("--data", default=None, help="BabyLM 2025 evaluation zip or folder (default: $BABYKD_EVAL_DATA_2025, else ../shared/evaluation_data_2025.zip)")
    parser.add_argument("--output", type=Path, default=None, help="results JSON (default: MODEL_DIR/eval/results.json)")
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--small-batch-size", type=int, default=defaults.small_batch_size, help="batch of BoolQ and MultiRC")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--wsc-epochs", type=int, default=None, help=f"epochs of WSC (default: {defaults.wsc_epochs}, or --epochs when that is given)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-length", type=int, default=defaults.max_length)
    parser.add_argument("--pooling", choices=POOLINGS, default=defaults.pooling, help="first token (official) or last real token")
    parser.add_argument("--max-train-examples", type=int, default=None, help="train on the first N examples only (smoke runs; not official)")
    parser.add_argument("--max-valid-examples", type=int, default=None, help="validate on the first N examples only (smoke runs; not official)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    args.tasks = args.task_option or args.tasks
    unknown = [t for t in args.tasks if t not in GLUE_TASKS]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(GLUE_TASKS)}")
    for flag in ("batch_size", "small_batch_size", "epochs", "wsc_epochs", "max_length", "max_train_examples", "max_valid_examples"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    if not args.lr > 0:
        parser.error("--lr must be positive")
    explicit_epochs = any(a == "--epochs" or a.startswith("--epochs=") for a in (argv if argv is not None else sys.argv[1:]))
    args.hp = replace(
        defaults, learning_rate=args.lr, batch_size=args.batch_size, small_batch_size=args.small_batch_size,
        epochs=args.epochs, wsc_epochs=args.wsc_epochs or (args.epochs if explicit_epochs else defaults.wsc_epochs),
        seed=args.seed, max_length=args.max_length, pooling=args.pooling,
    )
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Score as `args` say; returns the results record written. Raises `EvaluationError` (one line)."""
    library_progress_bars(show=not args.no_progress)
    start = time.perf_counter()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    splits: dict[str, tuple[GlueSplit, GlueSplit]] = {}
    errors = []
    try:
        suite = SuiteData(args.data)
    except TaskDataError as exc:
        raise EvaluationError(str(exc)) from None
    for name in args.tasks:  # all data first: a missing file is named before hours of training
        try:
            splits[name] = (load_split(suite, GLUE_TASKS[name], "train", args.max_train_examples),
                            load_split(suite, GLUE_TASKS[name], "valid", args.max_valid_examples))
        except TaskDataError as exc:
            errors.append(f"{name}: {exc}")
            print(f"error: {errors[-1]} (the other tasks still run)", file=sys.stderr)
    written: dict[str, Any] = {}
    weights = store.weights_fingerprint(args.model)  # once per command: a hash of the whole weight files
    for name, (train, valid) in splits.items():
        task = GLUE_TASKS[name]
        setup = task_setup(task, args.hp, train, valid, args.max_train_examples, args.max_valid_examples)
        resume = task_resume(args.model, task, weights, setup)
        try:
            result = finetune(args.model, task, train, valid, args.hp, device, progress=not args.no_progress,
                              resume=resume)
        except TaskDataError as exc:
            raise EvaluationError(str(exc)) from None
        subset = args.max_train_examples is not None or args.max_valid_examples is not None
        predictions_file = None if subset else write_glue_predictions(
            store.eval_dir(args.model), name, result.predictions, weights, setup)
        entry = task_entry(task, result, train, valid, args.hp, predictions_file, args.max_train_examples, args.max_valid_examples)
        entry.update(store.stamp(weights, setup))
        written = save_family_results(args.model, args.output, {name: entry}, time.perf_counter() - start, device,
                                      weights)
        resume.path.unlink(missing_ok=True)  # the task is done: its results, not its training state, are kept
        extra = "".join(f", {m} {v:.4f}" for m, v in result.metrics.items() if m != "accuracy")
        print(f"{store.model_name(args.model)}: {name} accuracy {entry['score']:.4f}{extra} "
              f"(epoch {result.best_epoch} of {len(result.epoch_metrics)}, {len(train)} train / {len(valid)} valid)")
    aggregate = glue_aggregate(written.get("tasks", {})) if written else None
    if aggregate is not None:
        written = save_family_results(args.model, args.output, {"glue": aggregate}, time.perf_counter() - start, device,
                                      weights)
        print(f"{store.model_name(args.model)}: glue (mean accuracy of 7 tasks) {aggregate['score']:.4f}")
    if splits and args.max_train_examples is None and args.max_valid_examples is None:
        refresh_submission(args.model)
    if errors:
        raise EvaluationError("not scored for missing or bad data:\n  " + "\n  ".join(errors))
    return written


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The command line: parse, run, and the one place an `EvaluationError` becomes an exit status."""
    try:
        return run(parse_args(argv))
    except UserError as exc:  # an EvaluationError, or a full disk (DiskFullError)
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
