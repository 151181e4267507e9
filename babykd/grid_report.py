"""A screened grid in a reproduction's report: its ranked table, a heat map over its two axes, its CSV lines.

Why apart from `babykd.grid`: ``grid summary`` ranks points on a cluster with dev CE and BLiMP alone;
a study's report adds the budget's every evaluation column, each weighted term's gradient share at the
first, middle and last step, and a figure. The points are read and ranked by the same `read_point`
and `rank`, so the report and the summary never disagree on an order.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from babykd.grid import BLIMP_TASK, Grid, PointResult, format_value, rank, read_point

#: The steps a run's term-share log measures (babykd.losses.shares.TermShareLog.steps), in order.
SHARE_STEPS = ("first", "mid", "last")
#: Shown for a value a point does not have (unfinished, not scored, no shares measured).
MISSING = "–"


@dataclass(frozen=True)
class GridRow:
    """One point: what `read_point` found, and its value in each report column (absent: not scored)."""

    result: PointResult
    scores: Mapping[str, float] = field(default_factory=dict)

    def score(self, column: str) -> float:
        return self.scores.get(column, math.nan)


def read_rows(grid: Grid, indices: Sequence[int], overrides: Sequence[str], columns: Sequence[str]) -> list[GridRow]:
    """The points `indices` of `grid` run under `overrides`, each with its scores on `columns`."""
    rows = []
    for index in indices:
        run_dir = grid.config(index, overrides).output.run_dir
        result = read_point(grid.point(index), run_dir)
        rows.append(GridRow(result, _scores(run_dir / "eval" / "results.json", columns) if result.finished else {}))
    return rows


def _scores(path: Path, columns: Sequence[str]) -> dict[str, float]:
    """A results file's value per column; none when it is missing or damaged (read_point has warned)."""
    from babykd.evaluation.report import cell_value, read_results

    try:
        record = read_results(path) if path.is_file() else None
    except ValueError:
        record = None
    return {column: cell_value(record, column) for column in columns} if record else {}


def shares_at(result: PointResult, step: str) -> Mapping[str, float]:
    """Each term's share of the gradient norm at the `step` (of SHARE_STEPS) the run measured ({}: none).

    The log holds steps 0, max_steps // 2 and max_steps - 1 in order (one or two when those coincide), so
    the middle record is the middle step.
    """
    records = result.term_shares
    if not records:
        return {}
    return records[(0, len(records) // 2, -1)[SHARE_STEPS.index(step)]]["share"]


def _number(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def ordered(rows: Sequence[GridRow]) -> list[tuple[int | None, GridRow]]:
    """(rank, row) with ranked points first, in `babykd.grid.rank`'s order, then the rest (rank None) as given."""
    by_index = {row.result.point.index: row for row in rows}
    ranked = [by_index[result.point.index] for result in rank([row.result for row in rows])]
    ranked_ids = {row.result.point.index for row in ranked}
    return [*enumerate(ranked, 1), *((None, row) for row in rows if row.result.point.index not in ranked_ids)]


def markdown(grid: Grid, rows: Sequence[GridRow], columns: Sequence[str]) -> str:
    """The points ranked by dev CE, unranked (stopped, pending) ones after them, every score and share."""
    from babykd.evaluation.report import column_label

    head = ["rank", "run", *grid.labels, "dev CE", *map(column_label, columns),
            "gradient shares, % (first/mid/last; the rest is ce)", "steps", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for position, row in ordered(rows):
        result = row.result
        cells = [MISSING if position is None else str(position), result.point.name,
                 *(format_value(value) for _, value in result.point.values), _number(result.dev_ce, 4),
                 *(_number(row.score(column)) for column in columns), result.shares_cell(),
                 MISSING if result.steps is None else str(result.steps), result.status]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section(grid: Grid, rows: Sequence[GridRow], columns: Sequence[str], screen_overrides: Sequence[str],
            table: str, figure: str | None) -> str:
    """A RESULTS.md section: what was screened and how far it got, the table (its CSV: `table`), the heat map."""
    finished = sum(row.result.finished for row in rows)
    stopped = sum(row.result.stopped for row in rows)
    counts = f"{finished} finished, " + (f"{stopped} stopped (diverged), " if stopped else "") + \
        f"{len(rows) - finished - stopped} pending"
    then = f", then `{' '.join(screen_overrides)}`" if screen_overrides else ""
    picture = (f"![grid {grid.source.stem}]({figure})" if figure else
               f"No heat map: the grid has {len(grid.axes)} axes (one or two can be drawn).")
    return "\n".join([
        f"## Grid {grid.source.stem}",
        "",
        f"`{grid.source.name}`: {len(rows)} of its {len(grid.points)} points screened (seed 0, the students' "
        f"overrides{then}): {counts}. Ranked by dev CE as `python -m babykd.grid summary` ranks them (ties by "
        f"{BLIMP_TASK}), never by the weighted objective. "
        "Gradient shares: each weighted term's percent of the student's gradient norm at the first, middle "
        f"and last step. {MISSING}: not there yet (an unfinished point, a task not scored, no shares measured). "
        f"Per-point figures: `{table}`.",
        "",
        markdown(grid, rows, columns),
        "",
        picture,
        "",
    ])


# ----------------------------------------------------------------------------- heat map


def _cell_of(grid: Grid, result: PointResult) -> tuple[int, int]:
    """(row, column) of a point: the first axis down, the second across; a one-axis grid is one row."""
    return (0, *(values.index(value) for (_, values), (_, value) in zip(grid.axes, result.point.values)))[-2:]


def _mid_shares(result: PointResult) -> str:
    """``kl 78% · hidden 9%``: the terms other than ce at the middle step (ce is the rest)."""
    return " · ".join(f"{name} {100 * share:.0f}%" for name, share in shares_at(result, "mid").items() if name != "ce")


def _shade(values: np.ndarray, lower_is_better: bool) -> np.ndarray:
    """0 (worst) to 1 (best) within the panel, NaN where a cell has no value, 0.5 when all values agree."""
    finite = np.isfinite(values)
    shade = np.full_like(values, 0.5)
    if finite.sum() > 1 and np.ptp(values[finite]) > 0:
        shade[finite] = (values[finite] - values[finite].min()) / np.ptp(values[finite])
    if lower_is_better:
        shade = 1 - shade
    shade[~finite] = np.nan
    return shade


def heatmap(grid: Grid, rows: Sequence[GridRow]) -> bytes | None:
    """PNG of dev CE and BLiMP over the grid's axes, each cell with its value and its terms' mid-run shares.

    Drawn in `babykd.evaluation.report.plot_table`'s style (darker = better within a panel); a cell of a
    point not screened or not finished shows '–'. None for a grid of more than two axes (no plane).
    """
    from babykd.evaluation.report import _figure, _png

    if len(grid.axes) > 2:
        return None
    shape = (1, *(len(values) for _, values in grid.axes))[-2:]
    ce, blimp = np.full(shape, np.nan), np.full(shape, np.nan)
    notes = np.full(shape, "", dtype=object)
    for row in rows:
        cell = _cell_of(grid, row.result)
        ce[cell] = math.nan if row.result.dev_ce is None else row.result.dev_ce
        blimp[cell] = math.nan if row.result.blimp is None else row.result.blimp
        notes[cell] = _mid_shares(row.result)
    fig = _figure(figsize=(2 * (1.2 + 1.25 * max(shape[1], 3)), 1.8 + 0.8 * shape[0]))
    panels = (("dev CE (nats, lower is better)", ce, 4, True), (f"{BLIMP_TASK} (higher is better)", blimp, 3, False))
    for ax, (title, values, digits, lower) in zip(fig.subplots(1, 2, squeeze=False)[0], panels):
        _panel(ax, grid, values, _shade(values, lower), notes, digits)
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"grid {grid.source.stem}: darker = better within a panel, {MISSING} = no value yet\nin each cell "
                 "the value, then each term's share of the gradient norm at the middle step (the rest is ce)",
                 fontsize=9)
    return _png(fig)


def _panel(ax: Any, grid: Grid, values: np.ndarray, shade: np.ndarray, notes: np.ndarray, digits: int) -> None:
    ax.imshow(np.ma.masked_invalid(shade), cmap="Blues", vmin=-0.15, vmax=1.15, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        text = "\n".join(filter(None, (_number(value, digits), notes[i, j])))
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if shade[i, j] > 0.7 else "black")
    (row_key, row_values), (column_key, column_values) = (("", ("",)), *grid.axes)[-2:]
    ax.set_xticks(range(len(column_values)), [format_value(v) for v in column_values], fontsize=8)
    ax.set_yticks(range(len(row_values)), [format_value(v) for v in row_values], fontsize=8)
    ax.set_xlabel(column_key, fontsize=8)
    ax.set_ylabel(row_key, fontsize=8)
    ax.tick_params(length=0)


# ----------------------------------------------------------------------------- CSV


def csv_table(screens: Sequence[tuple[Grid, Sequence[GridRow]]], columns: Sequence[str]) -> str:
    """One line per screened point of every grid: axis values, dev CE, scores, each term's share per step.

    Empty where a point has no value; the share columns are every term any point measured.
    """
    axis_keys = list(dict.fromkeys(key for grid, _ in screens for key, _ in grid.axes))
    terms = list(dict.fromkeys(name for _, rows in screens for row in rows
                               for record in row.result.term_shares for name in record["share"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["grid", "index", "run", "status", "steps", *axis_keys, "dev_ce", *columns,
                     *(f"share_{term}_{step}" for term in terms for step in SHARE_STEPS)])
    for grid, rows in screens:
        for row in rows:
            result, values = row.result, dict(row.result.point.values)
            shares = {step: shares_at(result, step) for step in SHARE_STEPS}
            writer.writerow([
                grid.source.stem, result.point.index, result.point.name, result.status,
                "" if result.steps is None else result.steps,
                *(format_value(values[key]) if key in values else "" for key in axis_keys),
                *(_csv_number(value) for value in (result.dev_ce, *map(row.score, columns))),
                *(_csv_number(shares[step].get(term)) for term in terms for step in SHARE_STEPS),
            ])
    return buffer.getvalue()


def _csv_number(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"
