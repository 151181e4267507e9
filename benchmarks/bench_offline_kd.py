#!/usr/bin/env python
"""Offline KD's step against online KD's and the student alone's, through `run_training`, in one process.

    python benchmarks/bench_offline_kd.py [--shapes cpu-study|published|tiny] [--steps 30] [--k 64]
                                          [--corpus ZIP_OR_DIR] [--work DIR] [--device cpu|cuda]

Why: the teacher cache exists to remove the teachers' cost, so a cached step should cost about a
student-alone step plus the sparse loss. Four runs of the same recipe (BabyLlama's logit KD:
ce 0.5, kl 0.5, T = 2) on the same data, seed and batches: the student alone (pretraining), logit
KD with the live teachers, logit KD from the top-K cache (`cached`) and from the head-input cache
(`heads`: the teachers' logits recomputed from their stored head inputs, the online loss up to
float16 rounding), each cache built first for exactly the chunks its run will read (its cost is
reported apart: chunks built and seconds). Per run:
the median wall time of the steps after `--warmup` (a TrainerCallback around each optimizer
step). Shapes: `cpu-study` is config/reproduce/cpu.yaml's (student Llama 4 x 96, teachers GPT-2
and Llama 6 x 128, vocabulary 4,000, batch 32 x 128); `published` is the published student
(Llama-58M, vocabulary 16,000, batch 32 x 128) with two teachers of its own architecture (the
published 360M/705M teachers do not run a step in reasonable time on a CPU); `tiny` is the CI
smoke. Teachers are freshly initialised: the timing does not depend on what they learnt.
Prints JSON lines (one per run, then the ratios) and appends them to
benchmarks/results/offline_kd.jsonl with the machine and versions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import PreTrainedTokenizerBase, TrainerCallback

from babykd import REPO_ROOT
from babykd.config import RunConfig, load_model_config, load_run_config
from babykd.models import build_model
from babykd.training import load_data, run_training
from records import emit  # beside this file (the script's folder is on sys.path)

DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results" / "offline_kd.jsonl"
#: The shared folder (the lease kit points BABYKD_SHARED at its unpacked pack).
DEFAULT_CORPUS = Path(os.environ.get("BABYKD_SHARED", REPO_ROOT.parent / "shared")) / "corpus" / "substitute_10M.zip"
KD_RECIPE = REPO_ROOT / "config" / "runs" / "distill" / "BabyLlama1-58M-strict.yaml"
ALONE_RECIPE = REPO_ROOT / "config" / "runs" / "pretrain" / "Llama-58M-strict.yaml"
MODELS = REPO_ROOT / "config" / "reproduce" / "models"


@dataclasses.dataclass(frozen=True)
class Shapes:
    student: Path
    teachers: tuple[Path, ...]
    vocab_size: int
    seq_length: int
    batch: int


SHAPES = {
    "cpu-study": Shapes(MODELS / "cpu-llama-student.yaml", (MODELS / "cpu-gpt2-teacher.yaml",
                                                            MODELS / "cpu-llama-teacher.yaml"), 4000, 128, 32),
    "published": Shapes(REPO_ROOT / "config/models/Llama-58M.yaml", (REPO_ROOT / "config/models/Llama-58M.yaml",) * 2,
                        16000, 128, 32),
    "tiny": Shapes(REPO_ROOT / "config/models/tiny-llama-student.yaml",
                   (REPO_ROOT / "config/models/tiny-llama.yaml", REPO_ROOT / "config/models/tiny-gpt2.yaml"), 2000, 32, 8),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", choices=sorted(SHAPES), default="cpu-study")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the median")
    parser.add_argument("--k", type=int, default=64, help="top-K of the cache")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/babykd-bench-offline-kd"),
                        help="runs, tokenizer, token and teacher caches (the data is prepared once per corpus)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when there is one")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--no-results", action="store_true")
    options = parser.parse_args(argv)
    if options.steps <= options.warmup:
        parser.error("--steps must exceed --warmup (the median is over the steps after it)")
    return options


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step (synchronised on a GPU, so the time is the step's, not its launch's)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.started = 0.0

    def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
        _synchronize()
        self.started = time.perf_counter()

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        _synchronize()
        self.times.append(time.perf_counter() - self.started)


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def save_teachers(shapes: Shapes, work: Path, tokenizer: PreTrainedTokenizerBase) -> list[Path]:
    """Freshly initialised teachers of the shapes' architectures and vocabulary, saved with the run's tokenizer."""
    paths = []
    for index, model_file in enumerate(shapes.teachers):
        path = work / "teachers" / f"{index}-{model_file.stem}-{shapes.vocab_size}"
        if not (path / "config.json").is_file():
            torch.manual_seed(index)
            config = dataclasses.replace(load_model_config(model_file), vocab_size=shapes.vocab_size)
            build_model(config).save_pretrained(path)
            tokenizer.save_pretrained(path)
        paths.append(path)
    return paths


def run_config(arm: str, shapes: Shapes, options: argparse.Namespace, teachers: Sequence[Path]) -> RunConfig:
    """The arm's run config: the recipe at the shapes, on the corpus, in a fresh run folder under --work."""
    common = [
        f"model={shapes.student}", f"data.corpus={options.corpus.resolve()}", f"data.vocab_size={shapes.vocab_size}",
        f"data.seq_length={shapes.seq_length}", "data.random_offset=false", "data.eval_chunks=8",
        f"training.batch_size={shapes.batch}", f"training.per_device_batch_size={shapes.batch}",
        f"training.max_steps={options.steps}", "training.warmup_steps=1", f"training.logging_steps={options.steps}",
        f"training.save_steps={10 * options.steps}", "training.progress_bar=false",
        f"output.root={options.work.resolve()}", f"output.name=run-{arm}",
    ]
    if arm == "alone":
        return load_run_config(ALONE_RECIPE, common)
    distill = [f"distillation.teachers=[{','.join(map(str, teachers))}]", "distillation.kl_normalization=token",
               "distillation.log_term_shares=false"]
    if arm in CACHED_ARMS:
        distill += [CACHED_ARMS[arm].format(k=options.k),
                    f"distillation.teacher_cache_dir={cache_dir(arm, options).resolve()}"]
    return load_run_config(KD_RECIPE, [*common, *distill])


#: The cached arms and the override that selects each one's representation.
CACHED_ARMS = {"cached": "distillation.teacher_cache_top_k={k}", "heads": "distillation.teacher_cache_head_inputs=true"}


def cache_dir(arm: str, options: argparse.Namespace) -> Path:
    return options.work / f"teacher-cache-{arm}"


def measure(arm: str, shapes: Shapes, options: argparse.Namespace, teachers: Sequence[Path]) -> dict[str, Any]:
    """One fresh run of `arm`: median step time after the warm-up, and the cache build it needed."""
    config = run_config(arm, shapes, options, teachers)
    shutil.rmtree(config.output.run_dir, ignore_errors=True)
    if arm in CACHED_ARMS:
        shutil.rmtree(cache_dir(arm, options), ignore_errors=True)  # the build is part of what is measured
    timer = StepTimer()
    started = time.perf_counter()
    run_training(config, callbacks=[timer])
    record = {"arm": arm, "shapes": options.shapes, "steps": options.steps, "warmup": options.warmup,
              "median_step_s": round(statistics.median(timer.times[options.warmup:]), 4),
              "run_wall_s": round(time.perf_counter() - started, 1)}
    if arm in CACHED_ARMS:
        meta = json.loads((cache_dir(arm, options) / "meta.json").read_text(encoding="utf-8"))
        build = meta["builds"][-1]
        record.update(k=meta["top_k"], cache_chunks_built=build["chunks_built"], cache_build_s=build["seconds"],
                      corpus_chunks=meta["shape"][0], top_k_mass=meta["top_k_mass"],
                      cache_bytes_per_position=meta["bytes_per_position"])
    return record


def ratios(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each cached step over the student-alone step and over the online step (targets: <= 1.25 and <= 0.6)."""
    step = {r["arm"]: r["median_step_s"] for r in records}
    result: dict[str, Any] = {"event": "ratios", "online_over_alone": round(step["online"] / step["alone"], 3)}
    for arm in CACHED_ARMS:
        result[f"{arm}_over_alone"] = round(step[arm] / step["alone"], 3)
        result[f"{arm}_over_online"] = round(step[arm] / step["online"], 3)
    return result


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    options = parse_args(argv)
    if options.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    shapes = SHAPES[options.shapes]
    probe = run_config("alone", shapes, options, [])
    data = load_data(probe)  # tokenizer and token caches once, outside every timed run
    teachers = save_teachers(shapes, options.work, data.tokenizer)
    records = [measure(arm, shapes, options, teachers) for arm in ("alone", "online", *CACHED_ARMS)]
    records.append(ratios(records))
    emit("bench_offline_kd.py", argv, records, None if options.no_results else options.results)
    return records


if __name__ == "__main__":
    main()
