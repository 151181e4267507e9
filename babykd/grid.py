"""Grid search: a base run config x axes of config values -> named runs, one SLURM array task each.

A grid file (see ``config/grid/``)::

    base: config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml
    name: PalenkaLlama1-58M-strict-L{kl}-H{hidden}
    axes:
      distillation.weights.kl: [0.1, 0.3, 0.5, 0.7, 0.9]
      distillation.weights.hidden: [0.1, 0.3, 0.5, 0.7, 0.9]

expands to the product of the axes (first axis slowest, in file order), so
point indices and names never change between submissions. A placeholder is an
axis key or its last component; values are written without float noise
(``0.1``, not ``0.1000000001``)::

    python -m babykd.grid list GRID                  # index, name, overrides (one line per point)
    python -m babykd.grid run GRID INDEX [--set ...] # one point; skips a finished run, resumes otherwise
    python -m babykd.grid summary GRID [--finalists K] [--set ...]

Runs are ranked by the student's plain cross-entropy on the dev subset
(``final_metrics.eval_loss`` in ``provenance.json``), then by BLiMP from
``<run>/eval/results.json`` where the evaluator wrote one. Never by the weighted
training objective: with different loss weights it is a different function at
every point, and ranking by it makes the smallest weights "win".

``--set`` overrides (e.g. ``output.root``, ``data.corpus``) apply to every point
and are applied before the axis values, which therefore always win; setting an
axis key or ``output.name`` with ``--set`` is an error. String axis values are
read like ``--set`` values (relative paths against the working directory).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from babykd import REPO_ROOT
from babykd.cli import ALLOW_CONFIG_CHANGE_HELP
from babykd.config import ConfigError, RunConfig, load_run_config, parse_overrides, read_yaml
from babykd.errors import UserError

GRID_KEYS = ("base", "name", "axes")
#: The minimal-pair task whose score breaks ties and is shown next to the dev CE.
BLIMP_TASK = "blimp_filtered"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def format_value(value: Any) -> str:
    """A value as it appears in a run name: floats to 12 significant digits (0.1, 1e-05, 3)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.12g}"
    return str(value)


@dataclass(frozen=True)
class GridPoint:
    """One run of the grid: its stable index, its name and the axis values that define it."""

    index: int
    name: str
    values: tuple[tuple[str, Any], ...]

    @property
    def overrides(self) -> list[str]:
        """The point as ``--set`` strings (JSON scalars are YAML, so values round-trip exactly)."""
        return [f"{key}={json.dumps(value)}" for key, value in self.values]


@dataclass(frozen=True)
class Grid:
    """A validated grid file: the base config, the name template, the axes and their product."""

    source: Path
    base: Path
    template: str
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    points: tuple[GridPoint, ...]

    def point(self, index: int) -> GridPoint:
        if not 0 <= index < len(self.points):
            raise ConfigError(f"{self.source}: no point {index}; the grid has points 0..{len(self.points) - 1}")
        return self.points[index]

    def config(self, index: int, overrides: Sequence[str] = ()) -> RunConfig:
        """The validated run config of point `index`, with `overrides` applied to the base first."""
        point = self.point(index)
        check_overrides(self, overrides)
        try:
            return load_run_config(self.base, [*overrides, *point.overrides, f"output.name={point.name}"])
        except ConfigError as error:
            raise ConfigError(f"{self.source}: point {index} ({point.name}): {error}") from error

    @property
    def labels(self) -> list[str]:
        """Column headers for the axes: last key component, or the whole key where that is ambiguous."""
        return [_short_name(key, [k for k, _ in self.axes]) for key, _ in self.axes]


def _short_name(key: str, keys: Sequence[str]) -> str:
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1 else key


def check_overrides(grid: Grid, overrides: Sequence[str]) -> None:
    """Refuse ``--set`` keys the grid sets itself (they would be silently replaced)."""
    owned = {key for key, _ in grid.axes} | {"output.name"}
    for key in parse_overrides(overrides):
        if key in owned:
            raise ConfigError(f"--set {key}: {grid.source} sets this key for every point (axis or run name)")


def _render_name(template: str, values: dict[str, Any], where: str) -> str:
    keys = list(values)

    def substitute(match: re.Match[str]) -> str:
        field = match.group(1)
        if field in values:
            return format_value(values[field])
        candidates = [k for k in keys if k.rsplit(".", 1)[-1] == field]
        if len(candidates) != 1:
            problem = "is ambiguous" if candidates else "names no axis"
            raise ConfigError(f"{where}: name: placeholder {{{field}}} {problem}; axes are {keys}")
        return format_value(values[candidates[0]])

    return _PLACEHOLDER.sub(substitute, template)


def _parse_axes(raw: Any, where: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: axes must be a non-empty mapping of config key -> list of values")
    axes = []
    for key, values in raw.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{where}: axes: key {key!r} must be a dotted config key like training.lr")
        if key == "output" or key.startswith("output."):
            raise ConfigError(f"{where}: axes.{key}: the output location is not a grid axis (use --set)")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: axes.{key} must be a non-empty list of values, got {values!r}")
        for value in values:
            if not isinstance(value, (str, int, float, bool)):
                raise ConfigError(f"{where}: axes.{key}: values must be numbers, strings or booleans, got {value!r}")
        names = [format_value(v) for v in values]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: axes.{key} repeats a value: {values}")
        axes.append((key, tuple(values)))
    return tuple(axes)


def load_grid(path: str | Path, overrides: Sequence[str] = ()) -> Grid:
    """Read, expand and validate a grid file: every point's config is loaded (with `overrides`).

    Raises:
        ConfigError: naming the grid file and the key (or point) at fault.
    """
    source = Path(path)
    where = str(source)
    raw = read_yaml(source)
    unknown = sorted(set(raw) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'; expected {list(GRID_KEYS)}")
    missing = [key for key in GRID_KEYS if key not in raw]
    if missing:
        raise ConfigError(f"{where}: missing required key '{missing[0]}'")
    if not isinstance(raw["base"], str) or not isinstance(raw["name"], str) or not raw["name"]:
        raise ConfigError(f"{where}: base (a run config path) and name (a template) must be strings")
    base = Path(raw["base"]).expanduser()
    base = base if base.is_absolute() else REPO_ROOT / base
    if not base.is_file():
        raise ConfigError(f"{where}: base: run config not found: {base}")
    axes = _parse_axes(raw["axes"], where)

    points = []
    seen: dict[str, int] = {}
    for index, combo in enumerate(itertools.product(*(values for _, values in axes))):
        values = tuple((key, value) for (key, _), value in zip(axes, combo))
        name = _render_name(raw["name"], dict(values), where)
        if not name.strip() or "/" in name or name in (".", ".."):
            raise ConfigError(f"{where}: name: {name!r} is not a run directory name")
        if name in seen:
            raise ConfigError(
                f"{where}: name: points {seen[name]} and {index} are both named {name!r}; "
                "the template must use every axis that has more than one value"
            )
        seen[name] = index
        points.append(GridPoint(index, name, values))
    grid = Grid(source, base, raw["name"], axes, tuple(points))
    _validate_axis_keys(grid, overrides)
    for point in grid.points:
        grid.config(point.index, overrides)
    return grid


def _validate_axis_keys(grid: Grid, overrides: Sequence[str]) -> None:
    """Name the axis, not a point, when an axis key is not a setting of the base config."""
    for key, values in grid.axes:
        try:
            load_run_config(grid.base, [*overrides, f"{key}={json.dumps(values[0])}"])
        except ConfigError as error:
            raise ConfigError(f"{grid.source}: axes.{key} is not a valid setting of {grid.base}: {error}") from error


# ----------------------------------------------------------------------------- running


def run_point(grid: Grid, index: int, overrides: Sequence[str] = (), allow_config_change: bool = False) -> int:
    """Train point `index` unless it already finished; resume from its newest checkpoint. Exit status.

    A point resumed under a config that differs from its run_config.yaml (a changed `--set`, an edited
    base recipe) is refused unless `allow_config_change`, as `train.py --resume` refuses it.
    """
    from babykd.run.preemption import PREEMPTED_EXIT_CODE
    from babykd.training import is_finished, run_training

    config = grid.config(index, overrides)
    run_dir = config.output.run_dir
    if is_finished(run_dir):
        print(f"point {index} {config.output.name} already finished ({run_dir}); nothing to do")
        return 0
    print(f"point {index} {config.output.name} -> {run_dir}", flush=True)
    result = run_training(config, resume=True, allow_config_change=allow_config_change)
    if result.preempted:
        return PREEMPTED_EXIT_CODE
    print(f"saved {result.run_dir} ({result.parameters:,} parameters, {result.wall_time_s:.1f} s)")
    return 0


# ----------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class PointResult:
    """What a grid point has produced so far; `dev_ce` is None unless it finished with an eval set."""

    point: GridPoint
    run_dir: Path
    status: str
    dev_ce: float | None = None
    blimp: float | None = None
    blimp_subset: bool = False
    steps: int | None = None
    #: The code versions that trained it, when there were several (see babykd.run.provenance.describe_code_versions).
    code_versions: str | None = None
    #: Each weighted term's share of the student's gradient at the steps the run measured (babykd.losses.shares).
    term_shares: tuple[dict[str, Any], ...] = ()

    def shares_cell(self) -> str:
        """The shares as ``kl 40/45/48 · hidden 10/8/7`` (percent at first/middle/last step; ce left out)."""
        if not self.term_shares:
            return "–"
        names = [name for name in self.term_shares[0]["share"] if name != "ce"]
        return " · ".join(f"{name} " + "/".join(f"{100 * r['share'].get(name, 0):.0f}" for r in self.term_shares)
                          for name in names) or "ce only"

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def stopped(self) -> bool:
        """Stopped by the divergence guard: resubmitted unchanged it diverges again, so it is not pending."""
        return self.status.startswith("stopped ")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def read_point(point: GridPoint, run_dir: Path) -> PointResult:
    """Status, dev CE and BLiMP of one point (a damaged file is warned about, never fatal)."""
    from babykd.evaluation.report import read_results
    from babykd.losses.shares import read_term_shares
    from babykd.run.provenance import describe_code_versions
    from babykd.training import PROVENANCE_FILE, is_finished

    if not is_finished(run_dir):
        return _unfinished_point(point, run_dir)
    try:
        record = json.loads((run_dir / PROVENANCE_FILE).read_text(encoding="utf-8"))
        metrics = record.get("final_metrics") or {}
        dev_ce = float(metrics["eval_loss"]) if "eval_loss" in metrics else None
        steps = record.get("global_steps")
        code_versions = describe_code_versions(record)
    except (OSError, ValueError, TypeError, AttributeError) as error:
        _warn(f"{run_dir / PROVENANCE_FILE}: unreadable ({error}); point {point.index} left unranked")
        dev_ce, steps, code_versions = None, None, None
    blimp, subset = None, False
    results_file = run_dir / "eval" / "results.json"
    if results_file.is_file():
        try:
            tasks = read_results(results_file)["tasks"]
        except ValueError as error:
            _warn(str(error))
            tasks = {}
        entry = tasks.get(BLIMP_TASK) or tasks.get(f"{BLIMP_TASK}_fast")  # full set first, else the fast set
        if entry is not None:
            blimp, subset = float(entry["score"]), entry.get("max_items_per_subtask") is not None
    return PointResult(point, run_dir, "finished", dev_ce, blimp, subset, steps, code_versions,
                       tuple(read_term_shares(run_dir)))


def _unfinished_point(point: GridPoint, run_dir: Path) -> PointResult:
    """A point stopped by the divergence guard (at which step, why), or pending (from which checkpoint)."""
    from babykd.run.divergence import read_stop
    from babykd.run.checkpoints import last_complete_checkpoint

    stop = read_stop(run_dir)
    if stop is not None:
        return PointResult(point, run_dir, f"stopped at step {stop['step']}: {stop['reason']}", steps=stop["step"])
    checkpoint = last_complete_checkpoint(run_dir / "checkpoints")
    status = f"pending (checkpoint {checkpoint.rsplit('-', 1)[-1]})" if checkpoint else "pending"
    return PointResult(point, run_dir, status)


def rank(results: Sequence[PointResult]) -> list[PointResult]:
    """Finished points with a dev CE, lowest first (a diverged NaN last); ties go to the higher BLiMP, then the name."""
    ranked = [r for r in results if r.finished and r.dev_ce is not None]
    return sorted(ranked, key=lambda r: (
        math.inf if math.isnan(r.dev_ce) else r.dev_ce, -(r.blimp if r.blimp is not None else -math.inf), r.point.name,
    ))


def summary_markdown(grid: Grid, results: Sequence[PointResult], finalists: int) -> str:
    """The ranked table, then unranked, stopped and pending points, then the finalists."""
    ranked = rank(results)
    ranked_ids = {r.point.index for r in ranked}
    rest = [r for r in results if r.point.index not in ranked_ids]
    done, stopped = sum(r.finished for r in results), sum(r.stopped for r in results)
    lines = [
        f"# Grid {grid.source.stem}: {len(results)} points, {done} finished, "
        + (f"{stopped} stopped, " if stopped else "") + f"{len(results) - done - stopped} pending",
        "",
        "Ranked by the student's plain cross-entropy on the dev subset (dev CE, lower is better), "
        f"ties by {BLIMP_TASK} (higher is better). The weighted training objective differs between "
        "points and is never used for ranking.",
        "",
        "Gradient shares: each weighted term's percent of the student's gradient norm at the first, "
        "middle and last step (the rest is ce).",
        "",
        "| rank | run | " + " | ".join(grid.labels) + " | dev CE | dev ppl | BLiMP | gradient shares | steps | status |",
        "|---" * (len(grid.labels) + 8) + "|",
    ]
    subset = False
    for position, result in enumerate([*ranked, *rest], start=1):
        subset = subset or result.blimp_subset
        cells = [
            str(position) if result.point.index in ranked_ids else "–",
            result.point.name,
            *(format_value(value) for _, value in result.point.values),
            "–" if result.dev_ce is None else f"{result.dev_ce:.4f}",
            "–" if result.dev_ce is None else f"{math.exp(min(result.dev_ce, 700)):.2f}",
            "–" if result.blimp is None else f"{result.blimp:.3f}" + ("*" if result.blimp_subset else ""),
            result.shares_cell(),
            "–" if result.steps is None else str(result.steps),
            result.status,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if subset:
        lines += ["", "\\* BLiMP scored on a subset (`max_items_per_subtask`)."]
    mixed = [r for r in results if r.code_versions]
    if mixed:
        lines += ["", "Points resumed under changed code:", *(f"- {r.point.name}: {r.code_versions}" for r in mixed)]
    if stopped:
        lines += ["", f"{stopped} point{'s' * (stopped > 1)} stopped (diverged): excluded from the ranking"]
    chosen = ranked[:finalists]
    lines += ["", f"Finalists (top {finalists} by dev CE): " + (", ".join(r.point.name for r in chosen) or "none yet")]
    return "\n".join(lines) + "\n"


def summary_path(grid: Grid, overrides: Sequence[str] = ()) -> Path:
    """Where the summary is written: next to the runs, named after the grid file."""
    return Path(grid.config(0, overrides).output.root) / f"{grid.source.stem}.summary.md"


def summarize(grid: Grid, overrides: Sequence[str] = (), finalists: int = 3) -> tuple[str, list[PointResult]]:
    """Read every point's results; write the markdown summary atomically; return it and the ranking."""
    from babykd.run.atomic import atomic_write_text

    results = [read_point(p, grid.config(p.index, overrides).output.run_dir) for p in grid.points]
    text = summary_markdown(grid, results, finalists)
    atomic_write_text(summary_path(grid, overrides), text)
    return text, rank(results)[:finalists]


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m babykd.grid", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    subs = {}
    for name, description in (
        ("list", "one line per point: index, name, overrides"),
        ("run", "train one point (skipped when finished, resumed otherwise)"),
        ("summary", "rank the finished points by dev CE and pick finalists"),
    ):
        sub = subs[name] = commands.add_parser(name, help=description, description=description)
        sub.add_argument("grid", type=Path, help="grid file (see config/grid/)")
        sub.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", nargs="+",
            help="override a config value for every point, e.g. --set output.root=/scratch/models",
        )
    subs["run"].add_argument("index", type=int, help="point index (e.g. $SLURM_ARRAY_TASK_ID)")
    subs["run"].add_argument("--allow-config-change", action="store_true", help=ALLOW_CONFIG_CHANGE_HELP)
    subs["summary"].add_argument("--finalists", type=int, default=3, metavar="K", help="how many (default 3)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = [item for group in args.overrides for item in group]
    try:
        grid = load_grid(args.grid, overrides)
        if args.command == "list":
            for point in grid.points:
                print(f"{point.index}\t{point.name}\t{' '.join(point.overrides)}")
            return 0
        if args.command == "run":
            from babykd.cli import setup_logging

            setup_logging()
            return run_point(grid, args.index, overrides, args.allow_config_change)
        if args.finalists < 0:
            raise ConfigError(f"--finalists must be >= 0, got {args.finalists}")
        text, _ = summarize(grid, overrides, args.finalists)
        print(text, end="")
        print(f"written to {summary_path(grid, overrides)}", file=sys.stderr)
        return 0
    except UserError as error:  # a bad grid or setting, a point's folder that refuses this start
        kind = "config error" if isinstance(error, ConfigError) else "error"
        print(f"{kind}: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
