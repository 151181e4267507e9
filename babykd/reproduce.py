"""Reproduce the results table: teachers -> baselines -> distilled students -> evaluation -> RESULTS.md.

`python -m babykd.reproduce [CORPUS] --budget tiny|lease|cpu|fast|full --seeds N` (or
`scripts/reproduce.sh`). Every stage is skipped when its output exists, so a
rerun after a crash or a lost lease continues where it stopped. A budget
(`config/reproduce/<budget>.yaml`) scales the published recipes and may run a
subset of them (`plan:`); every deviation it makes is printed in the header of
the table. `--smoke` runs a budget's plan with the tiny budget's models, steps
and evaluation: the CPU check CI runs for budgets too big for a CPU.

Teachers are trained once (seed 0); baselines and students once per seed, as
`<name>-seed<k>`. A student's teachers are the seed-0 runs of the models its
recipe names. Every model is scored by the 2025 protocol on the tasks of the
budget's `evaluation:` (full or fast sets); a task that cannot be scored is
reported by name and the others kept. Outputs beside RESULTS.md: the figure
(`.png`) and the table as CSV (`.csv`), no weights, so a GPU lease can bring
the whole report back. A budget's `grids:` add a section per grid (every point
ranked by dev CE, its scores and gradient shares), a heat map per grid
(`RESULTS-grid-<grid>.png`) and their points as CSV (`RESULTS-grid.csv`). A budget's
`confirmation:` then chooses arms from those screens by dev CE and trains them on every
seed beside the plan (`babykd.confirmation`: the best points, logit KD at the best
point's alpha, the best hidden-term variant screened at it, the cache against online).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import logging
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import yaml

from babykd import REPO_ROOT
from babykd.run.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from babykd.config import ConfigError, RunConfig, dataclass_from_mapping, load_run_config, read_yaml
from babykd.errors import EvaluationError
from babykd.evaluation.suite import FULL_ONLY, SUITE_TASKS, result_name
from babykd.evaluation.suite_tasks import REGISTRY
from babykd.paired import DEV_CE, RULE, paired, paired_table
from babykd.run.provenance import file_sha256, provenance

if TYPE_CHECKING:
    from babykd.grid import Grid

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
ROLES = ("teacher", "baseline", "student")
BUDGETS_DIR = REPO_ROOT / "config" / "reproduce"
#: Where a budget's grid points run, below its output root.
GRID_DIR = "grid"
#: Grid points a --smoke screens (each a tiny run and its evaluation).
SMOKE_GRID_POINTS = 2
#: Per-stage wall times, kept next to the runs (merged across reruns).
STAGE_TIMES = "stage_times.json"
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "corpus" / "substitute_10M.zip"
#: Comparisons a budget reports unless it declares its own: (label, model A, model B).
COMPARISONS = (
    ("working hidden-state term vs as-published", "PalenkaLlama1-58M-strict-L0.1-H0.5",
     "PalenkaLlama1-58M-strict-L0.1-H0.5-as-published"),
    ("BabyLlama KD vs the same 58M model without teachers", "BabyLlama1-58M-strict", "Llama-58M-strict"),
    ("contrastive KD vs logit KD", "ContrastiveLlama-58M-strict", "BabyLlama1-58M-strict"),
    ("auxiliary classifiers vs logit KD", "AuxDSKD-Llama-58M-strict", "BabyLlama1-58M-strict"),
)



@dataclass
class EvaluationBudget:
    """What every model is scored on, by the 2025 protocol: the same code as `babykd.evaluate`, so the
    reproduction's numbers are the ones a submission would report (fast: the sets the official pipeline
    scores intermediate checkpoints on; max_items_per_subtask: an evenly spaced subset, None for all)."""

    tasks: list[str] = field(default_factory=lambda: list(EVAL_TASKS))
    fast: bool = False
    max_items_per_subtask: int | None = None

    def validate(self, where: str) -> None:
        unknown = [task for task in self.tasks if task not in SUITE_TASKS]
        if not self.tasks or unknown:
            raise ConfigError(f"{where}: evaluation.tasks: {unknown or 'empty'}: choose from {', '.join(SUITE_TASKS)}")
        if self.fast and (full_only := FULL_ONLY & set(self.tasks)):
            raise ConfigError(f"{where}: evaluation.tasks: {', '.join(sorted(full_only))} has no fast set "
                              "(evaluation.fast: true)")
        if self.max_items_per_subtask is not None and self.max_items_per_subtask < 1:
            raise ConfigError(f"{where}: evaluation.max_items_per_subtask must be >= 1 (or null: every item)")

    @property
    def columns(self) -> list[str]:
        """The table's columns: the tasks' results.json keys (`<task>_fast` for fast sets), reading followed by
        its self-paced gain (`report.columns_of`), so every scored value is in the table, CSV and figure."""
        from babykd.evaluation.report import columns_of

        return columns_of([result_name(task, self.fast) for task in self.tasks])


@dataclass
class Comparison:
    """A paired-by-seed difference the findings report: `a` − `b`, two recipes of the plan."""

    label: str
    a: str
    b: str


@dataclass
class PlanBudget:
    """Which recipes a budget trains (default: all of them)."""

    teachers: list[str] = field(default_factory=lambda: list(TEACHERS))
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    students: list[str] = field(default_factory=lambda: list(STUDENTS))


@dataclass
class GridBudget:
    """A grid screened at the budget's sizes after the plan's stages, seed 0, teachers from the plan.

    Each point runs through `babykd.grid.run_point`, the function every SLURM array task of
    ``python -m babykd.grid run GRID INDEX`` runs, with the budget's student overrides, then
    `overrides` (a screen is shorter than a confirmation); `points` picks indices (default all).
    """

    file: str
    overrides: list[str] = field(default_factory=list)
    points: list[int] | None = None

    def validate(self, where: str) -> None:
        from babykd.grid import load_grid

        if not (REPO_ROOT / self.file).is_file():
            raise ConfigError(f"{where}: grid.file: {self.file} not found")
        grid = load_grid(REPO_ROOT / self.file)
        bad = [index for index in self.points or () if not 0 <= index < len(grid.points)]
        if bad:
            raise ConfigError(f"{where}: grid.points {bad}: the grid has points 0..{len(grid.points) - 1}")

    @property
    def path(self) -> Path:
        return REPO_ROOT / self.file

    def indices(self, grid: "Grid") -> list[int]:
        """The points it screens, in order (`grid`: its file, loaded)."""
        return list(self.points) if self.points is not None else list(range(len(grid.points)))


@dataclass
class ConfirmationBudget:
    """Arms chosen from a budget's screens by dev CE and trained per seed beside its plan (`babykd.confirmation`).

    Why chosen by the code and not written into the budget after a look at the screen: the one command that
    reproduces a study must make the same choice on anyone's screen, and say why it made it.
    `screens`: grid files of the budget's `grids`, their points ranked together; `best`: how many of
    them become arms; `logit_kd`: the overrides that turn a recipe into logit KD (every arm is compared
    with the best point's alpha under them); `variants`: grids screened at that alpha, whose best point
    becomes an arm; `cache`: logit KD at that alpha from the head-input teacher cache against the same
    recipe online, both on fixed chunks (is the cache the same recipe?).
    """

    screens: list[str]
    logit_kd: list[str]
    best: int = 3
    variants: list[GridBudget] = field(default_factory=list)
    cache: bool = False

    def validate(self, where: str, grids: Sequence[GridBudget]) -> None:
        screened = {grid.file for grid in grids}
        if not self.screens or (unknown := [f for f in self.screens if f not in screened]):
            raise ConfigError(f"{where}: confirmation.screens: {unknown if self.screens else 'empty'}: name grid "
                              f"files of the budget's grids ({', '.join(sorted(screened)) or 'none'})")
        if self.best < 1:
            raise ConfigError(f"{where}: confirmation.best must be >= 1 (the screened points that become arms)")
        if not self.logit_kd:
            raise ConfigError(f"{where}: confirmation.logit_kd: empty; give the overrides that make the best point "
                              "logit KD (for example distillation.weights.hidden=0)")
        for variant in self.variants:
            variant.validate(where)


@dataclass
class Budget:
    """How a budget scales the published recipes (config/reproduce/<name>.yaml).

    Overrides apply in this order: `overrides` (every run), `role_overrides[role]`,
    the architecture swap of `models`, then `distillation_overrides` (students).
    """

    description: str
    seeds: int = 3
    plan: PlanBudget = field(default_factory=PlanBudget)
    overrides: list[str] = field(default_factory=list)
    role_overrides: dict[str, list[str]] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    distillation_overrides: list[str] = field(default_factory=list)
    evaluation: EvaluationBudget = field(default_factory=EvaluationBudget)
    grids: list[GridBudget] = field(default_factory=list)
    confirmation: ConfirmationBudget | None = None
    #: Default: the published question's comparisons (every recipe of them is in the default plan).
    comparisons: list[Comparison] = field(default_factory=lambda: [Comparison(*c) for c in COMPARISONS])
    #: What results at this budget's scale can and cannot say about the published ones (a RESULTS.md
    #: section): written with the budget because it follows from its sizes, not from the numbers.
    scope: str | None = None

    def validate(self, where: str) -> None:
        for role in self.role_overrides:
            if role not in ROLES:
                raise ConfigError(f"{where}: role_overrides.{role}: not a role (choose from {', '.join(ROLES)})")
        for role, names in (("teacher", self.plan.teachers), ("baseline", self.plan.baselines),
                            ("student", self.plan.students)):
            for name in names:
                if not Stage(name, role, 0).config_path.is_file():
                    raise ConfigError(
                        f"{where}: plan: {role} recipe {name!r} not found at {Stage(name, role, 0).config_path}")
        for name, path in self.models.items():
            if not (REPO_ROOT / path).is_file():
                raise ConfigError(f"{where}: models.{name}: {path} not found")
        self.evaluation.validate(where)
        for grid in self.grids:
            grid.validate(where)
        if self.confirmation is not None:
            self.confirmation.validate(where, self.grids)
        if self.scope is not None and not self.scope.strip():
            raise ConfigError(f"{where}: scope: empty (leave it out, or say what this scale can and cannot show)")
        planned = {*self.plan.teachers, *self.plan.baselines, *self.plan.students}
        for index, comparison in enumerate(self.comparisons):
            for side in ("a", "b"):
                if getattr(comparison, side) not in planned:
                    raise ConfigError(f"{where}: comparisons[{index}].{side}: {getattr(comparison, side)!r} "
                                      "is not trained by this budget's plan")

    def shrunk(self, tiny: "Budget") -> "Budget":
        """This budget's plan, role structure and tasks with `tiny`'s data, models, steps and items per subtask.

        The smoke scores this budget's own tasks (a few items each), so CI exercises its evaluation path.

        `tiny`'s overrides go after this budget's role overrides, so they win; this budget's own
        every-run overrides (its data and batch sizes) are dropped.
        """
        return dataclasses.replace(
            self, description=f"{self.description} — smoke: {tiny.description}", overrides=[],
            role_overrides={role: [*self.role_overrides.get(role, []), *tiny.overrides] for role in ROLES},
            models=tiny.models, distillation_overrides=[*self.distillation_overrides, *tiny.distillation_overrides],
            evaluation=dataclasses.replace(self.evaluation,
                                           max_items_per_subtask=tiny.evaluation.max_items_per_subtask),
            grids=[smoke_screen(screen) for screen in self.grids],
            confirmation=None if self.confirmation is None else dataclasses.replace(
                self.confirmation, best=1, variants=[smoke_screen(v) for v in self.confirmation.variants]),
        )


def smoke_screen(screen: GridBudget) -> GridBudget:
    """A grid as a smoke screens it: its first few points at the tiny budget's steps."""
    from babykd.grid import load_grid

    return dataclasses.replace(screen, overrides=[], points=screen.indices(load_grid(screen.path))[:SMOKE_GRID_POINTS])


def budget_names() -> list[str]:
    return sorted(path.stem for path in BUDGETS_DIR.glob("*.yaml"))


def load_budget(name: str) -> Budget:
    path = BUDGETS_DIR / f"{name}.yaml"
    budget = dataclass_from_mapping(Budget, read_yaml(path), str(path))
    budget.validate(str(path))
    return budget


@dataclass(frozen=True)
class Stage:
    """One training run of the reproduction: a recipe of the plan, or a confirmation arm (a recipe under
    `overrides`, named `arm`, chosen from a screen by `babykd.confirmation`)."""

    recipe: str  # config/runs/{pretrain,distill}/<recipe>.yaml
    role: str  # teacher | baseline | student
    seed: int
    arm: str | None = None
    overrides: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The model's name in the table (its runs are `<label>-seed<k>`)."""
        return self.arm or self.recipe

    @property
    def run_name(self) -> str:
        return self.label if self.role == "teacher" else f"{self.label}-seed{self.seed}"

    @property
    def config_path(self) -> Path:
        folder = "distill" if self.role == "student" else "pretrain"
        return REPO_ROOT / "config" / "runs" / folder / f"{self.recipe}.yaml"


def plan(seeds: int, recipes: PlanBudget | None = None) -> list[Stage]:
    """Teachers, then baselines, then students, in dependency order."""
    recipes = recipes or PlanBudget()
    stages = [Stage(name, "teacher", 0) for name in recipes.teachers]
    stages += [Stage(name, "baseline", s) for s in range(seeds) for name in recipes.baselines]
    stages += [Stage(name, "student", s) for s in range(seeds) for name in recipes.students]
    return stages


def _absolute(override: str) -> str:
    """Section swaps in budget files (`data=config/data/tiny.yaml`) are relative to the repository."""
    key, _, value = override.partition("=")
    if "." not in key and value and not Path(value).is_absolute() and value.endswith(".yaml"):
        return f"{key}={REPO_ROOT / value}"
    return override


def stage_config(stage: Stage, budget: Budget, corpus: Path, out_root: Path) -> RunConfig:
    """The run config of a stage under a budget: recipe + budget overrides + corpus/output/teachers."""
    overrides = budget_overrides(stage.config_path, stage.role, budget, corpus, out_root)
    return load_run_config(stage.config_path, [*overrides, *stage.overrides, f"output.name={stage.run_name}",
                                               f"training.seed={stage.seed}"])


def budget_overrides(recipe_path: Path, role: str, budget: Budget, corpus: Path, out_root: Path) -> list[str]:
    """What a budget changes in a recipe of `role`: its sizes, the model swap, corpus, output root, teachers."""
    recipe = load_run_config(recipe_path)
    overrides = [_absolute(o) for o in [*budget.overrides, *budget.role_overrides.get(role, [])]]
    if recipe.model.name in budget.models:
        overrides.append(f"model={REPO_ROOT / budget.models[recipe.model.name]}")
    overrides += [f"data.corpus={corpus}", f"output.root={out_root}"]
    if recipe.distillation is not None:
        teachers = [str(out_root / teacher_run_name(Path(t).name)) for t in recipe.distillation.teachers]
        overrides += [f"distillation.teachers=[{','.join(teachers)}]", *budget.distillation_overrides]
    return overrides


@dataclass(frozen=True)
class Screen:
    """A grid as a budget screens it: its entry, the loaded file, every point's `--set` list, the points."""

    entry: GridBudget
    grid: "Grid"
    overrides: list[str]
    indices: list[int]
    extra: tuple[str, ...] = ()  # what a confirmation added to the entry's overrides (the chosen alpha)

    def run_dirs(self) -> list[Path]:
        return [self.grid.config(index, self.overrides).output.run_dir for index in self.indices]


def screens(entries: Sequence[GridBudget], budget: Budget, corpus: Path, out_root: Path,
            extra: Sequence[str] = (), folder: str = GRID_DIR) -> list[Screen]:
    """The grids `entries` screened at the budget's student sizes, seed 0, under `<out_root>/<folder>`.

    Every point's `--set` list: the budget's student overrides, the output root, the seed, the entry's own
    overrides (a screen is shorter than a confirmation), then `extra` (a confirmation's chosen alpha).
    """
    from babykd.grid import load_grid

    loaded = []
    for entry in entries:
        grid = load_grid(entry.path)
        overrides = [*budget_overrides(grid.base, "student", budget, corpus, out_root),
                     f"output.root={out_root / folder}", "training.seed=0", *entry.overrides, *extra]
        loaded.append(Screen(entry, grid, overrides, entry.indices(grid), tuple(extra)))
    return loaded


def run_grids(screened: Sequence[Screen], out_root: Path) -> None:
    """Train every point of `screened` (their teachers come from the plan), timed per point."""
    from babykd.grid import run_point
    from babykd.run.preemption import PREEMPTED_EXIT_CODE

    clock = StageClock(out_root)
    for screen in screened:
        for position, index in enumerate(screen.indices, 1):
            name = screen.grid.point(index).name
            started = time.perf_counter()
            print(f"[{screen.grid.source.stem} {position}/{len(screen.indices)}] point {index} {name}", flush=True)
            if run_point(screen.grid, index, screen.overrides) == PREEMPTED_EXIT_CODE:
                sys.exit(f"grid point {index}: stopped by a signal; rerun the same command to continue")
            if time.perf_counter() - started > 5:  # a point found finished: nothing to record
                clock.record(f"grid {name}", time.perf_counter() - started)


def teacher_run_name(recipe: str) -> str:
    """Teachers are trained once; baselines used as teachers are their seed-0 runs."""
    return recipe if recipe in TEACHERS else f"{recipe}-seed0"


class StageClock:
    """Wall time of each stage (training includes the data preparation the first run does), saved as it goes."""

    def __init__(self, out_root: Path) -> None:
        self.path = out_root / STAGE_TIMES
        self.times: dict[str, float] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def record(self, key: str, seconds: float) -> None:
        self.times[key] = round(seconds, 1)
        atomic_write_json(self.path, self.times)


def run_stages(stages: Sequence[Stage], budget: Budget, corpus: Path, out_root: Path) -> None:
    from babykd.run.start import RUN_CONFIG_FILE, resume_changes
    from babykd.training import is_finished, run_training

    clock = StageClock(out_root)
    for index, stage in enumerate(stages, 1):
        config = stage_config(stage, budget, corpus, out_root)
        prefix = f"[{index}/{len(stages)}] {stage.role} {stage.run_name}"
        if is_finished(config.output.run_dir):
            changed = resume_changes(config, config.output.run_dir)
            if changed:  # an edited budget must not be answered by a run of the old one
                sys.exit(f"{prefix}: {config.output.run_dir} is a finished run of another config (its "
                         f"{RUN_CONFIG_FILE} differs at {', '.join(changed)}): move it aside to train this stage again")
            print(f"{prefix}: done already, skipped")
            continue
        print(f"{prefix}: training", flush=True)
        started = time.perf_counter()
        result = run_training(config, resume=True)
        if result.preempted:
            sys.exit(f"{prefix}: stopped by a signal; rerun the same command to continue")
        clock.record(f"train {stage.run_name}", time.perf_counter() - started)
        print(f"{prefix}: finished in {time.perf_counter() - started:.0f} s", flush=True)


def evaluate_runs(run_dirs: Sequence[Path], evaluation: EvaluationBudget, eval_data: Path | None,
                  suite_data: Path | None, out_root: Path) -> None:
    """Score every finished run on the budget's tasks that its results file does not hold yet.

    Through `babykd.evaluate`, the command a user scores a checkpoint with: the same records (provenance,
    dtype, predictions), so a reproduction's numbers are the ones a submission would report. A task that
    fails (missing data, an input longer than a position table) is written to the results file's "errors"
    and printed, as is a model that cannot be loaded at all (each of its tasks); the other models and tasks
    are kept, and a rerun tries only the failed ones.
    """
    from babykd import evaluate
    from babykd.evaluation.report import read_results, write_results

    clock = StageClock(out_root)
    for run_dir in run_dirs:
        results_path = run_dir / "eval" / "results.json"
        done = read_results(results_path)["tasks"] if results_path.exists() else {}
        todo = [task for task in evaluation.tasks if result_name(task, evaluation.fast) not in done]
        if not todo:
            continue
        print(f"evaluating {run_dir.name}: {', '.join(todo)}", flush=True)
        argv = [str(run_dir), "--protocol", "2025", "--tasks", *todo, "--no-progress",
                *(["--fast"] if evaluation.fast else []),
                *(["--max-items-per-subtask", str(evaluation.max_items_per_subtask)]
                  if evaluation.max_items_per_subtask else []),
                *(["--data-dir", str(eval_data)] if eval_data else []),
                *(["--suite-data", str(suite_data)] if suite_data else [])]
        started = time.perf_counter()
        try:
            evaluate.run(evaluate.parse_args(argv))
        except EvaluationError as exc:  # after the tasks that could be scored were written
            why = " ".join(str(exc).split())
            print(f"  {run_dir.name}: {why}", flush=True)
            written = read_results(results_path) if results_path.exists() else {"tasks": {}}
            names = [result_name(task, evaluation.fast) for task in todo]
            accounted = {*written["tasks"], *written.get("errors", {})}
            unaccounted = [name for name in names if name not in accounted]
            if unaccounted:  # nothing was scored (the model or its data did not load): each task says why
                write_results(results_path, {"model": str(run_dir.resolve()), "protocol": "2025", "tasks": {},
                                             "errors": dict.fromkeys(unaccounted, why)})
        clock.record(f"evaluate {run_dir.name}", time.perf_counter() - started)


# ----------------------------------------------------------------------------- the table


@dataclass
class ModelRow:
    """Aggregated results of one model over its seeds (`scores[key][i]` belongs to `seeds[i]`)."""

    label: str
    role: str
    parameters: int
    train_tokens: int
    wall_time_s: float
    scores: dict[str, list[float]]  # task or DEV_CE -> per-seed values (nan: not recorded)
    item_stderr: dict[str, float | None]  # task -> stderr of the first seed's run
    seeds: list[int] = field(default_factory=list)
    words_seen: int | None = None  # provenance `words_seen` of the first seed's run
    lineage_words_seen: int | None = None  # provenance `lineage_words_seen` (teachers' words included)
    errors: list[str] = field(default_factory=list)  # "<run>: <task>: why" of each task a run could not score

    def mean(self, key: str) -> float:
        return statistics.fmean(self.scores[key])

    def sd(self, key: str) -> float:
        values = self.scores[key]
        return statistics.stdev(values) if len(values) > 1 else float("nan")

    def by_seed(self, key: str) -> dict[int, float]:
        return dict(zip(self.seeds, self.scores[key]))


def _tokens_seen(run_dir: Path, steps: int) -> int:
    config = yaml.safe_load((run_dir / "run_config.yaml").read_text())
    return steps * int(config["training"]["batch_size"]) * int(config["data"]["seq_length"])


def _optional_int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) else None


def collect_rows(stages: Sequence[Stage], out_root: Path, columns: Sequence[str]) -> list[ModelRow]:
    """One row per recipe over its seeds; a task a run could not score is nan there and named in `errors`."""
    from babykd.evaluation.report import cell_value, read_results

    rows: dict[str, ModelRow] = {}
    for stage in stages:
        run_dir = out_root / stage.run_name
        results_path = run_dir / "eval" / "results.json"
        if not results_path.exists():
            continue
        prov = json.loads((run_dir / "provenance.json").read_text())
        results = read_results(results_path)
        tasks = results["tasks"]
        row = rows.setdefault(stage.label, ModelRow(
            stage.label, stage.role, prov["parameters"], _tokens_seen(run_dir, prov["global_steps"]),
            0.0, {key: [] for key in (*columns, DEV_CE)}, {t: tasks.get(t, {}).get("stderr") for t in columns},
            words_seen=_optional_int(prov.get("words_seen")),
            lineage_words_seen=_optional_int(prov.get("lineage_words_seen")),
        ))
        row.wall_time_s += prov["wall_time_s"]
        row.seeds.append(stage.seed)
        for column in columns:
            row.scores[column].append(cell_value(results, column))
        row.errors += [f"{stage.run_name}: {task}: {why}" for task, why in results.get("errors", {}).items()]
        row.scores[DEV_CE].append(float((prov.get("final_metrics") or {}).get("eval_loss", math.nan)))
    for row in rows.values():
        row.wall_time_s /= len(row.seeds)
    return list(rows.values())


def _cell(row: ModelRow, task: str) -> str:
    if any(math.isnan(v) for v in row.scores[task]):
        return "n/a"
    sd = row.sd(task)
    spread = "" if math.isnan(sd) else f" ± {sd:.3f}"
    item = row.item_stderr.get(task)
    return f"{row.mean(task):.3f}{spread} ({item:.4f})" if item is not None else f"{row.mean(task):.3f}{spread}"


def _words(row: ModelRow) -> str:
    def show(value: int | None) -> str:
        return "n/a" if value is None else f"{value:,}"

    return f"{show(row.words_seen)} / {show(row.lineage_words_seen)}"


def markdown(rows: Sequence[ModelRow], columns: Sequence[str]) -> str:
    head = ("| model | role | parameters | training tokens | words seen (model / lineage) | wall time (s) | "
            + " | ".join((DEV_CE, *columns)) + " | seeds |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for row in rows:
        cells = " | ".join(_cell(row, t) for t in (DEV_CE, *columns))
        lines.append(
            f"| {row.label} | {row.role} | {row.parameters:,} | {row.train_tokens:,} | {_words(row)} | "
            f"{row.wall_time_s:.0f} | {cells} | {len(row.seeds)} |"
        )
    return "\n".join(lines)


def findings(rows: Sequence[ModelRow], comparisons: Sequence[Comparison], columns: Sequence[str]) -> str:
    """The paired-difference table, then a list generated from the numbers: which differences exceed the noise."""
    by_label = {row.label: row for row in rows}
    keys = (DEV_CE, *columns)
    sentences, pairs = [], []
    for comparison in comparisons:
        if comparison.a not in by_label or comparison.b not in by_label:
            continue
        results = [paired(by_label[comparison.a], by_label[comparison.b], key) for key in keys]
        pairs.append((comparison.label, results))
        parts = [result.describe() for result in results if result is not None]
        if parts:
            sentences.append(f"{comparison.label}: " + "; ".join(parts) + ".")
    teachers = [row for row in rows if row.role == "teacher"]
    baselines = [row for row in rows if row.role == "baseline"]
    students = [row for row in rows if row.role == "student"]
    for teacher in teachers:
        for baseline in baselines:
            if any(math.isnan(v) for v in (*teacher.scores[DEV_CE], *baseline.scores[DEV_CE])):
                continue
            margin = baseline.mean(DEV_CE) - teacher.mean(DEV_CE)
            sd = baseline.sd(DEV_CE)
            sentences.append(
                f"Teacher {teacher.label} reached dev CE {teacher.mean(DEV_CE):.3f} against {baseline.label} "
                f"(no teachers) {baseline.mean(DEV_CE):.3f}" + ("" if math.isnan(sd) else f" ± {sd:.3f}")
                + f": {'lower' if margin > 0 else 'not lower'} by {abs(margin):.3f} nats.")
    for task in columns if teachers else ():
        scored = [row for row in students if not math.isnan(row.mean(task))]
        if not scored:
            continue
        best = max(scored, key=lambda r: r.mean(task))
        spread = best.sd(task)
        beaten = [f"{t.label} by {(best.mean(task) - t.mean(task)) * 100:.1f} points"
                  + ("" if math.isnan(spread) else
                     f" ({'exceeds' if best.mean(task) - t.mean(task) > spread else 'within'} its seed spread)")
                  for t in teachers if best.mean(task) > t.mean(task)]
        sentences.append(
            f"On {task} the best student ({best.label}, {best.mean(task):.3f}) "
            + (f"beats {', '.join(beaten)}." if beaten else "does not beat any teacher.")
        )
    seeds = max((len(row.seeds) for row in rows), default=0)
    table = (f"{paired_table(pairs, keys, seeds)}\n\nEach cell: mean Δ ± sd over the paired seeds (paired / the most "
             "seeds any model ran); **better** or **worse** where it clears the rule.\n\n") if pairs else ""
    return f"Rule: {RULE}.\n\n{table}" + "\n".join(f"- {s}" for s in sentences)


def unigram_dev_ce(config: RunConfig) -> float:
    """Dev CE of the train split's unigram model (add-one smoothed) on `config`'s dev chunks, predicted tokens only.

    The floor a model must beat to have learned more than word frequencies: a budget whose models sit near it
    is too small to show any difference between recipes.
    """
    from babykd.training import load_data

    data = load_data(config)
    counts = np.bincount(np.asarray(data.train_dataset.tokens), minlength=len(data.tokenizer)) + 1
    log_p = np.log(counts) - np.log(counts.sum())
    targets = np.concatenate([item["input_ids"][1:].numpy() for item in data.eval_dataset])
    return float(-log_p[targets].mean())


def baselines(rows: Sequence[ModelRow], unigram_ce: float, columns: Sequence[str]) -> str:
    """Whether the models learned anything at all: dev CE against the unigram model's, pair tasks against chance,
    correlations with human judgements against none."""
    above = [row.label for row in rows if not row.mean(DEV_CE) < unigram_ce]  # nan: not shown to be below
    lines = [f"- Unigram model of the train split (add-one smoothed, this budget's tokenizer) on seed 0's dev "
             f"chunks: {DEV_CE} {unigram_ce:.3f}. "
             + (f"Not below it: {', '.join(above)}." if above else "Every model is below it.")]
    for column in columns:
        spec = REGISTRY.get(column.removesuffix("_fast"))
        if spec is None or spec.chance is None:
            continue
        floor = spec.chance
        meaning = ("no relation to the human judgements is ρ = 0" if spec.scoring == "correlation"
                   else f"chance is {floor} (two candidates per item)")
        at_floor = [row.label for row in rows if not row.mean(column) > floor]
        verdict = f"mean at or below it: {', '.join(at_floor)}." if at_floor else "every model's mean is above it."
        lines.append(f"- {column}: {meaning}; {verdict}")
    return "\n".join(lines)


def stage_times_table(out_root: Path) -> str:
    """Wall time per stage, training grouped by recipe (seeds summed); the first run includes data preparation."""
    path = out_root / STAGE_TIMES
    times = json.loads(path.read_text()) if path.is_file() else {}
    groups: dict[str, list[float]] = {}
    for key, seconds in times.items():
        verb, _, run = key.partition(" ")
        name = run.rsplit("-seed", 1)[0] if verb == "train" else "every model"
        groups.setdefault(f"{verb} {name}", []).append(seconds)
    lines = ["| stage | runs | wall time (s) |", "|---|---:|---:|"]
    lines += [f"| {name} | {len(values)} | {sum(values):.0f} |" for name, values in groups.items()]
    lines.append(f"| all stages | {sum(len(v) for v in groups.values())} | {sum(map(sum, groups.values())):.0f} |")
    return "\n".join(lines)


def csv_table(rows: Sequence[ModelRow], columns: Sequence[str]) -> str:
    """One line per run (model × seed): the figures behind the table, for plotting or statistics elsewhere."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "role", "seed", "parameters", "train_tokens", "words_seen", "lineage_words_seen",
                     "dev_ce", *columns])
    for row in rows:
        for index, seed in enumerate(row.seeds):
            values = [row.scores[key][index] for key in (DEV_CE, *columns)]
            writer.writerow([row.label, row.role, seed, row.parameters, row.train_tokens,
                             "" if row.words_seen is None else row.words_seen,
                             "" if row.lineage_words_seen is None else row.lineage_words_seen,
                             *("" if math.isnan(v) else f"{v:.6g}" for v in values)])
    return buffer.getvalue()


def figure_values(rows: Sequence[ModelRow], columns: Sequence[str]) -> np.ndarray:
    """The figure's numbers: each model's mean over its seeds per column, as the table shows them."""
    return np.array([[row.mean(column) for column in columns] for row in rows], dtype=np.float64)


def grid_sections(screened: Sequence[Screen], columns: Sequence[str], results_path: Path) -> list[str]:
    """Each screened grid's RESULTS.md section, its heat map and every grid's points as CSV beside it."""
    from babykd import grid_report

    sections, tables = [], []
    table = results_path.with_name(f"{results_path.stem}-grid.csv")
    for screen in screened:
        grid = screen.grid
        rows = grid_report.read_rows(grid, screen.indices, screen.overrides, columns)
        figure = results_path.with_name(f"{results_path.stem}-grid-{grid.source.stem}.png")
        picture = grid_report.heatmap(grid, rows)
        if picture is not None:
            atomic_write_bytes(figure, picture)
        sections.append(grid_report.section(grid, rows, columns, [*screen.entry.overrides, *screen.extra], table.name,
                                            figure.name if picture is not None else None))
        tables.append((grid, rows))
    if tables:
        atomic_write_text(table, grid_report.csv_table(tables, columns))
    return sections


def write_report(rows: Sequence[ModelRow], budget_name: str, budget: Budget, corpus: Path, out_root: Path,
                 results_path: Path, wall_s: float, unigram_ce: float, screened: Sequence[Screen] = (),
                 comparisons: Sequence[Comparison] = (), confirmation: str | None = None) -> None:
    """RESULTS.md with its figure (.png) and table (.csv) beside it, and each screen's (`grid_sections`).

    `comparisons` are reported after the budget's own; `confirmation` is the section saying how the
    confirmation's arms were chosen (`babykd.confirmation`)."""
    from babykd.evaluation.report import plot_table

    figure, table = results_path.with_suffix(".png"), results_path.with_suffix(".csv")
    columns, evaluation = budget.evaluation.columns, budget.evaluation
    atomic_write_bytes(figure, plot_table([row.label for row in rows], columns, figure_values(rows, columns)))
    atomic_write_text(table, csv_table(rows, columns))
    errors = [error for row in rows for error in row.errors]
    prov = provenance(corpus=str(corpus), corpus_sha256=file_sha256(corpus))
    role_overrides = "; ".join(f"{role}: `{' '.join(values)}`"
                               for role, values in budget.role_overrides.items() if values)
    text = "\n".join([
        f"# Results — budget `{budget_name}`",
        "",
        f"Budget: {budget.description}. Overrides applied to every run: "
        f"`{' '.join(budget.overrides) or 'none'}`; per role: {role_overrides or 'none'}; architectures replaced: "
        f"{', '.join(f'{k}→{v}' for k, v in budget.models.items()) or 'none'}; "
        f"distillation overrides: `{' '.join(budget.distillation_overrides) or 'none'}`; "
        f"evaluation: 2025 protocol, {'fast' if evaluation.fast else 'full'} sets of {', '.join(evaluation.tasks)}, "
        f"items per subtask: {evaluation.max_items_per_subtask or 'all'}.",
        "",
        f"Scores: mean ± sd over seeds (item-level stderr of the first seed's run in parentheses where the task "
        f"reports one); {DEV_CE}: the "
        "student's plain cross-entropy on the dev split (nats per token). Teachers are trained once. Wall time "
        "is training only, mean per seed. Words seen: the provenance's `words_seen` / `lineage_words_seen` "
        f"(n/a where a run did not record them). Per-run figures: `{table.name}`.",
        "",
        markdown(rows, columns),
        "",
        f"![results]({figure.name})",
        "",
        *(["## Tasks not scored", "", *(f"- {error}" for error in errors), ""] if errors else []),
        "## Baselines",
        "",
        baselines(rows, unigram_ce, columns),
        "",
        "## Findings",
        "",
        findings(rows, [*budget.comparisons, *comparisons], columns),
        "",
        *grid_sections(screened, columns, results_path),
        *([confirmation] if confirmation else []),
        *(["## What this scale can and cannot say", "", budget.scope.strip(), ""] if budget.scope else []),
        "## Wall time per stage",
        "",
        stage_times_table(out_root),
        "",
        f"The command that wrote this report ran {wall_s:.0f} s (stages an earlier sitting finished are skipped, "
        "so with several sittings the total is the table's last row).",
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
    parser.add_argument("--budget", default="fast", choices=budget_names())
    parser.add_argument("--seeds", type=int, help="seeds per baseline/student (default: the budget's)")
    parser.add_argument("--smoke", action="store_true",
                        help="the budget's plan at the tiny budget's models, steps and evaluation (a CPU check)")
    parser.add_argument("--out", type=Path, help="where runs go (default models/reproduce-<budget>)")
    parser.add_argument("--results", type=Path, help="RESULTS.md path (default <out>/RESULTS.md)")
    parser.add_argument("--eval-data", type=Path,
                        help="full BLiMP/supplement/EWoK sets, 2024 layout (default ../shared/evaluation_data)")
    parser.add_argument("--suite-data", type=Path,
                        help="the BabyLM 2025 evaluation zip or folder (default ../shared/evaluation_data_2025.zip)")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)

    if not args.corpus.exists():
        sys.exit(f"corpus not found: {args.corpus} (give a BabyLM directory or zip)")
    budget = load_budget(args.budget)
    if args.smoke:
        budget = budget.shrunk(load_budget("tiny"))
    seeds = budget.seeds if args.seeds is None else args.seeds
    if seeds < 1:
        sys.exit("--seeds must be at least 1")
    name = f"{args.budget}-smoke" if args.smoke else args.budget
    out_root = (args.out or REPO_ROOT / "models" / f"reproduce-{name}").resolve()
    stages = plan(seeds, budget.plan)
    started = time.perf_counter()
    corpus = args.corpus.resolve()
    run_stages(stages, budget, corpus, out_root)
    screened = screens(budget.grids, budget, corpus, out_root)
    run_grids(screened, out_root)
    evaluate_runs([*(out_root / s.run_name for s in stages), *(d for s in screened for d in s.run_dirs())],
                  budget.evaluation, args.eval_data, args.suite_data, out_root)
    confirmed = None
    if budget.confirmation is not None:
        from babykd.confirmation import run_confirmation

        confirmed = run_confirmation(budget, stages, screened, seeds, corpus, out_root, args.eval_data,
                                     args.suite_data)
        stages, screened = [*stages, *confirmed.stages], [*screened, *confirmed.screens]
    results_path = args.results or out_root / "RESULTS.md"
    unigram_ce = unigram_dev_ce(stage_config(stages[0], budget, corpus, out_root))
    rows = collect_rows(stages, out_root, budget.evaluation.columns)
    write_report(rows, name, budget, corpus, out_root, results_path, time.perf_counter() - started, unigram_ce,
                 screened, confirmed.comparisons if confirmed else (),
                 confirmed.section(rows, budget.evaluation.columns) if confirmed else None)
    print(results_path.read_text())
    print(f"reproduction ({name}, {seeds} seeds) done in {time.perf_counter() - started:.0f} s: {results_path}")


if __name__ == "__main__":
    main()
