#!/usr/bin/env python
"""Training speed: the published recipes' mechanics ("reference") against our default path ("ours").

One command, one process, the same seeded random-token batches and the same
initial weights for every mode.  For each scenario it prints one JSON line per
mode (tokens/s, achieved TFLOP/s, MFU against the card's bf16 dense peak, peak
memory, the loss of the first batch) and one comparison line (speed-up of each
mode over the reference, and whether both computed the same loss on the first
batch within the stated tolerance), and appends them to a JSONL results file
with the device, package versions, commit, date and command.

Scenarios
  babyllama            Llama-58M <- Llama-360M + GPT2-705M, 0.5·CE + 0.5·KL (T=2), batch 32 x 128
  dskd                 PalenkaLlama L0.1-H0.5: CE + 0.1·KL + 0.5·hidden MSE (published layer maps)
  pretrain-gpt2-705m   GPT2-705M pretraining, batch 128 x 128
  pretrain-llama-360m  Llama-360M pretraining, batch 128 x 128
  loss-kl, loss-ce     the logit losses alone, forward + backward (published form vs ours)

Modes
  reference      a faithful re-implementation of the published code on the HF Trainer
                 (:class:`ReferenceTrainer`): fp16 autocast over the whole loss (the Trainer
                 of the time wrapped compute_loss in autocast), fp32 teacher weights, an
                 eager per-teacher forward under no_grad, nn.KLDivLoss(batchmean) on full
                 fp32 [B, T, V] log-probabilities, non-fused AdamW, TF32 off (torch default);
                 the DSKD hidden term computed under no_grad, as published.
  ours           `KDTrainer` built as `babykd.training.run_training` builds it (same run
                 config, `training_arguments`: bf16 autocast with fp32 master weights, bf16
                 teachers in inference_mode, SDPA, fused AdamW, the chunked logit losses;
                 the fixed-chunk collator, the words-seen ledger, the divergence guard, the
                 preemption check and TensorBoard logging, all of which run in every step).
  ours+LEVER...  ours with a setting users can switch on, measured before it is made a default:
                   compile  torch.compile of the student and of each teacher (`training.torch_compile`,
                            once each, with `--compile-mode`), and of the chunked losses'
                            per-chunk arithmetic (`losses.compile_chunk_kernels`).
                   cache    offline KD (`distillation.teacher_cache_top_k`, logit-only scenarios):
                            the teachers' top-k targets (`--cache-top-k`) are built once before
                            the timed steps (`cache_build_s`), then the student trains without
                            teachers; its first-batch loss differs from the reference by the
                            top-k truncation (reported, not hidden), and its TFLOP/s and MFU
                            count the student's 6·N only (the FLOPs it actually runs).
                 e.g. --modes reference,ours,ours+compile,ours+cache

Timing: `trainer.train()` with max_steps = warmup + steps; the clock runs from the end
of the last warm-up step to the end of the last step (device synchronised), so it
covers whole optimizer steps: data loading, forward, backward, clipping, optimizer,
scheduler, logging.  FLOPs per token are 6·N_student + 2·Σ N_teacher with N the
parameters outside the token/position embedding tables (the convention that
reproduces the issue's 7.8% and 19.3% MFU figures).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import json
import math
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.loss.loss_utils import ForCausalLMLoss

from babykd import REPO_ROOT, losses
from babykd.run.atomic import atomic_write_text
from babykd.config import RunConfig, load_model_config, load_run_config
from babykd.data.dataset import WORDS_KEY, EpochShuffleSampler
from babykd.models import build_model, count_parameters
from babykd.run.provenance import device_name, provenance
from babykd.teacher_cache import CachedTargetsDataset, build_teacher_cache
from babykd.teachers import build_distillation_modules
from babykd.trainer import KDTrainer
from babykd.data.collator import FixedChunkCollator
from babykd.run.divergence import DivergenceGuard
from babykd.run.preemption import PreemptionCallback
from babykd.training import tensorboard_callback, training_arguments
from babykd.run.words_seen import WordsSeen

DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results" / "training.jsonl"

#: Dense bf16 tensor-core peaks in TFLOP/s, matched in order against the device name.
#: Unknown devices get no MFU (null) unless --peak-tflops is given.
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 NVL", 835.0),
    ("H200 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
)

#: Loss agreement on the first batch: |ours - reference| <= rtol·|reference| + atol.
#: fp32 on both sides (CPU) is near-exact; on a GPU the reference runs fp16 autocast and
#: ours bf16, so the logits themselves differ by bf16 rounding (~0.4% relative).
TOLERANCE = {"fp32": (1e-4, 1e-5), "mixed": (2e-2, 1e-3)}


# ----------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class TrainingScenario:
    """A published recipe: its run config and the architectures of its teachers (in config order)."""

    run_config: str
    teachers: tuple[str, ...]
    tiny_model: str
    tiny_teachers: tuple[str, ...]


@dataclass(frozen=True)
class LossScenario:
    """A logit loss alone: shapes ``[B, T, V]`` per shape set, number of teachers."""

    published: tuple[int, int, int]
    tiny: tuple[int, int, int]
    n_teachers: int


_DISTILL_TEACHERS = ("Llama-360M", "GPT2-705M")
_TINY_TEACHERS = ("tiny-llama", "tiny-gpt2")
TRAINING_SCENARIOS: dict[str, TrainingScenario] = {
    "babyllama": TrainingScenario(
        "config/runs/distill/BabyLlama1-58M-strict.yaml", _DISTILL_TEACHERS, "tiny-llama-student", _TINY_TEACHERS
    ),
    "dskd": TrainingScenario(
        "config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml",
        _DISTILL_TEACHERS, "tiny-llama-student", _TINY_TEACHERS,
    ),
    "pretrain-gpt2-705m": TrainingScenario("config/runs/pretrain/GPT2-705M-strict.yaml", (), "tiny-gpt2", ()),
    "pretrain-llama-360m": TrainingScenario("config/runs/pretrain/Llama-360M-strict.yaml", (), "tiny-llama", ()),
}
LOSS_SCENARIOS: dict[str, LossScenario] = {
    "loss-kl": LossScenario(published=(32, 128, 16000), tiny=(8, 128, 16000), n_teachers=2),
    "loss-ce": LossScenario(published=(128, 128, 16000), tiny=(8, 128, 16000), n_teachers=0),
}
#: Tiny shapes: CPU-sized models of config/models/tiny-*.yaml, 4 sequences of 32 tokens.
TINY_BATCH, TINY_SEQ = 4, 32
BASE_MODES = ("reference", "ours")
LEVERS = ("compile", "cache")


# ----------------------------------------------------------------------------- measurement helpers


class PeakMemory:
    """Peak memory of a block: the CUDA allocator's peak, or the process's peak RSS on CPU.

    On CPU, free heap memory is first handed back to the OS (``malloc_trim``),
    so the previous mode's leftovers do not count, and ``/proc/self/clear_refs``
    resets the RSS high-water mark; the peak then includes the interpreter and
    libraries (~0.4 GB), the same for every mode.  Without glibc and Linux /proc
    the CPU peak is None (not measured).
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self._libc: Any = None
        if device == "cpu":
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL("libc.so.6")
                libc.malloc_trim  # noqa: B018 - raises AttributeError off glibc
                Path("/proc/self/clear_refs").write_text("5")
                self._libc = libc if _proc_status_kib("VmHWM") else None
        self.available = device == "cuda" or self._libc is not None

    @contextlib.contextmanager
    def measure(self) -> Iterator[dict[str, float | None]]:
        """Yields a dict filled on exit with `peak_gb`, `start_gb` and `increase_gb` (1e9 bytes).

        `start_gb` is what was already in use when the block began (on a GPU it
        should be ~0 between modes: anything more is a previous mode's leftover).
        """
        result: dict[str, float | None] = {"peak_gb": None, "start_gb": None, "increase_gb": None}
        if not self.available:
            yield result
            return
        release_memory()
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            self._libc.malloc_trim(0)
            Path("/proc/self/clear_refs").write_text("5")
            before = _proc_status_kib("VmRSS") * 1024
        yield result
        if self.device == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = _proc_status_kib("VmHWM") * 1024
        result.update(
            peak_gb=round(peak / 1e9, 3), start_gb=round(before / 1e9, 3), increase_gb=round((peak - before) / 1e9, 3)
        )


def _proc_status_kib(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def release_memory() -> None:
    """Drop what the previous mode left (trainers hold reference cycles, compiled graphs hold modules)."""
    torch.compiler.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def compiled_loss_chunks(enabled: bool, mode: str | None) -> Iterator[None]:
    """The `compile` lever's loss part, process-wide, switched back off after the mode."""
    if not enabled:
        yield
        return
    losses.compile_chunk_kernels(mode=mode)
    try:
        yield
    finally:
        losses.compile_chunk_kernels(False)


@contextlib.contextmanager
def tf32_matmuls(enabled: bool) -> Iterator[None]:
    """Set TF32 for fp32 matmuls inside the block (`training_arguments` turns it on globally)."""
    if not torch.cuda.is_available():
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def matmul_parameters(model: PreTrainedModel) -> int:
    """Parameters outside the token and position embedding tables (lookups, not matmuls)."""
    tables = [model.get_input_embeddings().weight]
    positions = getattr(getattr(model, "transformer", None), "wpe", None)
    if positions is not None:
        tables.append(positions.weight)
    return count_parameters(model) - sum(table.numel() for table in tables)


class StepTimer(TrainerCallback):
    """Wall time from the end of optimizer step `warmup` to the end of step `warmup + steps`."""

    def __init__(self, warmup: int, steps: int, device: str) -> None:
        self.first, self.last, self.device = warmup, warmup + steps, device
        self.started: float | None = None
        self.seconds: float | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step in (self.first, self.last):
            synchronize(self.device)
            now = time.perf_counter()
            if state.global_step == self.first:
                self.started = now
            elif self.started is not None:
                self.seconds = now - self.started


class FirstLog(TrainerCallback):
    """The first log with a training loss: step 1 (`logging_first_step`), before any update."""

    def __init__(self) -> None:
        self.logs: dict[str, float] | None = None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if self.logs is None and logs and "loss" in logs:
            self.logs = {k: float(v) for k, v in logs.items() if k == "loss" or k.startswith("loss_")}


# ----------------------------------------------------------------------------- the reference trainer


class ReferenceTrainer(Trainer):
    """The published BabyLlama / DSKD `DistillationTrainer` mechanics, for timing and loss comparison.

    Loss: ``w_ce·student_loss + w_kl·KLDivLoss(batchmean)(log_softmax(s/T), softmax(mean_t/T))·T²``
    (+ ``w_hidden·MSE`` computed under no_grad for DSKD); the student loss is the HF
    model's own (labels passed to the model), the teachers get the same inputs
    (labels included, so they compute a loss nobody uses, as in the published code).
    """

    def __init__(
        self, *args: Any, teachers: Sequence[PreTrainedModel], weights: dict[str, float], temperature: float,
        projections: losses.HiddenStateProjections | None, **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False
        self.teachers = [t.to(self.args.device).eval() for t in teachers]
        self.weights = weights
        self.temperature = temperature
        self.projections = projections.to(self.args.device) if projections is not None else None
        self._terms: dict[str, Tensor] = {}

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler:
        """Ours' sampler, so both modes see the same batches in the same order."""
        return EpochShuffleSampler(len(self.train_dataset), seed=self.args.seed)

    def autocast_smart_context_manager(self, cache_enabled: bool | None = True) -> contextlib.AbstractContextManager:
        """fp16 autocast around the whole loss (teachers included), as the Trainer of 2023 did."""
        if self.args.fp16:
            return torch.autocast("cuda", dtype=torch.float16, cache_enabled=cache_enabled)
        return contextlib.nullcontext()

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Tensor], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Tensor | tuple[Tensor, Any]:
        need_hidden = self.weights.get("hidden", 0.0) > 0
        outputs = model(**inputs, output_hidden_states=need_hidden)
        terms = {"ce": outputs.loss}
        if self.teachers:
            with torch.no_grad():
                teacher_outputs = [t(**inputs, output_hidden_states=need_hidden) for t in self.teachers]
                average_logits = torch.stack([out.logits for out in teacher_outputs]).mean(dim=0)
            temperature = self.temperature
            terms["kl"] = nn.KLDivLoss(reduction="batchmean")(
                F.log_softmax(outputs.logits / temperature, dim=-1), F.softmax(average_logits / temperature, dim=-1)
            ) * temperature**2
            if need_hidden:
                with torch.no_grad():
                    teacher_states = [out.hidden_states for out in teacher_outputs]
                    terms["hidden"] = self._hidden_mse(outputs.hidden_states, teacher_states)
        loss = sum(self.weights[name] * value for name, value in terms.items())
        self._terms = {name: value.detach() for name, value in terms.items()}
        return (loss, outputs) if return_outputs else loss

    def _hidden_mse(self, student: Sequence[Tensor], teachers: Sequence[Sequence[Tensor]]) -> Tensor:
        """Per teacher the mean over mapped pairs of MSE(project(student), teacher), then the mean over teachers."""
        assert self.projections is not None
        per_teacher = []
        for k, states in enumerate(teachers):
            pairs = []
            for t, s in self.projections.layer_maps[k].items():
                student_state, teacher_state = self.projections.project_pair(k, t, s, student[s], states[t])
                pairs.append(F.mse_loss(student_state.float(), teacher_state.float()))
            per_teacher.append(torch.stack(pairs).mean())
        return torch.stack(per_teacher).mean()

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add the last step's loss terms as `loss_<name>`, like `KDTrainer.log`."""
        if "loss" in logs:
            logs.update({f"loss_{name}": float(value) for name, value in self._terms.items()})
        super().log(logs, *args, **kwargs)


# ----------------------------------------------------------------------------- building the modes


class RandomTokens(torch.utils.data.Dataset):
    """Seeded uniform token ids (no special ids, nothing masked), labels = inputs as in the recipes.

    No attention mask, like our chunk dataset and the published collator: with
    one, HF checks it for padding on every forward (a host-device sync). Each
    chunk carries a word count, as our chunks do, for the words-seen ledger.
    """

    def __init__(self, rows: int, seq_length: int, vocab_size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(3, vocab_size, (rows, seq_length), generator=generator)
        self.seq_length = seq_length

    def __len__(self) -> int:
        return self.ids.size(0)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        ids = self.ids[index]
        return {"input_ids": ids, "labels": ids, WORDS_KEY: torch.tensor(self.seq_length * 3 // 4)}


@dataclass
class Prototypes:
    """Initial weights shared by every mode (each mode trains deep copies)."""

    student: PreTrainedModel
    teachers: list[PreTrainedModel]
    teacher_names: list[str]
    extra: losses.DistillationModules | None


def scenario_config(scenario: TrainingScenario, shapes: str, options: argparse.Namespace, tmp: Path) -> RunConfig:
    """Our run config of the scenario, at the requested shapes, set up for a short timed run."""
    steps = options.warmup + options.steps
    overrides = [
        f"training.max_steps={steps}", "training.progress_bar=false", f"training.seed={options.seed}",
        f"output.root={tmp}",
    ]
    if shapes == "tiny":
        model = REPO_ROOT / "config" / "models" / f"{scenario.tiny_model}.yaml"
        overrides += [
            f"model={model}", f"data.vocab_size={load_model_config(model).vocab_size}",
            f"data.seq_length={TINY_SEQ}", f"training.batch_size={TINY_BATCH}",
            f"training.per_device_batch_size={TINY_BATCH}",
        ]
        if scenario.teachers:
            overrides.append("distillation.layer_maps=null")  # the published maps need 24/16-layer models
    if options.batch_size:
        size = options.batch_size
        overrides += [f"training.batch_size={size}", f"training.per_device_batch_size={size}"]
    config = load_run_config(REPO_ROOT / scenario.run_config, overrides)
    if config.distillation and len(config.distillation.teachers) != len(scenario.teachers):
        raise ValueError(f"{scenario.run_config}: expected {len(scenario.teachers)} teachers")
    return config


def build_prototypes(
    config: RunConfig, scenario: TrainingScenario, shapes: str, seed: int, device: str
) -> Prototypes:
    """The models, built on `device` directly: on a GPU, 1.1B parameters initialised on the host and
    copied over took most of a lease stage's time limit before the first step."""
    names = scenario.tiny_teachers if shapes == "tiny" else scenario.teachers
    torch.manual_seed(seed)
    with torch.device(device):
        teachers = [build_model(load_model_config(REPO_ROOT / "config" / "models" / f"{n}.yaml")) for n in names]
        student = build_model(config.model)
        extra = build_distillation_modules(config.distillation, student, teachers) if config.distillation else None
    return Prototypes(student, teachers, list(names), extra)


def reference_trainer(
    config: RunConfig, proto: Prototypes, dataset: RandomTokens, out: Path, device: str, callbacks: list[Any]
) -> Trainer:
    t = config.training
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=1, learning_rate=t.lr, max_steps=t.max_steps, warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.scheduler, weight_decay=t.weight_decay, adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2, adam_epsilon=t.adam_epsilon, max_grad_norm=t.max_grad_norm, seed=t.seed,
        logging_steps=t.logging_steps, logging_first_step=True, eval_strategy="no", save_strategy="no",
        fp16=device == "cuda", optim="adamw_torch", report_to="none", disable_tqdm=True,
        use_cpu=device == "cpu", dataloader_pin_memory=device == "cuda",
    )
    distillation = config.distillation
    weights = {"ce": 1.0}
    if distillation:
        weights = {name: getattr(distillation.weights, name) for name in ("ce", "kl", "hidden")}
    hidden = proto.extra.of(losses.REGISTRY["hidden"]) if proto.extra is not None else None
    projections = copy.deepcopy(hidden) if hidden is not None else None
    return ReferenceTrainer(
        model=copy.deepcopy(proto.student), args=args, train_dataset=dataset, callbacks=callbacks,
        teachers=[copy.deepcopy(teacher) for teacher in proto.teachers], weights=weights,
        temperature=distillation.temperature if distillation else 1.0, projections=projections,
    )


def ours_trainer(
    config: RunConfig, proto: Prototypes, dataset: RandomTokens, out: Path, levers: Sequence[str],
    compile_mode: str | None, callbacks: list[Any],
) -> Trainer:
    """`KDTrainer` as `run_training` builds it (no eval set, no checkpoints during the timed run), plus `levers`.

    Everything `run_training` runs in a step is here: its collator, words-seen ledger,
    divergence guard, preemption check and TensorBoard callback. The teachers are compiled
    once, by `KDTrainer` itself (with `compile_mode`), as in a run with `training.torch_compile`.
    """
    if "compile" in levers:
        config = copy.deepcopy(config)
        config.training.torch_compile = True
    args = training_arguments(config, out)
    args.set_evaluate("no")
    args.set_save("no")
    if "compile" in levers:
        args.torch_compile_mode = compile_mode
    teachers = [] if "cache" in levers else [copy.deepcopy(teacher) for teacher in proto.teachers]
    real_path = [tensorboard_callback(out), PreemptionCallback(), DivergenceGuard(out, lambda: "benchmark run")]
    return KDTrainer(
        model=copy.deepcopy(proto.student), args=args, train_dataset=dataset, data_collator=FixedChunkCollator(),
        callbacks=[*callbacks, *real_path], teachers=teachers, distillation=config.distillation,
        extra_modules=copy.deepcopy(proto.extra), words_seen=WordsSeen(),
    )


# ----------------------------------------------------------------------------- running a scenario


@dataclass
class Context:
    """What every scenario needs from the command line and the machine."""

    options: argparse.Namespace
    device: str
    device_name: str
    peak: float | None
    memory: PeakMemory


def run_training_scenario(name: str, ctx: Context) -> Iterator[dict[str, Any]]:
    """One record per mode as soon as it is measured, and its comparison with the reference as soon as
    both exist (a later mode that hangs or is killed cannot take the earlier figures with it)."""
    scenario = TRAINING_SCENARIOS[name]
    options = ctx.options
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        config = scenario_config(scenario, options.shapes, options, Path(tmp))
        proto = build_prototypes(config, scenario, options.shapes, options.seed, ctx.device)
        batch, seq = config.training.batch_size, config.data.seq_length
        dataset = RandomTokens((options.warmup + options.steps) * batch, seq, config.model.vocab_size, options.seed)
        student_flops = 6 * matmul_parameters(proto.student)
        flops_per_token = student_flops + 2 * sum(map(matmul_parameters, proto.teachers))
        common = {
            "scenario": name, "shapes": options.shapes, "batch_size": batch, "seq_length": seq,
            "student": config.model.name, "teachers": proto.teacher_names,
            "flops_per_token": flops_per_token, "warmup_steps": options.warmup, "steps": options.steps,
        }
        records = []
        for mode in options.modes:
            try:
                measured = run_mode(mode, config, proto, dataset, Path(tmp) / mode, ctx)
            except Exception as error:  # noqa: BLE001 - one failing mode must not hide the others' figures
                yield {**common, "mode": mode, "error": f"{type(error).__name__}: {error}"}
                continue
            seconds = measured.pop("seconds")
            tokens_per_s = options.steps * batch * seq / seconds if seconds else None
            records.append(
                {**common, "mode": mode,
                 **throughput(tokens_per_s, student_flops if "cache" in mode.split("+") else flops_per_token, ctx),
                 "step_time_ms": round(1000 * seconds / options.steps, 2) if seconds else None, **measured}
            )
            yield records[-1]
            yield from comparisons(name, records, ctx, only=records[-1]["mode"])


def run_mode(
    mode: str, config: RunConfig, proto: Prototypes, dataset: RandomTokens, out: Path, ctx: Context
) -> dict[str, Any]:
    """Train one mode for warmup + steps optimizer steps; its time, precision, peak memory, first losses."""
    options = ctx.options
    timer, first = StepTimer(options.warmup, options.steps, ctx.device), FirstLog()
    levers = mode.split("+")[1:]
    cache_record: dict[str, Any] = {}
    if "cache" in levers:
        dataset, cache_record = cached_dataset(config, proto, dataset, out / "teacher-cache", ctx.device,
                                               options.cache_top_k)
    # The Trainer prints its logs; stdout carries only this script's JSON lines.
    with ctx.memory.measure() as memory, tf32_matmuls(mode != "reference"), \
            compiled_loss_chunks("compile" in levers, options.compile_mode), contextlib.redirect_stdout(sys.stderr):
        if mode == "reference":
            trainer = reference_trainer(config, proto, dataset, out, ctx.device, [timer, first])
        else:
            trainer = ours_trainer(config, proto, dataset, out, levers, options.compile_mode, [timer, first])
        trainer.train()
        precision = "fp16-autocast" if trainer.args.fp16 else "bf16-autocast" if trainer.args.bf16 else "fp32"
        del trainer
    return {
        "seconds": timer.seconds, "precision": precision, "peak_mem_gb": memory["peak_gb"],
        "mem_at_start_gb": memory["start_gb"], "loss_first_batch": first.logs, **cache_record,
    }


def cached_dataset(
    config: RunConfig, proto: Prototypes, dataset: RandomTokens, directory: Path, device: str, top_k: int
) -> tuple[CachedTargetsDataset, dict[str, Any]]:
    """The lever `cache`: the teachers' top-k targets for `dataset`, built (and timed) before training."""
    distillation = copy.deepcopy(config.distillation)
    if distillation is None:
        raise ValueError("the cache lever needs a distillation scenario")
    distillation.teacher_cache_top_k = top_k
    distillation.validate(config.source)  # the config's own rule: logit terms only
    dtype = torch.bfloat16 if device == "cuda" else None
    teachers = [copy.deepcopy(t).to(device=device, dtype=dtype).eval() for t in proto.teachers]
    synchronize(device)
    started = time.perf_counter()
    cache = build_teacher_cache(directory, dataset, teachers, distillation, "benchmark", progress=False)
    synchronize(device)
    seconds = time.perf_counter() - started
    del teachers
    release_memory()
    return CachedTargetsDataset(dataset, cache), {
        "cache_build_s": round(seconds, 3), "cache_top_k": top_k, "cache_top_k_mass": cache.meta["top_k_mass"],
        "cache_tokens_per_s": round(len(dataset) * dataset.seq_length / seconds, 1),
    }


def throughput(tokens_per_s: float | None, flops_per_token: int | None, ctx: Context) -> dict[str, Any]:
    tflops = tokens_per_s * flops_per_token / 1e12 if tokens_per_s and flops_per_token else None
    mfu = tflops / ctx.peak if tflops and ctx.peak and ctx.device == "cuda" else None
    return {
        "device": ctx.device_name,
        "tokens_per_s": round(tokens_per_s, 1) if tokens_per_s else None,
        "tflops": round(tflops, 4) if tflops else None,
        "mfu": round(mfu, 4) if mfu else None,
    }


def comparisons(
    name: str, records: list[dict[str, Any]], ctx: Context, only: str | None = None
) -> list[dict[str, Any]]:
    """For each non-reference mode (or just `only`): speed-up, memory ratio, and first-batch loss agreement.

    With `only` the reference, the comparisons of every mode measured before it are given (the
    reference may come last in --modes)."""
    by_mode = {r["mode"]: r for r in records if "error" not in r}
    reference = by_mode.get("reference")
    if reference is None:
        return []
    rtol, atol = TOLERANCE["fp32" if reference["precision"] == "fp32" else "mixed"]
    out = []
    for mode, record in by_mode.items():
        if mode == "reference" or only not in (None, "reference", mode):
            continue
        speedup = _ratio(record["tokens_per_s"], reference["tokens_per_s"])
        agreement = loss_agreement(reference["loss_first_batch"], record["loss_first_batch"], rtol, atol)
        out.append(
            {"scenario": name, "shapes": ctx.options.shapes, "device": ctx.device_name,
             "mode": f"{mode}/reference", "speedup": speedup,
             "peak_mem_ratio": _ratio(record["peak_mem_gb"], reference["peak_mem_gb"]), **agreement}
        )
    return out


def loss_agreement(
    reference: dict[str, float] | None, ours: dict[str, float] | None, rtol: float, atol: float
) -> dict[str, Any]:
    """Compare every loss value both modes logged for the first batch (total and per term)."""
    if not reference or not ours:
        return {"loss_match": None, "loss_note": "a mode logged no first-batch loss"}
    keys = sorted(set(reference) & set(ours))
    diffs = {k: abs(ours[k] - reference[k]) for k in keys}
    match = all(math.isfinite(diffs[k]) and diffs[k] <= rtol * abs(reference[k]) + atol for k in keys)
    return {"loss_match": match, "loss_keys": keys, "loss_abs_diff": diffs, "loss_rtol": rtol, "loss_atol": atol}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


# ----------------------------------------------------------------------------- loss-only scenarios


def reference_kl(student: Tensor, teachers: Sequence[Tensor], labels: Tensor, temperature: float = 2.0) -> Tensor:
    """The published term on full [B, T, V] tensors (fp32 log-probabilities, as under autocast)."""
    average = torch.stack(list(teachers)).mean(dim=0)
    return nn.KLDivLoss(reduction="batchmean")(
        F.log_softmax(student.float() / temperature, dim=-1), F.softmax(average.float() / temperature, dim=-1)
    ) * temperature**2


def ours_kl(student: Tensor, teachers: Sequence[Tensor], labels: Tensor) -> Tensor:
    return losses.kl_distillation_loss(student, teachers, labels, temperature=2.0, normalization="reference")


def reference_ce(student: Tensor, teachers: Sequence[Tensor], labels: Tensor) -> Tensor:
    """The HF causal-LM loss the published recipes got from `model(**inputs).loss`."""
    return ForCausalLMLoss(student, labels, vocab_size=student.size(-1))


def ours_ce(student: Tensor, teachers: Sequence[Tensor], labels: Tensor) -> Tensor:
    return losses.cross_entropy_loss(student, labels)


LOSS_FUNCTIONS: dict[str, dict[str, Callable[..., Tensor]]] = {
    "loss-kl": {"reference": reference_kl, "ours": ours_kl},
    "loss-ce": {"reference": reference_ce, "ours": ours_ce},
}


def run_loss_scenario(name: str, ctx: Context) -> list[dict[str, Any]]:
    """Forward + backward of one logit loss on random logits in the training dtype (bf16 on GPU, fp32 on CPU)."""
    scenario, options = LOSS_SCENARIOS[name], ctx.options
    batch, seq, vocab = scenario.published if options.shapes == "published" else scenario.tiny
    dtype = torch.bfloat16 if ctx.device == "cuda" else torch.float32
    generator = torch.Generator().manual_seed(options.seed)

    def logits() -> Tensor:
        return (2 * torch.randn(batch, seq, vocab, generator=generator)).to(ctx.device, dtype)

    student, teachers = logits(), [logits() for _ in range(scenario.n_teachers)]
    labels = torch.randint(3, vocab, (batch, seq), generator=generator).to(ctx.device)
    common = {"scenario": name, "shapes": options.shapes, "batch_size": batch, "seq_length": seq,
              "vocab_size": vocab, "dtype": str(dtype).replace("torch.", ""),
              "warmup_steps": options.warmup, "steps": options.steps}
    records, values = [], {}
    for mode in ("reference", "ours"):
        function = LOSS_FUNCTIONS[name][mode]

        def step() -> tuple[Tensor, Tensor]:
            leaf = student.detach().requires_grad_()
            value = function(leaf, teachers, labels)
            value.backward()
            return value.detach(), leaf.grad

        release_memory()
        for _ in range(options.warmup):
            step()
        synchronize(ctx.device)
        started = time.perf_counter()
        for _ in range(options.steps):
            step()
        synchronize(ctx.device)
        seconds = time.perf_counter() - started
        with ctx.memory.measure() as memory:
            values[mode] = step()
        records.append(
            {**common, "mode": mode, **throughput(options.steps * batch * seq / seconds, None, ctx),
             "step_time_ms": round(1000 * seconds / options.steps, 2), "peak_mem_gb": memory["peak_gb"],
             "peak_mem_increase_gb": memory["increase_gb"], "loss_first_batch": {"loss": float(values[mode][0])}}
        )
    reference, ours = records
    grad_diff = float((values["ours"][1].float() - values["reference"][1].float()).abs().max())
    grad_scale = float(values["reference"][1].float().abs().max())
    rtol, atol = TOLERANCE["fp32" if dtype == torch.float32 else "mixed"]
    records.append(
        {"scenario": name, "shapes": options.shapes, "device": ctx.device_name, "mode": "ours/reference",
         "speedup": _ratio(ours["tokens_per_s"], reference["tokens_per_s"]),
         "peak_mem_increase_ratio": _ratio(ours["peak_mem_increase_gb"], reference["peak_mem_increase_gb"]),
         **loss_agreement(reference["loss_first_batch"], ours["loss_first_batch"], rtol, atol),
         "grad_max_abs_diff": grad_diff, "grad_max_abs": grad_scale}
    )
    return records


# ----------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join([*TRAINING_SCENARIOS, *LOSS_SCENARIOS]),
                        help="comma-separated, from: %(default)s")
    parser.add_argument("--modes", default=None,
                        help=f"comma-separated training modes: {' or '.join(BASE_MODES)}, or ours+LEVER[+LEVER] "
                             f"with LEVER in {LEVERS}; default: reference,ours (plus ours+compile on cuda); "
                             "loss scenarios always run reference and ours")
    parser.add_argument("--compile-mode", default=None,
                        help="torch.compile mode for the compile lever (default, reduce-overhead, max-autotune...)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--shapes", choices=("tiny", "published"), default=None,
                        help="published (real models and batches; default on cuda) or tiny (default on cpu)")
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default 20 published, 3 tiny)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 published, 1 tiny)")
    parser.add_argument("--batch-size", type=int, default=None, help="override the recipe's batch (both modes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-top-k", type=int, default=64, help="K of the `cache` lever's teacher targets")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak for MFU on an unlisted GPU")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSONL file to append to")
    parser.add_argument("--no-results", action="store_true", help="print only, append nothing")
    options = parser.parse_args(argv)
    options.scenarios = _choices(options.scenarios, [*TRAINING_SCENARIOS, *LOSS_SCENARIOS], "--scenarios")
    if options.modes is not None:
        options.modes = [_mode(mode) for mode in _choices(options.modes, None, "--modes")]
    for flag in ("steps", "warmup", "batch_size"):
        value = getattr(options, flag)
        if value is not None and value < (0 if flag == "warmup" else 1):
            parser.error(f"--{flag.replace('_', '-')} must be {'>= 0' if flag == 'warmup' else 'positive'}")
    return options


def _choices(text: str, allowed: Sequence[str] | None, flag: str) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if allowed is not None and item not in allowed]
    if unknown or not chosen:
        raise SystemExit(f"{flag}: unknown {unknown or 'empty list'}; choose from {list(allowed or [])}")
    return chosen


def _mode(text: str) -> str:
    """Validate `reference`, `ours` or `ours+LEVER[+LEVER...]`."""
    base, *levers = text.split("+")
    bad = [lever for lever in levers if lever not in LEVERS]
    if base not in BASE_MODES or (levers and base != "ours") or bad or len(set(levers)) != len(levers):
        raise SystemExit(f"--modes: {text!r} is not reference, ours or ours+LEVER with LEVER in {LEVERS}")
    return text


def resolve_device(requested: str) -> str:
    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise SystemExit("--device cuda: no CUDA device is available")
    return "cuda" if requested == "cuda" or (requested == "auto" and available) else "cpu"


def append_results(path: Path, records: list[dict[str, Any]]) -> None:
    """Append JSON lines atomically (the whole file is rewritten through a temporary)."""
    existing = path.read_text(encoding="utf-8") if path.is_file() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    atomic_write_text(path, existing + "".join(json.dumps(r, default=str) + "\n" for r in records))


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    device = resolve_device(options.device)
    if device == "cpu" and torch.cuda.is_available():
        raise SystemExit("--device cpu on a machine with a GPU: run with CUDA_VISIBLE_DEVICES= instead")
    published = (options.shapes or ("published" if device == "cuda" else "tiny")) == "published"
    options.shapes = "published" if published else "tiny"
    options.steps = options.steps or (20 if published else 3)
    options.warmup = options.warmup if options.warmup is not None else (5 if published else 1)
    if options.warmup < 1 and any(s in TRAINING_SCENARIOS for s in options.scenarios):
        raise SystemExit("--warmup must be >= 1 for training scenarios (the clock starts at the end of a step)")
    default_modes = ["reference", "ours", "ours+compile"] if device == "cuda" else ["reference", "ours"]
    options.modes = options.modes or default_modes
    name = device_name()
    ctx = Context(options, device, name, peak_tflops(name, options.peak_tflops), PeakMemory(device))
    env = {**provenance(), "peak_bf16_tflops": ctx.peak}
    print(json.dumps({"env": env}, default=str), flush=True)
    for scenario in options.scenarios:
        runner = run_training_scenario if scenario in TRAINING_SCENARIOS else run_loss_scenario
        for record in runner(scenario, ctx):
            print(json.dumps(record, default=str), flush=True)
            if not options.no_results:
                append_results(options.results, [{**record, "env": env}])
    return 0


if __name__ == "__main__":
    sys.exit(main())
