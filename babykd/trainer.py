"""The one `Trainer` subclass: a student, optional frozen teachers, and weighted loss terms.

Pretraining is the special case with no teachers and only the CE term, so
teacher pretraining, ensemble KD, DSKD, contrastive and auxiliary-classifier
distillation all run through the same training step. The step reads top to
bottom in :meth:`KDTrainer.compute_loss`; the loss arithmetic itself lives in
`babykd.losses` as small pure functions.

Trainable extras (hidden-state projections, auxiliary heads) live in ONE
`nn.Module` that is given to the optimizer, saved in every checkpoint and
restored on resume; the student saved at the end stays a plain HF model.
Everything the HF Trainer does to "the model's" gradients (averaging over
processes, one global clipping norm, zeroing after the step) is done to the
student and these extras together, as if they were one model.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers import masking_utils
from transformers.trainer_callback import ExportableState

from babykd import losses
from babykd.config import DistillationConfig, LossWeightsConfig
from babykd.data.dataset import WORDS_KEY, EpochShuffleSampler
from babykd.losses import terms as loss_terms
from babykd.losses.shares import TermShareLog
from babykd.run.atomic import atomic_write_text
from babykd.run.checkpoints import COMPLETE_MARKER, rotate_checkpoints
from babykd.run.words_seen import WordsSeen
from babykd.teacher_cache import HEAD_INPUTS_KEY, IDS_KEY, LOG_PROBS_KEY, CachedHeads

logger = logging.getLogger(__name__)

#: Name of the extra-module weights inside a checkpoint directory.
EXTRA_MODULES_FILE = "distillation_modules.safetensors"


class DatasetEpochCallback(TrainerCallback):
    """Tell the training dataset which epoch starts (it re-draws its random chunk offset).

    Done explicitly because accelerate forwards `set_epoch` to the dataset only
    in single-process runs.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(int(state.epoch or 0))


class ResetExtraGradients(TrainerCallback):
    """Clear the distillation modules' gradients after every optimizer step.

    The HF Trainer zeroes only the student's (``model.zero_grad()``); the
    projections and auxiliary heads live outside it, so without this every step
    would apply the sum of all past gradients to them (and a resumed run, which
    starts with empty gradients, would differ from an uninterrupted one).
    """

    def __init__(self, modules: nn.Module) -> None:
        self.modules = modules

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.modules.zero_grad(set_to_none=True)


class TrainingClock(TrainerCallback, ExportableState):
    """Training wall time summed over every process that worked on a run, resumes included.

    A preempted and requeued job would otherwise report only its last segment. The running
    total is saved with each checkpoint (HF's stateful-callback slot in trainer_state.json)
    and read back by :meth:`resumed_from` from :func:`checkpoint_state`.
    """

    def __init__(self, previous_s: float = 0.0) -> None:
        self.previous_s = previous_s
        self.started = time.perf_counter()

    def elapsed_s(self) -> float:
        """Seconds of training so far, earlier segments included."""
        return self.previous_s + time.perf_counter() - self.started

    def state(self) -> dict[str, Any]:
        return {"args": {"previous_s": round(self.elapsed_s(), 3)}, "attributes": {}}

    @classmethod
    def resumed_from(cls, saved_state: TrainerState | None) -> "TrainingClock":
        """A clock started now that continues the total in a checkpoint's state (from zero without one)."""
        if saved_state is None:
            return cls()
        saved = saved_state.stateful_callbacks.get(cls.__name__, {})
        return cls(**saved.get("args", {}))


@contextlib.contextmanager
def unpacked_batches() -> Iterator[None]:
    """Tell transformers' mask builder, during a forward, that no row packs several sequences.

    Without an attention mask, transformers (5.x) looks at the position ids for
    packed sequences and reads the answer on the host (`.all()`): a host-device
    sync in every forward of a Llama. Our rows are single chunks whose positions
    are 0..T-1 (the model makes them), so the answer is known: no packing.
    """
    saved = getattr(masking_utils, "find_packed_sequence_indices", None)
    if saved is None:  # another transformers: nothing to skip
        yield
        return
    masking_utils.find_packed_sequence_indices = lambda position_ids: None
    try:
        yield
    finally:
        masking_utils.find_packed_sequence_indices = saved


@contextlib.contextmanager
def own_precision(model: nn.Module) -> Iterator[nn.Module]:
    """The training model with accelerate's mixed-precision wrapper taken off its forward for the block.

    Under bf16 training accelerate replaces ``model.forward`` by one that runs in bf16
    autocast and upcasts the outputs; an evaluation during training that asks for fp32
    would otherwise get bf16 matmuls. The original forward is put back on exit.
    """
    original = getattr(model, "_original_forward", None)
    if original is None:
        yield model
        return
    wrapped = model.forward
    model.forward = original
    try:
        yield model
    finally:
        model.forward = wrapped


class KDTrainer(Trainer):
    """HF Trainer whose loss is a weighted sum of named terms, with optional teachers.

    Evaluation (`eval_loss`) is always the student's plain cross-entropy, so it
    is comparable across runs with different loss weights.
    """

    def __init__(
        self,
        *args: Any,
        teachers: Sequence[PreTrainedModel] = (),
        cached_heads: CachedHeads | None = None,
        distillation: DistillationConfig | None = None,
        extra_modules: losses.DistillationModules | None = None,
        words_seen: WordsSeen | None = None,
        term_shares: TermShareLog | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Our terms are per-micro-batch means; let the Trainer divide by accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.distillation = distillation
        self.weights = distillation.weights if distillation else LossWeightsConfig(ce=1.0)
        #: The terms each step computes (summation order) and every input they read.
        self.terms = loss_terms.computed_terms(self.weights)
        self.needs = loss_terms.needs_of(self.terms, distillation)
        self.extra_modules = extra_modules
        if extra_modules is not None:
            extra_modules.to(self.args.device)
            self.add_callback(ResetExtraGradients(extra_modules))
        teacher_dtype = torch.bfloat16 if self.args.bf16 else None
        self.teachers = [self._freeze(t, teacher_dtype) for t in teachers]
        #: A head-input cache's teacher heads: the batch's stored head inputs become the teachers' logits.
        self.cached_heads = cached_heads.to(self.args.device) if cached_heads is not None else None
        if self.train_dataset is not None:
            self.add_callback(DatasetEpochCallback(self.train_dataset))
        self._term_sums: dict[str, torch.Tensor | float] = defaultdict(float)
        self._term_counts = 0
        self.words_seen = words_seen
        #: Where each term's gradient share is kept at the first, middle and last step (None: not measured).
        self.term_shares = term_shares
        if words_seen is not None:
            self.add_callback(words_seen)

    def _freeze(self, teacher: PreTrainedModel, dtype: torch.dtype | None) -> PreTrainedModel:
        teacher.to(device=self.args.device, dtype=dtype)
        teacher.eval()
        teacher.requires_grad_(False)
        if self.args.torch_compile:  # the student's mode (the Trainer compiles the student with it)
            teacher.compile(dynamic=False, mode=self.args.torch_compile_mode)
        return teacher

    # ------------------------------------------------------------------ data order

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler:
        """A new seeded permutation each epoch, a pure function of (seed, epoch).

        Unlike a sampler driven by global RNG state, this makes a resumed run
        see exactly the batches the uninterrupted run would have seen.
        """
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return EpochShuffleSampler(len(dataset), seed=self.args.seed)

    # ------------------------------------------------------------------ the loss

    def training_step(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """Hand the micro-batch's word count (a host int) to the words-seen ledger; the model never sees it."""
        words = inputs.pop(WORDS_KEY, None)
        if words is not None and self.words_seen is not None:
            self.words_seen.add(words)
        if self.term_shares is not None and self.term_shares.due(self.state.global_step, self.state.max_steps):
            self._measure_term_shares(model, inputs)
        return super().training_step(model, inputs, *args, **kwargs)

    def _measure_term_shares(self, model: nn.Module, inputs: dict[str, Any]) -> None:
        """Each weighted term's share of the student's gradient on this micro-batch, logged and kept.

        An extra forward and one backward per term, nothing accumulated into ``.grad``, random
        state restored (dropout), so the run trains exactly as it would without it.
        """
        student = self.accelerator.unwrap_model(model)
        inputs = self._prepare_inputs(inputs)
        with torch.random.fork_rng(), unpacked_batches():
            outputs = student(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                              output_hidden_states=self.needs_hidden_states)
            params = [p for p in student.parameters() if p.requires_grad]
            norms = losses.term_gradient_norms(self.loss_terms(outputs, inputs), self.weights, params)
        assert self.term_shares is not None
        fractions = self.term_shares.add(self.state.global_step, norms)
        self.log({f"grad_share_{name}": round(share, 4) for name, share in fractions.items()})

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        training = model.training
        with unpacked_batches():
            outputs = model(
                input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                output_hidden_states=training and self.needs_hidden_states,
            )
        if not training:
            ce = losses.cross_entropy_loss(outputs.logits, inputs["labels"])
            return (ce, outputs) if return_outputs else ce
        terms = self.loss_terms(outputs, inputs)
        loss = losses.combine(terms, self.weights)
        self._record(terms)
        return (loss, outputs) if return_outputs else loss

    @property
    def needs_hidden_states(self) -> bool:
        """Whether a training step's terms read hidden states (the student must return them)."""
        return loss_terms.STUDENT_HIDDEN in self.needs

    def loss_terms(self, student_out: Any, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every computed term (unweighted) for the student's outputs on `inputs`, by name.

        Runs the teachers once if any term reads them; public so that a benchmark or a callback can
        take each term's gradient separately (benchmarks/bench_term_shares.py); :meth:`compute_loss`
        weights and sums them.
        """
        step = self._step_tensors(student_out, inputs)
        modules = self.extra_modules
        return {term.name: term.compute(step, modules.of(term) if modules is not None else None)
                for term in self.terms}

    def _step_tensors(self, student_out: Any, inputs: dict[str, torch.Tensor]) -> loss_terms.StepTensors:
        """What the configured terms read: the student's outputs, the teachers' (run here, without a graph), the cache's."""
        step = loss_terms.StepTensors(
            student_logits=student_out.logits, labels=inputs["labels"], attention_mask=inputs.get("attention_mask"),
            student_hidden=student_out.hidden_states if self.needs_hidden_states else None,
            cached_ids=inputs.get(IDS_KEY), cached_log_probs=inputs.get(LOG_PROBS_KEY),
            distillation=self.distillation,
        )
        teacher_hidden = loss_terms.TEACHER_HIDDEN in self.needs
        if self.cached_heads is not None and loss_terms.TEACHER_LOGITS in self.needs and not teacher_hidden:
            if HEAD_INPUTS_KEY not in inputs:
                raise ValueError("the kl term reads the head-input cache, but the batch carries no head inputs")
            with torch.no_grad():
                step.teacher_logits = self.cached_heads(inputs[HEAD_INPUTS_KEY])
        elif teacher_hidden or loss_terms.TEACHER_LOGITS in self.needs:
            if not self.teachers:
                raise ValueError(f"the loss terms {[t.name for t in self.terms]} read teachers, but none were given")
            with torch.inference_mode(), unpacked_batches():
                teacher_outs = [
                    t(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                      output_hidden_states=teacher_hidden)
                    for t in self.teachers
                ]
            # Tensors made under inference_mode cannot enter autograd; clone() makes normal constants.
            step.teacher_logits = [out.logits.clone() for out in teacher_outs]
            if teacher_hidden:
                step.teacher_hidden = [[h.clone() for h in out.hidden_states] for out in teacher_outs]
        if loss_terms.CACHED_TARGETS in self.needs and step.cached_ids is None:
            raise ValueError("the kl term reads the teacher cache's targets, but the batch carries none")
        return step

    # ------------------------------------------------------------------ logging

    def _record(self, terms: dict[str, torch.Tensor]) -> None:
        """Accumulate on the device: a float() here would sync the GPU every step."""
        for name, value in terms.items():
            self._term_sums[name] = self._term_sums[name] + value.detach().float()
        self._term_counts += 1

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add the mean of each loss term since the last log (TensorBoard + console)."""
        if self._term_counts and "loss" in logs:  # every rank logs "loss" at the same step
            names = sorted(self._term_sums)
            sums = [torch.as_tensor(self._term_sums[n], dtype=torch.float32, device=self.args.device) for n in names]
            means = self.accelerator.reduce(torch.stack(sums) / self._term_counts, reduction="mean")
            for name, value in zip(names, means.tolist()):
                logs[f"loss_{name}"] = round(value, 6)
            self._term_sums.clear()
            self._term_counts = 0
        if self.words_seen is not None:
            logs["words_seen"] = self.words_seen.total
        super().log(logs, *args, **kwargs)

    # ------------------------------------------------------------------ optimizer + checkpoints

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """The stock optimizer, plus one parameter group for the distillation modules."""
        optimizer = super().create_optimizer(model)
        if self.extra_modules is not None:
            params = [p for p in self.extra_modules.parameters() if p.requires_grad]
            known = {id(p) for group in optimizer.param_groups for p in group["params"]}
            if params and not any(id(p) in known for p in params):
                optimizer.add_param_group({"params": params, "weight_decay": self.args.weight_decay})
        return optimizer

    def _trained_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The student's parameters and the distillation modules' trainable ones."""
        extras = [p for p in self.extra_modules.parameters() if p.requires_grad] if self.extra_modules else []
        return [*model.parameters(), *extras]

    def _sync_extra_gradients(self) -> None:
        """Average the distillation modules' gradients over processes (DDP all-reduces the student's only).

        Runs before the global norm is taken, so every rank clips by the same norm.
        """
        if self.extra_modules is None or self.args.world_size <= 1:
            return
        grads = [param.grad for param in self.extra_modules.parameters() if param.grad is not None]
        if not grads:
            return
        # One all-reduce of all of them (one per parameter would be one launch and latency each).
        flat = _flatten_dense_tensors(grads)
        torch.distributed.all_reduce(flat)  # SUM: every backend has it (AVG is NCCL-only)
        flat.div_(self.args.world_size)
        for grad, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
            grad.copy_(synced)

    def _clip_grad_norm(self, model: nn.Module) -> torch.Tensor:
        """Clip by ONE global norm over the student and the distillation modules; return it (pre-clip)."""
        if self.extra_modules is None:
            return super()._clip_grad_norm(model)
        self._sync_extra_gradients()
        return self.accelerator.clip_grad_norm_(self._trained_parameters(model), self.args.max_grad_norm)

    def _get_grad_norm(self, model: nn.Module, grad_norm: Any = None) -> Any:
        """The logged gradient norm; without clipping (max_grad_norm 0) it still counts the extras."""
        if grad_norm is None and self.extra_modules is not None:
            self._sync_extra_gradients()
            grad_norm = self.accelerator.clip_grad_norm_(self._trained_parameters(model), float("inf"))
        return super()._get_grad_norm(model, grad_norm=grad_norm)

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """Save as HF does, add the extra modules, mark the checkpoint complete, then rotate old ones.

        A job killed mid-save leaves a directory without the marker, which
        :func:`last_complete_checkpoint` skips on resume. HF rotates inside its
        own save, before the marker exists: with ``save_total_limit: 1`` a kill
        in that window left no complete checkpoint at all. So HF's rotation is
        off during the save, and :func:`rotate_checkpoints` runs once this
        checkpoint is complete.
        """
        limit = self.args.save_total_limit
        self.args.save_total_limit = None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        root = Path(self._get_output_dir(trial=trial))
        folder = root / f"checkpoint-{self.state.global_step}"
        if self.args.should_save:
            if self.extra_modules is not None:
                state = {k: v.detach().cpu().contiguous() for k, v in self.extra_modules.state_dict().items()}
                save_file(state, str(folder / EXTRA_MODULES_FILE))
            atomic_write_text(folder / COMPLETE_MARKER, f"{self.state.global_step}\n")
            rotate_checkpoints(root, limit, keep=self.state.best_model_checkpoint)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = Path(resume_from_checkpoint) / EXTRA_MODULES_FILE
        if self.extra_modules is not None:
            if not path.is_file():
                raise FileNotFoundError(f"{resume_from_checkpoint}: no {EXTRA_MODULES_FILE} to restore projections")
            self.extra_modules.load_state_dict(load_file(str(path), device=str(self.args.device)))
