"""Results JSON -> the seeds' table (markdown, CSV) and a figure; also the results file writer.

Usage::

    python -m babykd.evaluation.report models/*/eval/results.json --csv table.csv --figure scores.png

Each argument is a results file or a directory searched for ``results.json``.
The markdown table goes to stdout (and to ``--markdown``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from babykd.run.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from babykd.evaluation.store import read_results, weights_fingerprint, weights_problem
from babykd.evaluation.suite import SUITE_TASKS
from babykd.evaluation.tasks import DEFAULT_TASKS
from babykd.rules import revision_words
from babykd.run.lock import file_lock


@contextlib.contextmanager
def results_lock(eval_dir: str | os.PathLike) -> Iterator[None]:
    """Hold ``eval_dir/.results.lock`` while reading and rewriting a file there.

    Why: the jobs that score one model (eval-*.sh submitted side by side, the AoA and
    GLUE jobs of a submission chain) finish at any time and each merges its entries
    into the same results (and GLUE predictions) file; unlocked, two
    read-merge-writes at once would lose one of them. `flock` is released by the
    kernel when the holder dies, so a killed job leaves no stale lock. Not
    re-entrant: a holder must not call `write_results` on the same folder.
    """
    with file_lock(Path(eval_dir) / ".results.lock"):
        yield


def write_results(path: str | os.PathLike, results: dict[str, Any]) -> dict[str, Any]:
    """Write `results` atomically, keeping tasks scored earlier on the SAME weights and not re-scored.

    So `eval-blimp.sh` then `eval-ewok.sh` leave one file with all three tasks,
    also when they finish at the same moment (the merge holds `results_lock`);
    each task entry carries its own dtype, subset size and data checksum. An
    earlier entry is kept only when the model path and the weights'
    fingerprint (``weights_sha256``) both match: a model retrained into the
    same folder never shows scores of its old weights. Returns what was written.
    """
    path = Path(path)
    if results.get("weights_sha256") is None:  # every writer keys its scores by the weights it scored
        results = {**results, "weights_sha256": weights_fingerprint(results["model"])}
    with results_lock(path.parent):
        return _merge_into(path, results)


def _merge_into(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """The read-merge-write of `write_results`; the caller holds the folder's lock."""
    merged = results
    if path.exists():
        try:
            old = read_results(path)
        except ValueError as exc:  # never lose a finished evaluation to a damaged old file
            print(f"warning: replacing {exc}", file=sys.stderr)
        else:
            same = old.get("model") == results["model"] and old.get("weights_sha256") == results.get("weights_sha256")
            if same:  # "errors": each task's latest failure, until it is scored
                errors = {k: v for k, v in old.get("errors", {}).items() if k not in results["tasks"]}
                merged = {
                    **results, "tasks": {**old["tasks"], **results["tasks"]},
                    "errors": {**errors, **results.get("errors", {})},
                }
            elif old.get("model") == results["model"] and old["tasks"]:
                print(
                    f"note: {path}: dropped {', '.join(old['tasks'])} (scored on other weights)", file=sys.stderr
                )
    atomic_write_json(path, merged)
    return merged


def format_score(entry: dict[str, Any]) -> str:
    """`0.694 ± 0.0016`, as in the seeds' tables (no stderr for a 1-item subtask or a correlation)."""
    if entry.get("stderr") is None:
        return f"{entry['score']:.3f}"
    return f"{entry['score']:.3f} ± {entry['stderr']:.4f}"


def summary_line(results: dict[str, Any], path: str | os.PathLike | None = None) -> str:
    """One line: model, each task's score or "not scored", throughput (and where the file went)."""
    scores = " | ".join(
        [f"{name} {format_score(entry)}" for name, entry in results["tasks"].items()]
        + [f"{name} NOT SCORED (error)" for name in results.get("errors", {})]
    )
    amount = f"{results['sentences']:,} sentences in " if "sentences" in results else ""
    line = (
        f"{results['model']}: {scores} | {amount}"
        f"{results['wall_time_s']:.1f} s ({results['dtype']}, {results['torch_device']})"
    )
    return f"{line} -> {path}" if path is not None else line


def collect(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Results records from files, or from every `results.json` below given directories.

    A record the store says is not of the weights its model folder holds now (retrained since, or written
    before records were stamped) is left out, with a note; one whose weights cannot be read (a hub name, a
    folder moved or deleted) is shown as it is.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        found = sorted(path.rglob("results.json")) if path.is_dir() else [path]
        if not found:
            raise ValueError(f"{path}: no results.json below this directory")
        files.extend(found)
    records = []
    for file in files:
        record = read_results(file)
        weights = weights_fingerprint(record["model"])
        why = weights_problem(record, weights) if weights is not None else ""
        if why:
            print(f"note: {file}: left out, {why} ({record['model']})", file=sys.stderr)
        else:
            records.append(record)
    return records


def model_label(record: dict[str, Any]) -> str:
    return Path(record["model"]).name or record["model"]


def table_tasks(records: Sequence[dict[str, Any]]) -> list[str]:
    """The seeds' column order, then any user tasks in the order first seen."""
    seen = [name for r in records for name in r["tasks"]]
    known = list(dict.fromkeys(DEFAULT_TASKS + SUITE_TASKS))
    known += [f"{t}_fast" for t in known]
    return [t for t in known if t in seen] + [t for t in dict.fromkeys(seen) if t not in known]


#: Column -> (task entry key, value key) for values that are not a task's "score".
EXTRA_COLUMNS: dict[str, tuple[str, str]] = {"reading_spr": ("reading", "self_paced_reading")}
#: What a column is called in the pictures (reading's "score" is its eye-tracking gain).
LABELS: dict[str, str] = {"reading": "reading (eye tracking)", "reading_spr": "reading (self-paced)"}


def columns_of(tasks: Sequence[str]) -> list[str]:
    """Report columns of results keys: each task, and after reading its self-paced gain (``reading_spr[_fast]``).

    Reading's entry holds two scores ("score" is its eye-tracking gain); each gets a column so that the
    table, the CSV and the figure drop no scored value.
    """
    out = []
    for task in tasks:
        out.append(task)
        suffix = "_fast" if task.endswith("_fast") else ""
        out += [c + suffix for c, (t, _) in EXTRA_COLUMNS.items() if t == task.removesuffix("_fast")]
    return out


def heatmap_columns(records: Sequence[dict[str, Any]]) -> list[str]:
    """The columns of the table, the CSV and the figure: `columns_of` the records' tasks in table order."""
    return columns_of(table_tasks(records))


def _source(column: str) -> tuple[str, str]:
    """(task entry, value key) a column reads: a task's "score", or a second score of another task's entry."""
    base = column.removesuffix("_fast")
    if base in EXTRA_COLUMNS:
        task, key = EXTRA_COLUMNS[base]
        return task + column[len(base):], key
    return column, "score"


def _table_cell(record: dict[str, Any], column: str) -> tuple[str, bool]:
    """A markdown cell of `column` and whether its value comes from a subset (``max_items_per_subtask``)."""
    task, key = _source(column)
    entry = record["tasks"].get(task)
    if entry is None or entry.get(key) is None:
        return "–", False
    subset = entry.get("max_items_per_subtask") is not None
    text = format_score(entry) if key == "score" else f"{entry[key]:.3f}"
    return text + ("*" if subset else ""), subset


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """The seeds' table, a column per `heatmap_columns` column; `*` marks a score from a subset."""
    columns = heatmap_columns(records)
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    subset = False
    for record in records:
        cells = [_table_cell(record, column) for column in columns]
        subset = subset or any(from_subset for _, from_subset in cells)
        lines.append(f"| {model_label(record)} | " + " | ".join(text for text, _ in cells) + " |")
    if subset:
        lines.append("\n\\* scored on a subset (at most `max_items_per_subtask` items per subtask)")
    return "\n".join(lines) + "\n"


def csv_table(records: Sequence[dict[str, Any]]) -> str:
    """Machine-readable twin of the table: value and stderr columns per column, full model path."""
    columns = heatmap_columns(records)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["model", "path"] + [c for column in columns for c in (column, f"{column}_stderr")])
    for record in records:
        row = [model_label(record), record["model"]]
        for column in columns:
            task, key = _source(column)
            entry = record["tasks"].get(task, {})
            stderr = entry.get("stderr") if key == "score" else None  # a second score has no stderr of its own
            row += [entry.get(key, ""), "" if stderr is None else stderr]
        writer.writerow(row)
    return out.getvalue()


def column_label(column: str) -> str:
    base = column.removesuffix("_fast")
    return LABELS.get(base, base) + (" [fast]" if column != base else "")


def cell_value(record: dict[str, Any], column: str) -> float:
    """The number a column shows for a record; NaN where the record has none."""
    task, key = _source(column)
    value = record["tasks"].get(task, {}).get(key)
    return math.nan if value is None else float(value)


def row_label(record: dict[str, Any]) -> str:
    """The model's name; a revision as run/revision."""
    if record.get("revision"):
        return f"{Path(record['model']).parent.parent.name}/{record['revision']}"
    return model_label(record)


def _in_order(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Models as given; revisions of a run by words seen."""
    def key(r: dict[str, Any]) -> tuple:
        return (row_label(r).rsplit("/", 1)[0], revision_words(r["revision"])) if r.get("revision") else (row_label(r), 0.0)
    return sorted(records, key=key) if any(r.get("revision") for r in records) else list(records)


def _figure(**kwargs: Any) -> Figure:
    """A constrained-layout Figure; matplotlib is imported here because scoring (babykd.evaluate) draws nothing."""
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def cell_values(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> np.ndarray:
    """The figure's numbers: one row per record, one per column, NaN where a record lacks the column."""
    return np.array([[cell_value(r, c) for c in columns] for r in records], dtype=np.float64)


def plot_results(records: Sequence[dict[str, Any]]) -> bytes:
    """PNG heat-map table of results records: one row per model, one column per `heatmap_columns` column."""
    records = _in_order(records)
    columns = heatmap_columns(records)
    return plot_table([row_label(r) for r in records], columns, cell_values(records, columns))


def plot_table(rows: Sequence[str], columns: Sequence[str], values: np.ndarray) -> bytes:
    """PNG heat-map table: `values[i, j]` of row `rows[i]` and column `columns[j]` written in each cell.

    Colour is per column (best model of a task darkest), because the tasks'
    metrics differ (accuracy, Spearman's rho, R^2 gain); task names are
    rotated so ten or more columns stay readable. Reproduce's table of means over seeds is drawn with it too.
    """
    shade = np.full_like(values, 0.5)
    for j in range(len(columns)):
        col = values[:, j]
        finite = np.isfinite(col)
        if finite.sum() > 1 and np.ptp(col[finite]) > 0:
            shade[finite, j] = (col[finite] - col[finite].min()) / np.ptp(col[finite])
    shade[~np.isfinite(values)] = np.nan
    fig = _figure(figsize=(2.5 + 0.95 * len(columns), 1.6 + 0.42 * len(rows)))
    ax = fig.add_subplot()
    ax.imshow(np.ma.masked_invalid(shade), cmap="Blues", vmin=-0.15, vmax=1.15, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(columns)):
            v = values[i, j]
            text = "–" if not np.isfinite(v) else f"{v:.4f}" if abs(v) < 0.05 else f"{v:.3f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if shade[i, j] > 0.7 else "black")
    ax.set_xticks(range(len(columns)), [column_label(c) for c in columns], rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), list(rows), fontsize=8)
    ax.tick_params(length=0)
    ax.set_title("scores (accuracy; wug: Spearman ρ; reading: R² gain) — darker = better within a column", fontsize=9)
    return _png(fig)


def plot_learning_curves(records: Sequence[dict[str, Any]]) -> bytes:
    """PNG small multiples: each task's score over the ``chck_*`` revisions of each run (log words seen)."""
    curves = [r for r in records if r.get("revision")]
    if not curves:
        raise ValueError("no results of chck_* revisions (score them with --revision REV)")
    columns = heatmap_columns(curves)
    runs = sorted({str(Path(r["model"]).parent.parent) for r in curves})
    ncols = min(4, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    fig = _figure(figsize=(3.2 * ncols, 2.5 * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, column in zip(axes.flat, columns):
        for run in runs:
            points = sorted(
                (revision_words(r["revision"]), cell_value(r, column))
                for r in curves if str(Path(r["model"]).parent.parent) == run
            )
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", markersize=3, label=Path(run).name)
        ax.set_xscale("log")
        ax.set_title(column_label(column), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(columns):]:
        ax.set_visible(False)
    fig.supxlabel("words seen (revision chck_*)", fontsize=9)
    axes.flat[0].legend(fontsize=7)
    return _png(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m babykd.evaluation.report",
        description="Collect evaluation results into the seeds' table (markdown, CSV) and a figure.",
    )
    parser.add_argument("paths", nargs="+", help="results JSON files, or directories searched for results.json")
    parser.add_argument("--markdown", type=Path, help="also write the markdown table here")
    parser.add_argument("--csv", type=Path, help="write the CSV table here")
    parser.add_argument("--figure", type=Path, help="write the task x model heat-map table (PNG) here")
    parser.add_argument("--curves", type=Path, help="write learning curves over chck_* revisions (PNG) here")
    args = parser.parse_args(argv)
    try:
        records = collect(args.paths)
    except ValueError as exc:
        parser.error(str(exc))
    table = markdown_table(records)
    print(table, end="")
    if args.markdown:
        atomic_write_text(args.markdown, table)
    if args.csv:
        atomic_write_text(args.csv, csv_table(records))
    if args.figure:
        atomic_write_bytes(args.figure, plot_results(records))
    if args.curves:
        try:
            atomic_write_bytes(args.curves, plot_learning_curves(records))
        except ValueError as exc:
            parser.error(str(exc))


if __name__ == "__main__":
    main()
