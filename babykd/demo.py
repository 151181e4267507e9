"""The built-in demo: the whole method, end to end, on a corpus the project generates itself.

    python -m babykd.demo [--out DIR] [--fast] [--eval-data DIR [--max-items N]] [--dry-run]
    python -m babykd.demo --real [CORPUS] [--eval-data DIR] [--dry-run]

A new user should see knowledge distillation work before booking a GPU, so
the default runs on a laptop CPU in a few minutes: generated corpus ->
cleaning + tokenizer + token cache -> two tiny teachers of different
architectures (GPT-2, Llama) -> a smaller Llama student distilled with
ensemble KD and with DSKD -> zero-shot evaluation of every model on minimal
pairs drawn from the same grammar (and on BLiMP/EWoK with ``--eval-data``) ->
results table, figure and a few sampled sentences. The runs are the
project's own: ``run_training`` on the configs in ``config/runs/demo/``.

``--real`` runs the same stages with the real recipe (``config/runs/pretrain``
teachers, ``config/runs/distill`` students) on a BabyLM-layout corpus; that is
GPU work. Every stage is skipped when its output exists, so a rerun continues
where an interrupted one stopped; everything is seeded.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

from babykd import REPO_ROOT
from babykd.run.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from babykd.config import ConfigError, RunConfig, config_differences, load_run_config, plain_config, saved_run_config
from babykd.rules import scaled_schedule
from babykd.evaluation.tasks import DEFAULT_TASKS, TASK_FOLDERS, Task, TaskDataError, default_data_dir, load_tasks

logger = logging.getLogger(__name__)

DEMO_CONFIGS = REPO_ROOT / "config" / "runs" / "demo"
#: Demo runs in training order: teachers first (students load them).
DEMO_RUNS = ("teacher-gpt2", "teacher-llama", "student-kd", "student-dskd")
#: The real recipe: the published teachers and the two distillation methods the demo shows.
REAL_RUNS = (
    "pretrain/GPT2-705M-strict",
    "pretrain/Llama-360M-strict",
    "distill/BabyLlama1-58M-strict",
    "distill/PalenkaLlama1-58M-strict-L0.1-H0.5",
)
DEFAULT_OUT = REPO_ROOT / "demo_output"
#: Prompt for the sampled sentences: the grammar's stories start this way, and so do many real ones.
SAMPLE_PROMPT = "Once upon a time"
#: Sustained fp32 throughput assumed per CPU core for the --real estimate (optimistic: a lower bound on time).
CPU_FLOPS_PER_CORE = 50e9
#: Characters per token of a 16k BPE on English, to estimate a corpus's tokens without tokenizing it.
CHARS_PER_TOKEN = 4.0


class DemoError(RuntimeError):
    """The demo cannot go on as asked (stale outputs, missing data); the message says what to do."""


@dataclass(frozen=True)
class Preset:
    """Size of the built-in demo: the generated corpus and the overrides applied to every demo run."""

    train_words: int
    dev_words: int
    pairs_per_task: int
    overrides: tuple[str, ...] = ()


PRESETS = {
    # The README's first command: under 5 minutes on 2 CPU cores, clearly above chance.
    "default": Preset(train_words=300_000, dev_words=20_000, pairs_per_task=200),
    # The test's size: the same pipeline in about a minute.
    "fast": Preset(train_words=100_000, dev_words=5_000, pairs_per_task=100,
                   overrides=("training.max_steps=250", "training.warmup_steps=20", "training.save_steps=100")),
}


@dataclass(frozen=True)
class Plan:
    """Everything the demo will do, resolved before anything runs (what --dry-run prints)."""

    mode: str  #: "default", "fast" (built-in corpus) or "real"
    out: Path
    corpus: Path
    runs: tuple[RunConfig, ...]  #: teachers first
    official_tasks: tuple[str, ...]  #: BLiMP/EWoK task names to score (empty: none)
    eval_data: Path | None
    max_items: int | None

    @property
    def preset(self) -> Preset | None:
        return PRESETS.get(self.mode)

    @property
    def pairs_dir(self) -> Path | None:
        """The generated minimal pairs (built-in corpus only)."""
        from babykd.data.grammar import PAIRS_SUBDIR

        return self.corpus / PAIRS_SUBDIR if self.preset else None


# ----------------------------------------------------------------------------- planning


def load_stage_configs(paths: Sequence[Path], overrides: Sequence[str], models_root: Path) -> tuple[RunConfig, ...]:
    """Load run configs with `overrides`, writing under `models_root`; students' teachers are
    looked up there by run name (the last part of each configured teacher path)."""
    configs = []
    for path in paths:
        config = load_run_config(path, [*overrides, f"output.root={models_root}"])
        if config.distillation is not None:
            config.distillation.teachers = [str(models_root / Path(t).name) for t in config.distillation.teachers]
        configs.append(config)
    names = [c.output.name for c in configs]
    for config in configs:
        missing = [t for t in (config.distillation.teachers if config.distillation else [])
                   if Path(t).name not in names[: names.index(config.output.name)]]
        if missing:
            raise ConfigError(f"{config.source}: teacher(s) {missing} are not trained before this run by the plan")
    return tuple(configs)


def official_tasks(eval_data: Path | None, required: bool) -> tuple[str, ...]:
    """The BLiMP/EWoK tasks present under `eval_data` (an error if `required` and there are none)."""
    if eval_data is None:
        return ()
    present = tuple(t for t in DEFAULT_TASKS if (eval_data / TASK_FOLDERS[t]).is_dir())
    if not present and required:
        folders = ", ".join(f"{TASK_FOLDERS[t]}/" for t in DEFAULT_TASKS)
        raise DemoError(f"--eval-data {eval_data}: none of {folders} found there")
    return present


def demo_plan(out: Path, mode: str = "default", eval_data: Path | None = None,
              max_items: int | None = None) -> Plan:
    """The built-in demo: generated corpus, the configs of config/runs/demo at `mode`'s size."""
    preset = PRESETS[mode]
    out = out.resolve()
    corpus = out / "corpus"
    overrides = [f"data.corpus={corpus}", f"data.tokenizer_dir={out / 'tokenizer'}",
                 f"data.cache_dir={out / 'cache'}", *preset.overrides]
    runs = load_stage_configs([DEMO_CONFIGS / f"{name}.yaml" for name in DEMO_RUNS], overrides, out / "models")
    for student in (run for run in runs if run.distillation is not None):
        # revisions/chck_* at the official schedule scaled to the demo corpus (learning curves, AoA)
        student.training.checkpoint_words = list(scaled_schedule(preset.train_words))
    tasks = official_tasks(eval_data, required=True)
    return Plan(mode, out, corpus, runs, tasks, eval_data, max_items)


def real_plan(out: Path, corpus: Path | None = None, eval_data: Path | None = None,
              max_items: int | None = None) -> Plan:
    """The real recipe on a BabyLM-layout corpus (default: the configs' own, ../shared's substitute)."""
    out = out.resolve()
    paths = [REPO_ROOT / "config" / "runs" / f"{name}.yaml" for name in REAL_RUNS]
    overrides = [f"data.corpus={corpus.resolve()}"] if corpus is not None else []
    runs = load_stage_configs(paths, overrides, out / "models")
    corpus_path = Path(runs[0].data.corpus)
    if not corpus_path.exists():
        raise DemoError(f"corpus not found: {corpus_path} (give it as --real CORPUS: a BabyLM directory or zip)")
    explicit = eval_data is not None
    eval_data = eval_data if explicit else default_data_dir()
    return Plan("real", out, corpus_path, runs, official_tasks(eval_data, required=explicit),
                eval_data, max_items)


def describe(plan: Plan) -> str:
    """The stages and their fully resolved configs, as --dry-run prints them."""
    lines = [f"mode: {plan.mode}", f"output: {plan.out}", f"corpus: {plan.corpus}"]
    if plan.preset:
        p = plan.preset
        lines.append(f"stage corpus: generate {p.train_words:,} train / {p.dev_words:,} dev words, "
                     f"{p.pairs_per_task} minimal pairs per phenomenon -> {plan.pairs_dir}")
    lines.append(f"stage data: clean + tokenizer + token cache ({plan.runs[0].data.vocab_size} tokens, "
                 f"seq_length {plan.runs[0].data.seq_length})")
    for config in plan.runs:
        lines.append(f"stage train {config.output.name}: {config.source} -> {config.output.run_dir}")
        lines.append(_indent(yaml.safe_dump(config.to_dict(), sort_keys=False)))
    tasks = ([str(plan.pairs_dir)] if plan.pairs_dir else []) + list(plan.official_tasks)
    subset = f" (at most {plan.max_items} items per subtask)" if plan.max_items else ""
    lines.append(f"stage evaluate: {', '.join(tasks) or 'nothing (no evaluation data found)'}{subset}")
    lines.append(f"stage report: {plan.out / 'results.md'}, results.csv, results.png")
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines())


# ----------------------------------------------------------------------------- stages


class StageLog:
    """One line per stage as it starts and one with its outcome and time, numbered."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.index = 0
        self.started = time.perf_counter()

    @contextmanager
    def stage(self, title: str) -> Iterator[list[str]]:
        """Run a stage; what the body appends to the yielded list is printed as its summary."""
        self.index += 1
        prefix = f"[{self.index}/{self.total}] {title}"
        print(f"==> {prefix}", flush=True)
        notes: list[str] = []
        start = time.perf_counter()
        yield notes
        print(f"<== {prefix}: {'; '.join(notes)} ({time.perf_counter() - start:.1f} s)", flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def generate_corpus(plan: Plan, notes: list[str]) -> None:
    """Write the demo corpus unless the same settings already wrote it to this output."""
    from babykd.data.grammar import generate_demo_corpus

    preset = plan.preset
    settings = {"train_words": preset.train_words, "dev_words": preset.dev_words,
                "pairs_per_task": preset.pairs_per_task, "seed": 0}
    stamp = plan.out / "corpus.json"
    if stamp.is_file():
        written = json.loads(stamp.read_text(encoding="utf-8"))
        if written.get("settings") != settings:
            raise DemoError(f"{plan.corpus} was generated with {written.get('settings')}, not {settings}: "
                            "use another --out or delete that directory")
        notes.append(f"exists ({written['train_words']:,} train words), skipped")
        return
    demo = generate_demo_corpus(plan.corpus, **settings)
    atomic_write_json(stamp, {"settings": settings, "train_words": demo.train_words,
                              "dev_words": demo.dev_words, "pairs": demo.pairs})
    notes.append(f"{demo.train_words:,} train + {demo.dev_words:,} dev words, "
                 f"{sum(demo.pairs.values())} minimal pairs in {len(demo.pairs)} phenomena")


def prepare(config: RunConfig, notes: list[str]) -> None:
    """Clean the corpus, train (or reuse) the shared tokenizer, build (or reuse) the token caches."""
    from babykd.training import load_data

    stats = load_data(config).stats
    train, dev = stats["splits"]["train"], stats["splits"]["dev"]
    tokenizer = stats["tokenizer"]
    notes.append(f"{train['documents']:,} documents / {train['words']:,} words cleaned")
    notes.append(f"tokenizer of {tokenizer['vocab_size']:,} tokens {'trained' if tokenizer['trained'] else 'reused'}")
    rebuilt = train["cache"]["rebuilt"] or dev["cache"]["rebuilt"]
    notes.append(f"{train['tokens']:,} train / {dev['tokens']:,} dev tokens {'cached' if rebuilt else 'reused'} "
                 f"({stats['dataset']['train_chunks']:,} chunks of {stats['dataset']['seq_length']})")


def train(config: RunConfig, notes: list[str]) -> None:
    """Train one run unless it finished with this config; an interrupted one resumes from its checkpoint."""
    from babykd.training import is_finished, run_training

    run_dir = config.output.run_dir
    saved = run_dir / "run_config.yaml"
    if saved.is_file():
        differs = config_differences(saved_run_config(saved), plain_config(config))
        if differs:
            raise DemoError(f"{saved} differs from this demo's config at '{differs[0]}': "
                            "use another --out or delete that run directory")
        if is_finished(run_dir):
            record = json.loads((run_dir / "provenance.json").read_text(encoding="utf-8"))
            notes.append(f"finished earlier ({record['global_steps']} steps), skipped")
            return
    result = run_training(config, resume=True)
    if result.preempted:
        raise DemoError(f"{config.output.name} stopped by a signal; run the demo again to continue")
    losses = [entry["loss"] for entry in result.history if "loss" in entry]
    notes.append(f"{result.parameters:,} parameters, train loss {losses[0]:.2f} -> {losses[-1]:.2f}, "
                 f"eval loss {result.metrics.get('eval_loss', math.nan):.2f}")


def evaluation_tasks(plan: Plan) -> list[Task]:
    """The generated pairs (every item) and the official tasks (subsampled by --max-items)."""
    tasks = load_tasks([plan.pairs_dir]) if plan.pairs_dir else []
    return tasks + load_tasks(plan.official_tasks, plan.eval_data, plan.max_items)


def results_path(config: RunConfig) -> Path:
    """Where a model's results go: the same file `python -m babykd.evaluate RUN_DIR` writes."""
    return config.output.run_dir / "eval" / "results.json"


def is_scored(path: Path, tasks: Sequence[Task]) -> bool:
    """True when `path` already holds every task scored on the same data and subset."""
    if not path.is_file():
        return False
    scored = json.loads(path.read_text(encoding="utf-8")).get("tasks", {})
    return all(t.name in scored and scored[t.name].get("data_sha256") == t.sha256
               and scored[t.name].get("max_items_per_subtask") == t.max_items_per_subtask for t in tasks)


def evaluate(config: RunConfig, tasks: Sequence[Task], notes: list[str]) -> dict[str, Any]:
    """Score one trained model on `tasks` (unless already scored) and write its results file."""
    from babykd.evaluation.report import read_results, write_results
    from babykd.evaluation.scorer import evaluate_model
    from babykd.generate import load_model

    path = results_path(config)
    if is_scored(path, tasks):
        record = read_results(path)
        notes.append(f"{config.output.name} scored earlier")
    else:
        model, tokenizer = load_model(config.output.run_dir)
        record = write_results(path, evaluate_model(model, tokenizer, tasks, progress=False,
                                                    model_name=str(config.output.run_dir)))
    notes.append(f"{config.output.name} " + ", ".join(f"{t.name} {record['tasks'][t.name]['score']:.3f}" for t in tasks))
    return record


def phenomenon_view(record: dict[str, Any], task: str) -> dict[str, Any]:
    """`record` with `task`'s subtasks as columns of their own (before its mean), for the table and figure."""
    entry = record["tasks"].get(task)
    if entry is None:
        return record
    columns = {name: {"score": sub["acc"], "stderr": sub["stderr"], "max_items_per_subtask": entry["max_items_per_subtask"]}
               for name, sub in entry["subtasks"].items()}
    others = {name: value for name, value in record["tasks"].items() if name != task}
    return {**record, "tasks": {**others, **columns, f"{task} (mean)": entry}}


def report(plan: Plan, records: Sequence[dict[str, Any]], notes: list[str]) -> str:
    """Write results.md/.csv/.png under the output directory; returns the markdown table."""
    from babykd.evaluation.report import csv_table, markdown_table, plot_results

    if plan.pairs_dir:
        records = [phenomenon_view(r, plan.pairs_dir.name) for r in records]
    table = markdown_table(records)
    atomic_write_text(plan.out / "results.md", table)
    atomic_write_text(plan.out / "results.csv", csv_table(records))
    atomic_write_bytes(plan.out / "results.png", plot_results(records))
    notes.append(f"{plan.out / 'results.md'}, results.csv, results.png")
    return table


def sample_text(config: RunConfig, notes: list[str]) -> list[str]:
    """Two sampled continuations of SAMPLE_PROMPT from the last (distilled) model."""
    from babykd.generate import load_model, sample_continuations

    model, tokenizer = load_model(config.output.run_dir)
    texts = sample_continuations(model, tokenizer, SAMPLE_PROMPT, num_samples=2, max_new_tokens=40, seed=0)
    notes.append(f"from {config.output.name}")
    return [SAMPLE_PROMPT + text for text in texts]


def run_plan(plan: Plan) -> list[dict[str, Any]]:
    """Every stage in order; returns the results records (one per model)."""
    tasks_wanted = bool(plan.pairs_dir or plan.official_tasks)
    log = StageLog(total=bool(plan.preset) + 1 + len(plan.runs) + 2 * tasks_wanted + 1)
    if plan.preset:
        with log.stage("corpus") as notes:
            generate_corpus(plan, notes)
    with log.stage("clean + tokenizer + token cache") as notes:
        prepare(plan.runs[0], notes)
    for config in plan.runs:
        role = "distil" if config.distillation else "pretrain"
        with log.stage(f"{role} {config.output.name} ({config.model.architecture})") as notes:
            train(config, notes)
    records = []
    if tasks_wanted:
        with log.stage("evaluate") as notes:
            tasks = evaluation_tasks(plan)
            records = [evaluate(config, tasks, notes) for config in plan.runs]
        with log.stage("report") as notes:
            table = report(plan, records, notes)
        print("\n" + table)
    with log.stage("sample text") as notes:
        texts = sample_text(plan.runs[-1], notes)
    for text in texts:
        print(f"  {text}")
    print(f"\ndone in {log.elapsed():.0f} s; everything is under {plan.out}")
    return records


# ----------------------------------------------------------------------------- --real on a CPU


def estimate_flops(plan: Plan) -> float:
    """Training FLOPs of the plan: 6·N per token for each student, plus 2·N per token per teacher."""
    import torch

    from babykd.data.corpus import open_corpus
    from babykd.models import build_model, count_parameters

    with torch.device("meta"):  # sizes only, no memory
        params = {c.output.name: count_parameters(build_model(c.model)) for c in plan.runs}
    chars = sum(len(f.read_text()) for f in open_corpus(plan.corpus).files if f.split in ("train", None))
    corpus_tokens = chars / CHARS_PER_TOKEN
    total = 0.0
    for config in plan.runs:
        t = config.training
        tokens = (t.max_steps * t.batch_size * config.data.seq_length if t.max_steps > 0
                  else t.epochs * corpus_tokens)
        teachers = sum(params[Path(p).name] for p in config.distillation.teachers) if config.distillation else 0
        total += tokens * (6 * params[config.output.name] + 2 * teachers)
    return total


def cpu_warning(plan: Plan) -> str:
    """What running the real recipe on this machine's CPU would cost (a lower bound)."""
    cores = os.cpu_count() or 1
    flops = estimate_flops(plan)
    days = flops / (CPU_FLOPS_PER_CORE * cores) / 86400
    return (f"warning: no GPU found. The real recipe is about {flops / 1e15:,.0f} PFLOP of training; "
            f"on {cores} CPU cores that is at least ~{days:,.0f} days (assuming {CPU_FLOPS_PER_CORE / 1e9:.0f} "
            "GFLOP/s per core). It is meant for GPUs (see scripts/slurm/); Ctrl-C to stop.")


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m babykd.demo",
        description="Run the whole pipeline (corpus -> tokenizer -> teachers -> KD and DSKD students -> "
                    "evaluation -> table) on a generated corpus in minutes on a CPU, or --real on BabyLM.")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output directory (default: {DEFAULT_OUT.name}/ in the repository; "
                             f"{DEFAULT_OUT.name}/fast or {DEFAULT_OUT.name}/real for those modes)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--fast", action="store_true", help="a smaller corpus and fewer steps (about a minute)")
    size.add_argument("--real", nargs="?", const="", default=None, metavar="CORPUS",
                      help="the real recipe (config/runs/pretrain + config/runs/distill) on a BabyLM corpus "
                           "(directory or zip; default: the configs' own, ../shared's substitute); for GPUs")
    parser.add_argument("--eval-data", type=Path, default=None,
                        help="directory with the official blimp_filtered/, supplement_filtered/, ewok_filtered/ "
                             "(also scored; --real defaults to $BABYKD_EVAL_DATA or ../shared/evaluation_data)")
    parser.add_argument("--max-items", type=int, default=None, metavar="N",
                        help="score at most N items per official subtask (evenly spaced)")
    parser.add_argument("--dry-run", action="store_true", help="print the stages and resolved configs, run nothing")
    return parser


def make_plan(args: argparse.Namespace) -> Plan:
    """The plan the parsed arguments ask for."""
    mode = "real" if args.real is not None else "fast" if args.fast else "default"
    out = args.out or (DEFAULT_OUT if mode == "default" else DEFAULT_OUT / mode)
    if mode == "real":
        return real_plan(out, Path(args.real) if args.real else None, args.eval_data, args.max_items)
    return demo_plan(out, mode, args.eval_data, args.max_items)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_items is not None and args.max_items < 1:
        parser.error("--max-items must be positive")
    try:
        plan = make_plan(args)
        if args.dry_run:
            print(describe(plan))
            return 0
        import torch

        if plan.mode == "real" and not torch.cuda.is_available():
            print(cpu_warning(plan), file=sys.stderr, flush=True)
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
        run_plan(plan)
    except (DemoError, ConfigError, TaskDataError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
