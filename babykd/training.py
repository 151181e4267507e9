"""Run a training job (pretraining or distillation) from a validated `RunConfig`.

One function, :func:`run_training`, serves `train.py`, `distill.py` and
`dskd_noaux.py`: the only difference between them is whether the config has a
`distillation` section. Output goes to `<output.root>/<output.name>/`:
the final student in standard HF format (safetensors + tokenizer) at the top,
`run_config.yaml` and `provenance.json` beside it, `checkpoints/` for resume
and `logs/` for TensorBoard. `provenance.json` is written last: its presence
means the run finished.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase, TrainerState, TrainingArguments
from transformers import set_seed
from transformers.integrations import TensorBoardCallback

from babykd.run.atomic import (
    atomic_directory, atomic_write_json, atomic_write_text, normal_permissions, write_failures_named,
)
from babykd.config import ConfigError, RunConfig, derive_batch_layout
from babykd.data.collator import FixedChunkCollator
from babykd.data.dataset import EpochShuffleSampler
from babykd.data.pipeline import PreparedData, prepare_data
from babykd.run.divergence import STOPPED_FILE, DivergenceGuard
from babykd.losses.shares import TERM_SHARES_FILE, TermShareLog
from babykd.models import build_model, count_parameters
from babykd.run.preemption import PreemptionCallback
from babykd.run.lock import folder_lock
from babykd.run.provenance import PROVENANCE_FILE, code_versions, provenance, record_code_version
from babykd.run.start import (
    CONFIG_CHANGES_FILE, RUN_CONFIG_FILE, RunFolderError, StartPlan, config_changes, plan_start, record_config_change,
)
from babykd.run.lineage import lineage_record
from babykd.rules import REVISIONS_DIR, check_words_budget, checkpoint_marks, planned_words, resolve_track
from babykd.run.words_seen import WordsSeen
from babykd.teacher_cache import HEADS_FILE, CachedHeads, CachedTargetsDataset, prepare_teacher_cache
from babykd.teachers import build_distillation_modules, check_logit_widths, load_teachers
from babykd.trainer import KDTrainer, TrainingClock
from babykd.run.checkpoints import checkpoint_state, last_complete_checkpoint

logger = logging.getLogger(__name__)



def use_bf16(precision: str) -> bool:
    """The one place that decides mixed precision: bf16 on a GPU that has it, fp32 on CPU."""
    if precision == "fp32":
        return False
    available = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if precision == "bf16" and not available:
        raise ConfigError("training.precision=bf16 needs a CUDA GPU with bf16 support, and this machine has none; "
                          "use auto or fp32")
    return available


def load_data(config: RunConfig) -> PreparedData:
    """Tokenizer (trained once on the train split) and the chunked datasets for a run.

    Unless the config names them, the tokenizer and token caches live under
    `<output.root>/tokenizers|cache/`, filed by the fingerprint of the cleaned text,
    so every run on the same corpus and vocabulary shares them (distillation needs that).
    """
    data = config.data
    return prepare_data(
        data.corpus, data.tokenizer_dir, data.cache_dir, default_root=config.output.root,
        seq_length=data.seq_length, vocab_size=data.vocab_size, min_frequency=data.min_frequency,
        document_boundaries=data.document_boundaries, random_offset=data.random_offset,
        eval_chunks=data.eval_chunks, seed=config.training.seed,
        text_column=data.text_column, source_column=data.source_column, doc_format=data.doc_format,
    )


def training_arguments(config: RunConfig, run_dir: Path) -> TrainingArguments:
    """HF TrainingArguments derived from our config (global batch -> per-device x accumulation)."""
    t = config.training
    layout = derive_batch_layout(t)
    bf16 = use_bf16(t.precision)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=layout.per_device,
        per_device_eval_batch_size=layout.per_device,
        gradient_accumulation_steps=layout.accumulation,
        learning_rate=t.lr,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.scheduler,
        weight_decay=t.weight_decay,
        adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2,
        adam_epsilon=t.adam_epsilon,
        max_grad_norm=t.max_grad_norm or 0.0,  # HF's "no clipping"
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        # HF's default filter replaces a NaN/inf step loss by the running mean, hiding a diverged run from
        # the log (and syncs the GPU every step to do so); babykd.run.divergence stops such a run instead.
        logging_nan_inf_filter=False,
        eval_strategy="steps" if t.eval_steps else "epoch",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        bf16=bf16,
        torch_compile=t.torch_compile,
        dataloader_num_workers=t.dataloader_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        accelerator_config={"non_blocking": torch.cuda.is_available()},  # pinned batches copied without a sync
        dataloader_drop_last=True,  # N processes then see exactly the global batches one process sees
        ddp_find_unused_parameters=False,  # every student parameter takes part in every forward
        disable_tqdm=not t.progress_bar,
        remove_unused_columns=False,  # cached teacher targets ride in the batch for the loss, not the model
        report_to="none",  # TensorBoard is attached explicitly (fixed log dir), see run_training
        optim="adamw_torch_fused" if torch.cuda.is_available() else "adamw_torch",
        use_cpu=not torch.cuda.is_available(),
    )


#: Global batches a data loader may read beyond the run's last step (see `chunks_read`).
PREFETCHED_BATCHES = 2


def chunks_read(config: RunConfig, data: PreparedData) -> np.ndarray:
    """The training chunks this run will read (its seed's permutation, max_steps × the global batch): what
    the teacher cache must hold. A run by epochs (no max_steps) reads them all.

    Plus the batches its data loader fetches past the last step: accelerate's loader reads one batch
    ahead (to know which batch is the last), :data:`PREFETCHED_BATCHES` covers it with a margin.
    """
    steps = config.training.max_steps
    samples = (steps + PREFETCHED_BATCHES) * config.training.batch_size if steps > 0 else None
    return EpochShuffleSampler(len(data.train_dataset), seed=config.training.seed).indices_read(samples)


def term_share_log(config: RunConfig, run_dir: Path, resumed: bool) -> TermShareLog | None:
    """Where a distillation run keeps its terms' gradient shares (None: pretraining, or turned off)."""
    if config.distillation is None or not config.distillation.log_term_shares:
        return None
    return TermShareLog(run_dir / TERM_SHARES_FILE, resumed=resumed)


def tensorboard_callback(run_dir: Path) -> TensorBoardCallback:
    """TensorBoard events in `<run_dir>/logs`, not HF's timestamped `checkpoints/runs/<date>` folder.

    Setting the callback's directory (rather than handing it a writer) matters: HF closes its
    writer when training ends and opens a new one for the final evaluation's metrics.
    """
    callback = TensorBoardCallback()
    callback.logging_dir = str(run_dir / "logs")
    return callback


@dataclass
class TrainingResult:
    """What a finished run produced."""

    run_dir: Path
    parameters: int
    train_tokens: int
    wall_time_s: float
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    preempted: bool = False


def run_training(config: RunConfig, resume: bool = False, callbacks: list[Any] | None = None, *,
                 fresh: bool = False, allow_config_change: bool = False) -> TrainingResult:
    """Train the student described by `config`, save it in HF format, return where.

    With `resume=True` the newest complete checkpoint under the run directory
    is continued (a fresh start when there is none), with the config it was saved
    with unless `allow_config_change`. Without it, a folder holding complete
    checkpoints or a finished run is only started over with `fresh=True` (see
    :mod:`babykd.run.start`). On SIGTERM/SIGUSR1 the run
    saves a checkpoint and returns early with `preempted=True` (no final model).
    The run folder is locked for the whole run (a second run into it is refused
    with the holder's host, pid and start time) and is left as it was until the
    data, teachers, model, optimizer and evaluation tasks are ready (see :func:`begin_run`).
    """
    with run_folder_lock(config.output.run_dir):
        plan = plan_start(config, resume=resume, fresh=fresh, allow_config_change=allow_config_change)
        if plan.checkpoint is None:
            check_fresh_start_can_clean(config.output.run_dir)
        return _run_locked(config, plan, callbacks)


def run_folder_lock(run_dir: Path) -> contextlib.AbstractContextManager[Path]:
    """The run folder's exclusive lock, held by global rank 0 for all ranks of one data-parallel run."""
    if int(os.environ.get("RANK", "0")) != 0:
        return contextlib.nullcontext(run_dir)
    return folder_lock(run_dir, purpose="another run")


def begin_run(config: RunConfig, run_dir: Path, plan: StartPlan) -> None:
    """Mark the run folder as holding this run, now that the run is known to start.

    Until here a rerun changes nothing in the folder: it is called once the data,
    teachers, model, optimizer and evaluation tasks are built, so a rerun that fails
    any check leaves a finished run finished, with its own config.
    The finished mark goes first: killed at any point after, the folder does not
    look finished. A fresh start also drops an earlier run's checkpoints, word-mark
    revisions and config-change log, which a later `--resume` (or the Trainer's rotation,
    or an AoA evaluation, or provenance) would otherwise mix with this run's; a resume
    with an allowed config change logs it. The code that trains from here on is logged too.
    """
    (run_dir / PROVENANCE_FILE).unlink(missing_ok=True)
    (run_dir / STOPPED_FILE).unlink(missing_ok=True)  # a diverged run tried again is no longer stopped
    if plan.checkpoint is None:
        drop_earlier_run(run_dir)
    record_config_change(run_dir, plan)
    record_code_version(run_dir, plan.step)
    atomic_write_text(run_dir / RUN_CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False))


def earlier_run_leftovers(run_dir: Path) -> list[Path]:
    """What a fresh start removes: the earlier run's checkpoints, revisions (with their scores and
    predictions), which this run must not mix with its own."""
    return [*sorted((run_dir / "checkpoints").glob("checkpoint-*")), run_dir / REVISIONS_DIR,
            run_dir / "eval" / REVISIONS_DIR, *sorted((run_dir / "eval" / "predictions").glob("chck_*"))]


def check_fresh_start_can_clean(run_dir: Path) -> None:
    """Refuse, before any work, a fresh start whose clean-up would meet a symbolic link.

    Why: `shutil.rmtree` refuses links, so such a start failed only in `begin_run`, after minutes of
    building data, teachers and model; deleting what the link points to could delete another run's work.
    """
    linked = [path for path in earlier_run_leftovers(run_dir) if path.is_symlink()]
    if linked:
        raise RunFolderError(
            f"{linked[0]} is a symbolic link (to {os.readlink(linked[0])}): a fresh start deletes the earlier "
            f"run's {linked[0].name} and does not follow links into other folders; remove the link and start again"
        )


def drop_earlier_run(run_dir: Path) -> None:
    """A fresh start's clean-up (`earlier_run_leftovers`) and the earlier run's config-change log."""
    leftovers = [path for path in earlier_run_leftovers(run_dir) if path.exists()]
    if leftovers:
        logger.warning("fresh start: removing the earlier run's %s in %s",
                       ", ".join(str(path.relative_to(run_dir)) for path in leftovers), run_dir)
    for path in leftovers:
        shutil.rmtree(path)
    (run_dir / CONFIG_CHANGES_FILE).unlink(missing_ok=True)


def _run_locked(config: RunConfig, plan: StartPlan, callbacks: list[Any] | None) -> TrainingResult:
    """:func:`run_training` once the run folder's lock is held."""
    run_dir = config.output.run_dir
    set_seed(config.training.seed)
    args = training_arguments(config, run_dir)
    with args.main_process_first(local=False, desc="tokenizer and token caches"):  # one writer
        data = load_data(config)
    check_tokenizer_fits(data.tokenizer, config.model.vocab_size)
    words = words_seen_for(config, data, run_dir)

    teachers: list[PreTrainedModel] = []
    train_dataset = data.train_dataset
    if config.distillation is not None:
        check_logit_widths(config.distillation, config.model.vocab_size)
    cached_heads = None
    if config.distillation is not None and config.distillation.uses_teacher_cache:
        with args.main_process_first(local=False, desc="teacher cache"):  # one writer
            cache = prepare_teacher_cache(config.distillation, data.train_dataset, data.tokenizer,
                                          data.cache_dir, args.device,
                                          torch.bfloat16 if args.bf16 else None, chunks_read(config, data))
        train_dataset = CachedTargetsDataset(data.train_dataset, cache)
        if config.distillation.teacher_cache_head_inputs:
            cached_heads = CachedHeads.load(cache.directory / HEADS_FILE)
    elif config.distillation is not None:
        teachers = load_teachers(config.distillation, data.tokenizer, config.data.seq_length)
    set_seed(config.training.seed)
    student = build_model(config.model)
    extra = build_distillation_modules(config.distillation, student, teachers) if config.distillation else None
    parameters = count_parameters(student)
    logger.info("student %s: %s parameters", config.model.name, f"{parameters:,}")

    trainer = KDTrainer(
        model=student,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=data.eval_dataset if len(data.eval_dataset) else None,
        processing_class=data.tokenizer,
        data_collator=FixedChunkCollator(),  # not HF's padding collator: see babykd.data.collator
        teachers=teachers,
        cached_heads=cached_heads,
        distillation=config.distillation,
        extra_modules=extra,
        words_seen=words,
        term_shares=term_share_log(config, run_dir, resumed=plan.checkpoint is not None),
        callbacks=[*(callbacks or []), tensorboard_callback(run_dir), preemption := PreemptionCallback()],
    )
    if config.evaluation is not None:
        attach_evaluation(trainer, config, data.tokenizer)
    trainer.create_optimizer()  # its arguments fail here, not at step 1 after begin_run; train() reuses it
    checkpoint = plan.checkpoint
    if checkpoint is not None:
        logger.info("resuming from %s", checkpoint)
    saved_state = checkpoint_state(checkpoint) if checkpoint else None
    clock = TrainingClock.resumed_from(saved_state)
    words.resumed(saved_state)
    trainer.add_callback(clock)
    guard = DivergenceGuard(run_dir, lambda: describe_checkpoint(last_complete_checkpoint(args.output_dir)))
    trainer.add_callback(guard)
    if trainer.is_world_process_zero():
        begin_run(config, run_dir, plan)
    if saved_state is not None and reached_max_steps(saved_state, args.max_steps):
        # Killed after its last checkpoint but before the end: HF Trainer would train one step past
        # max_steps on resume, so take the checkpoint as the trained model instead.
        logger.info("%s is at max_steps=%d: finishing from it without training", checkpoint, args.max_steps)
        trainer.state = saved_state
        trainer.model.load_state_dict(AutoModelForCausalLM.from_pretrained(checkpoint).state_dict())
    else:
        preemption.install()
        try:
            with write_failures_named(run_dir):
                trainer.train(resume_from_checkpoint=checkpoint)
        finally:
            preemption.uninstall()
    wall = clock.elapsed_s()
    if preemption.preempted:
        logger.warning("stopped by signal after step %d; checkpoint saved for --resume", trainer.state.global_step)
        return TrainingResult(run_dir, parameters, data.train_tokens, wall, {}, trainer.state.log_history, preempted=True)
    guard.check_final_weights(trainer.model, trainer.state)
    metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
    if trainer.is_world_process_zero():  # one writer; provenance last, as the "finished" mark
        with write_failures_named(run_dir):
            save_final_model(trainer.model, data.tokenizer, run_dir)
        atomic_write_json(
            run_dir / PROVENANCE_FILE,
            provenance(
                run=config.output.name, parameters=parameters, train_tokens=data.train_tokens,
                epochs=config.training.epochs, global_steps=trainer.state.global_step,
                wall_time_s=round(wall, 2), final_metrics=metrics, config_changes=config_changes(run_dir),
                code_versions=code_versions(run_dir, trainer.state.global_step),
                **lineage_record(
                    f"run:{run_dir.resolve()}", words.total, f"tokenizer:{data.stats['tokenizer']['fingerprint']}",
                    data.train_words, config.distillation.teachers if config.distillation else (),
                ),
            ),
        )
    trainer.accelerator.wait_for_everyone()  # every rank returns with the run finished on disk
    return TrainingResult(run_dir, parameters, data.train_tokens, wall, metrics, trainer.state.log_history)


def words_seen_for(config: RunConfig, data: PreparedData, run_dir: Path) -> WordsSeen:
    """The words-seen ledger of a run, after checking its schedule against its track's cap.

    Refused before any model is built: a schedule over the cap never starts.
    """
    track = resolve_track(config.rules.track, data.train_words)
    t = config.training
    planned, how = planned_words(
        t.epochs, t.max_steps, t.batch_size, len(data.train_dataset), data.train_dataset.total_words()
    )
    check_words_budget(track, data.train_words, planned, how)
    logger.info("rules: track %s, planned %s words seen (%s)", track, f"{planned:,}", how)
    return WordsSeen(checkpoint_marks(t.checkpoint_words, track), run_dir / REVISIONS_DIR)


def describe_checkpoint(checkpoint: str | None) -> str:
    """Where `--resume` continues from, for messages."""
    return f"--resume continues from {checkpoint}" if checkpoint else "no complete checkpoint yet"


def reached_max_steps(saved_state: TrainerState, max_steps: int) -> bool:
    """True when a step-limited run's checkpoint (its `saved_state`) was saved at (or past) its last step."""
    return max_steps > 0 and saved_state.global_step >= max_steps


def attach_evaluation(trainer: KDTrainer, config: RunConfig, tokenizer: PreTrainedTokenizerBase) -> None:
    """Score the zero-shot tasks during training as the config's `evaluation` section asks."""
    from babykd.evaluation import EvaluationCallback

    ev = config.evaluation
    assert ev is not None
    EvaluationCallback(
        tokenizer, ev.tasks, ev.data_dir, every_n_steps=ev.every_n_steps, each_epoch=ev.each_epoch,
        max_items_per_subtask=ev.max_items_per_subtask,
    ).attach(trainer)


def check_tokenizer_fits(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> None:
    """Fail before training when the tokenizer has ids the model's embedding cannot hold."""
    if len(tokenizer) > vocab_size:
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but model.vocab_size is {vocab_size}: "
            "use a tokenizer trained with data.vocab_size <= model.vocab_size"
        )


def save_final_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, run_dir: Path) -> None:
    """Write the student (safetensors + config) and tokenizer at the top of `run_dir`.

    Files are first written to a temporary directory, then moved into place one
    by one with atomic renames, so a reader never sees a half-written file.
    """
    staging = run_dir / ".final_model"
    with atomic_directory(staging) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    for file in staging.iterdir():
        normal_permissions(file)  # some writers create 0600 files; checkpoints are shared on clusters
        os.replace(file, run_dir / file.name)
    shutil.rmtree(staging, ignore_errors=True)


def is_finished(run_dir: str | os.PathLike) -> bool:
    """A run is finished when its provenance file exists (written after the model)."""
    return (Path(run_dir) / PROVENANCE_FILE).is_file()


def load_trained(run_dir: str | os.PathLike) -> PreTrainedModel:
    """Load a finished run's student with the stock Auto class."""
    return AutoModelForCausalLM.from_pretrained(run_dir)
