"""Reproduce the results table: teachers -> baselines -> distilled students -> evaluation -> RESULTS.md.

`python -m babykd.reproduce [CORPUS] --budget tiny|fast|full --seeds N` (or
`scripts/reproduce.sh`). Every stage is skipped when its output exists, so a
rerun after a crash or a lost lease continues where it stopped. A budget
(`config/reproduce/<budget>.yaml`) scales the published recipes; every
deviation it makes is printed in the header of the table.

Teachers are trained once (seed 0); baselines and students once per seed, as
`<name>-seed<k>`. A student's teachers are the seed-0 runs of the models its
recipe names.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from babykd import REPO_ROOT
from babykd.atomic import atomic_write_bytes, atomic_write_text
from babykd.config import RunConfig, dataclass_from_mapping, load_run_config, read_yaml
from babykd.provenance import file_sha256, provenance

logger = logging.getLogger(__name__)

TEACHERS = ("GPT2-705M-strict", "Llama-360M-strict")
BASELINES = ("GPT2-44M-strict", "GPT2-small-97M-strict", "Llama-60M-strict", "Llama-58M-strict")
STUDENTS = (
    "BabyLlama1-58M-strict",
    "DistilledGPT-44M-strict",
    "PalenkaLlama1-58M-strict-L0.1-H0.5-as-published",
    "PalenkaLlama1-58M-strict-L0.1-H0.5",
    "ContrastiveLlama-58M-strict",
    "AuxDSKD-Llama-58M-strict",
)
EVAL_TASKS = ("blimp_filtered", "blimp_supplement", "ewok_filtered")
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "corpus" / "substitute_10M.zip"
#: Comparisons the generated paragraph reports: (label, model A, model B).
COMPARISONS = (
    ("working hidden-state term vs as-published", "PalenkaLlama1-58M-strict-L0.1-H0.5",
     "PalenkaLlama1-58M-strict-L0.1-H0.5-as-published"),
    ("BabyLlama KD vs the same 58M model without teachers", "BabyLlama1-58M-strict", "Llama-58M-strict"),
)


@dataclass
class EvaluationBudget:
    max_items_per_subtask: int | None = None


@dataclass
class Budget:
    """How a budget scales the published recipes (config/reproduce/<name>.yaml)."""

    description: str
    seeds: int = 3
    overrides: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)
    distillation_overrides: list[str] = field(default_factory=list)
    evaluation: EvaluationBudget = field(default_factory=EvaluationBudget)


def load_budget(name: str) -> Budget:
    path = REPO_ROOT / "config" / "reproduce" / f"{name}.yaml"
    return dataclass_from_mapping(Budget, read_yaml(path), str(path))


@dataclass(frozen=True)
class Stage:
    """One training run of the reproduction."""

    recipe: str  # config/runs/{pretrain,distill}/<recipe>.yaml
    role: str  # teacher | baseline | student
    seed: int

    @property
    def run_name(self) -> str:
        return self.recipe if self.role == "teacher" else f"{self.recipe}-seed{self.seed}"

    @property
    def config_path(self) -> Path:
        folder = "distill" if self.role == "student" else "pretrain"
        return REPO_ROOT / "config" / "runs" / folder / f"{self.recipe}.yaml"


def plan(seeds: int) -> list[Stage]:
    """Teachers, then baselines, then students, in dependency order."""
    stages = [Stage(name, "teacher", 0) for name in TEACHERS]
    stages += [Stage(name, "baseline", s) for s in range(seeds) for name in BASELINES]
    stages += [Stage(name, "student", s) for s in range(seeds) for name in STUDENTS]
    return stages


def _absolute(override: str) -> str:
    """Section swaps in budget files (`data=config/data/tiny.yaml`) are relative to the repository."""
    key, _, value = override.partition("=")
    if "." not in key and value and not Path(value).is_absolute() and value.endswith(".yaml"):
        return f"{key}={REPO_ROOT / value}"
    return override


def stage_config(stage: Stage, budget: Budget, corpus: Path, out_root: Path) -> RunConfig:
    """The run config of a stage under a budget: recipe + budget overrides + corpus/output/teachers."""
    recipe = load_run_config(stage.config_path)
    overrides = [_absolute(o) for o in budget.overrides]
    if recipe.model.name in budget.models:
        overrides.append(f"model={REPO_ROOT / budget.models[recipe.model.name]}")
    overrides += [
        f"data.corpus={corpus}", f"output.root={out_root}", f"output.name={stage.run_name}",
        f"training.seed={stage.seed}",
    ]
    if recipe.distillation is not None:
        teachers = [str(out_root / teacher_run_name(Path(t).name)) for t in recipe.distillation.teachers]
        overrides += [f"distillation.teachers=[{','.join(teachers)}]", *budget.distillation_overrides]
    return load_run_config(stage.config_path, overrides)


def teacher_run_name(recipe: str) -> str:
    """Teachers are trained once; baselines used as teachers are their seed-0 runs."""
    return recipe if recipe in TEACHERS else f"{recipe}-seed0"


def run_stages(stages: Sequence[Stage], budget: Budget, corpus: Path, out_root: Path) -> None:
    from babykd.training import is_finished, run_training

    for index, stage in enumerate(stages, 1):
        config = stage_config(stage, budget, corpus, out_root)
        prefix = f"[{index}/{len(stages)}] {stage.role} {stage.run_name}"
        if is_finished(config.output.run_dir):
            print(f"{prefix}: done already, skipped")
            continue
        print(f"{prefix}: training", flush=True)
        started = time.perf_counter()
        result = run_training(config, resume=True)
        if result.preempted:
            sys.exit(f"{prefix}: stopped by a signal; rerun the same command to continue")
        print(f"{prefix}: finished in {time.perf_counter() - started:.0f} s", flush=True)


def evaluate_runs(run_dirs: Sequence[Path], budget: Budget, eval_data: Path | None) -> None:
    """Score every finished run on the three tasks unless its results file already has them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from babykd.evaluation import evaluate_model
    from babykd.evaluation.report import read_results, write_results

    for run_dir in run_dirs:
        results_path = run_dir / "eval" / "results.json"
        if results_path.exists() and set(EVAL_TASKS) <= set(read_results(results_path)["tasks"]):
            continue
        print(f"evaluating {run_dir.name}", flush=True)
        model = AutoModelForCausalLM.from_pretrained(run_dir)
        tokenizer = AutoTokenizer.from_pretrained(run_dir)
        results = evaluate_model(
            model, tokenizer, EVAL_TASKS, eval_data,
            max_items_per_subtask=budget.evaluation.max_items_per_subtask, model_name=str(run_dir),
        )
        write_results(results_path, results)


# ----------------------------------------------------------------------------- the table


@dataclass
class ModelRow:
    """Aggregated results of one model over its seeds."""

    label: str
    role: str
    parameters: int
    train_tokens: int
    wall_time_s: float
    scores: dict[str, list[float]]  # task -> per-seed scores
    item_stderr: dict[str, float | None]  # task -> stderr of the first seed's run

    def mean(self, task: str) -> float:
        return statistics.fmean(self.scores[task])

    def sd(self, task: str) -> float:
        values = self.scores[task]
        return statistics.stdev(values) if len(values) > 1 else float("nan")


def _tokens_seen(run_dir: Path, steps: int) -> int:
    config = yaml.safe_load((run_dir / "run_config.yaml").read_text())
    return steps * int(config["training"]["batch_size"]) * int(config["data"]["seq_length"])


def collect_rows(stages: Sequence[Stage], out_root: Path) -> list[ModelRow]:
    import json

    from babykd.evaluation.report import read_results

    rows: dict[str, ModelRow] = {}
    for stage in stages:
        run_dir = out_root / stage.run_name
        results_path = run_dir / "eval" / "results.json"
        if not results_path.exists():
            continue
        prov = json.loads((run_dir / "provenance.json").read_text())
        tasks = read_results(results_path)["tasks"]
        row = rows.setdefault(stage.recipe, ModelRow(
            stage.recipe, stage.role, prov["parameters"], _tokens_seen(run_dir, prov["global_steps"]),
            0.0, {t: [] for t in EVAL_TASKS}, {t: tasks[t]["stderr"] for t in EVAL_TASKS},
        ))
        row.wall_time_s += prov["wall_time_s"]
        for task in EVAL_TASKS:
            row.scores[task].append(tasks[task]["score"])
    for row in rows.values():
        row.wall_time_s /= len(row.scores[EVAL_TASKS[0]])
    return list(rows.values())


def _cell(row: ModelRow, task: str) -> str:
    sd = row.sd(task)
    spread = "" if math.isnan(sd) else f" ± {sd:.3f}"
    item = row.item_stderr[task]
    return f"{row.mean(task):.3f}{spread} ({item:.4f})" if item is not None else f"{row.mean(task):.3f}{spread}"


def markdown(rows: Sequence[ModelRow]) -> str:
    head = "| model | role | parameters | training tokens | wall time (s) | " + " | ".join(EVAL_TASKS) + " | seeds |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for row in rows:
        cells = " | ".join(_cell(row, t) for t in EVAL_TASKS)
        lines.append(
            f"| {row.label} | {row.role} | {row.parameters:,} | {row.train_tokens:,} | {row.wall_time_s:.0f} | "
            f"{cells} | {len(row.scores[EVAL_TASKS[0]])} |"
        )
    return "\n".join(lines)


def findings(rows: Sequence[ModelRow]) -> str:
    """A paragraph generated from the numbers: which differences exceed the seed-to-seed spread."""
    by_label = {row.label: row for row in rows}
    sentences = []
    rule = "a difference counts as real when |Δ| exceeds √(sd_a² + sd_b²) over seeds"
    for label, a, b in COMPARISONS:
        if a not in by_label or b not in by_label:
            continue
        parts = []
        for task in EVAL_TASKS:
            delta = by_label[a].mean(task) - by_label[b].mean(task)
            spread = math.hypot(by_label[a].sd(task), by_label[b].sd(task))
            verdict = "exceeds" if not math.isnan(spread) and abs(delta) > spread else "within"
            parts.append(f"{task} {delta * 100:+.1f} ± {spread * 100:.1f} points ({verdict} seed spread)")
        sentences.append(f"{label}: " + "; ".join(parts) + ".")
    teachers = [row for row in rows if row.role == "teacher"]
    students = [row for row in rows if row.role == "student"]
    for task in EVAL_TASKS if teachers and students else ():
        best = max(students, key=lambda r: r.mean(task))
        spread = best.sd(task)
        beaten = [f"{t.label} by {(best.mean(task) - t.mean(task)) * 100:.1f} points"
                  + ("" if math.isnan(spread) else
                     f" ({'exceeds' if best.mean(task) - t.mean(task) > spread else 'within'} its seed spread)")
                  for t in teachers if best.mean(task) > t.mean(task)]
        sentences.append(
            f"On {task} the best student ({best.label}, {best.mean(task):.3f}) "
            + (f"beats {', '.join(beaten)}." if beaten else "does not beat any teacher.")
        )
    return f"Rule: {rule}.\n\n" + "\n".join(f"- {s}" for s in sentences)


def write_report(rows: Sequence[ModelRow], budget_name: str, budget: Budget, corpus: Path,
                 out_root: Path, results_path: Path) -> None:
    from babykd.evaluation.report import plot_results

    figure = results_path.with_suffix(".png")
    records = [{"model": r.label, "tasks": {t: {"score": r.mean(t), "stderr": None if math.isnan(r.sd(t)) else r.sd(t)}
                                            for t in EVAL_TASKS}} for r in rows]
    atomic_write_bytes(figure, plot_results(records))
    prov = provenance(corpus=str(corpus), corpus_sha256=file_sha256(corpus))
    text = "\n".join([
        f"# Results — budget `{budget_name}`",
        "",
        f"Budget: {budget.description}. Overrides applied to every run: "
        f"`{' '.join(budget.overrides) or 'none'}`; architectures replaced: "
        f"{', '.join(f'{k}→{v}' for k, v in budget.models.items()) or 'none'}; "
        f"evaluation items per subtask: {budget.evaluation.max_items_per_subtask or 'all'}.",
        "",
        "Scores: mean ± sd over seeds (item-level stderr of the first seed's run in parentheses). "
        "Teachers are trained once. Wall time is training only, mean per seed.",
        "",
        markdown(rows),
        "",
        f"![results]({figure.name})",
        "",
        "## Findings",
        "",
        findings(rows),
        "",
        "## Provenance",
        "",
        *(f"- {key}: `{value}`" for key, value in prov.items()),
        f"- runs: `{out_root}`",
        "",
    ])
    atomic_write_text(results_path, text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS,
                        help=f"BabyLM directory or zip (default {DEFAULT_CORPUS})")
    parser.add_argument("--budget", default="fast", choices=["tiny", "fast", "full"])
    parser.add_argument("--seeds", type=int, help="seeds per baseline/student (default: the budget's)")
    parser.add_argument("--out", type=Path, help="where runs go (default models/reproduce-<budget>)")
    parser.add_argument("--results", type=Path, help="RESULTS.md path (default <out>/RESULTS.md)")
    parser.add_argument("--eval-data", type=Path, help="evaluation data dir (default ../shared/evaluation_data)")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)

    if not args.corpus.exists():
        sys.exit(f"corpus not found: {args.corpus} (give a BabyLM directory or zip)")
    budget = load_budget(args.budget)
    seeds = args.seeds or budget.seeds
    if seeds < 1:
        sys.exit("--seeds must be at least 1")
    out_root = (args.out or REPO_ROOT / "models" / f"reproduce-{args.budget}").resolve()
    stages = plan(seeds)
    started = time.perf_counter()
    run_stages(stages, budget, args.corpus.resolve(), out_root)
    evaluate_runs([out_root / s.run_name for s in stages], budget, args.eval_data)
    results_path = args.results or out_root / "RESULTS.md"
    write_report(collect_rows(stages, out_root), args.budget, budget, args.corpus.resolve(), out_root, results_path)
    print(results_path.read_text())
    print(f"reproduction ({args.budget}, {seeds} seeds) done in {time.perf_counter() - started:.0f} s: {results_path}")


if __name__ == "__main__":
    main()
