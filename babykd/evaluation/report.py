"""Results JSON -> the seeds' table (markdown, CSV) and a figure; also the results file writer.

Usage::

    python -m babykd.evaluation.report models/*/eval/results.json --csv table.csv --figure scores.png

Each argument is a results file or a directory searched for ``results.json``.
The markdown table goes to stdout (and to ``--markdown``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure

from babykd.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from babykd.evaluation.tasks import DEFAULT_TASKS


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """One results file; a clear error for anything that is not one."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable results JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("tasks"), dict):
        raise ValueError(f"{path}: not an evaluation results file (no 'tasks' mapping)")
    return record


def write_results(path: str | os.PathLike, results: dict[str, Any]) -> dict[str, Any]:
    """Write `results` atomically, keeping tasks scored earlier on the SAME weights and not re-scored.

    So `eval-blimp.sh` then `eval-ewok.sh` leave one file with all three tasks;
    each task entry carries its own dtype, subset size and data checksum. An
    earlier entry is kept only when the model path and the weights'
    fingerprint (``weights_sha256``) both match: a model retrained into the
    same folder never shows scores of its old weights. Returns what was written.
    """
    path = Path(path)
    merged = results
    if path.exists():
        try:
            old = read_results(path)
        except ValueError as exc:  # never lose a finished evaluation to a damaged old file
            print(f"warning: replacing {exc}", file=sys.stderr)
        else:
            same = old.get("model") == results["model"] and old.get("weights_sha256") == results.get("weights_sha256")
            if same:
                merged = {**results, "tasks": {**old["tasks"], **results["tasks"]}}
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
    """One line: model, each task's score, throughput (and where the file went)."""
    scores = " | ".join(f"{name} {format_score(entry)}" for name, entry in results["tasks"].items())
    amount = f"{results['sentences']:,} sentences in " if "sentences" in results else ""
    line = (
        f"{results['model']}: {scores} | {amount}"
        f"{results['wall_time_s']:.1f} s ({results['dtype']}, {results['torch_device']})"
    )
    return f"{line} -> {path}" if path is not None else line


def collect(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Results records from files, or from every `results.json` below given directories."""
    files: list[Path] = []
    for path in map(Path, paths):
        found = sorted(path.rglob("results.json")) if path.is_dir() else [path]
        if not found:
            raise ValueError(f"{path}: no results.json below this directory")
        files.extend(found)
    return [read_results(f) for f in files]


def model_label(record: dict[str, Any]) -> str:
    return Path(record["model"]).name or record["model"]


def table_tasks(records: Sequence[dict[str, Any]]) -> list[str]:
    """The seeds' column order, then any user tasks in the order first seen."""
    seen = [name for r in records for name in r["tasks"]]
    return [t for t in DEFAULT_TASKS if t in seen] + [t for t in dict.fromkeys(seen) if t not in DEFAULT_TASKS]


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """The seeds' table; `*` marks a score from a subset (``max_items_per_subtask``)."""
    tasks = table_tasks(records)
    lines = ["| model | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    subset = False
    for record in records:
        cells = []
        for task in tasks:
            entry = record["tasks"].get(task)
            if entry is None:
                cells.append("–")
                continue
            mark = "*" if entry.get("max_items_per_subtask") is not None else ""
            subset = subset or bool(mark)
            cells.append(format_score(entry) + mark)
        lines.append(f"| {model_label(record)} | " + " | ".join(cells) + " |")
    if subset:
        lines.append("\n\\* scored on a subset (at most `max_items_per_subtask` items per subtask)")
    return "\n".join(lines) + "\n"


def csv_table(records: Sequence[dict[str, Any]]) -> str:
    """Machine-readable twin of the table: score and stderr columns per task, full model path."""
    tasks = table_tasks(records)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["model", "path"] + [c for t in tasks for c in (t, f"{t}_stderr")])
    for record in records:
        row = [model_label(record), record["model"]]
        for task in tasks:
            entry = record["tasks"].get(task, {})
            row += [entry.get("score", ""), "" if entry.get("stderr") is None else entry["stderr"]]
        writer.writerow(row)
    return out.getvalue()


def plot_results(records: Sequence[dict[str, Any]]) -> bytes:
    """PNG of per-task bars (one bar per model, stderr whiskers, chance at 0.5)."""
    tasks = table_tasks(records)
    fig = Figure(figsize=(1.8 + 1.6 * len(tasks) + 0.25 * len(records), 4.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(records))
    for i, record in enumerate(records):
        entries = [record["tasks"].get(task) for task in tasks]
        xs = [t + (i - (len(records) - 1) / 2) * width for t in range(len(tasks))]
        heights = [e["score"] if e else math.nan for e in entries]  # a task not scored draws no bar
        errors = [(e.get("stderr") or 0.0) if e else math.nan for e in entries]
        ax.bar(xs, heights, width, yerr=errors, capsize=3, label=model_label(record))
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_xlim(-0.5, len(tasks) - 0.5)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m babykd.evaluation.report",
        description="Collect evaluation results into the seeds' table (markdown, CSV) and a figure.",
    )
    parser.add_argument("paths", nargs="+", help="results JSON files, or directories searched for results.json")
    parser.add_argument("--markdown", type=Path, help="also write the markdown table here")
    parser.add_argument("--csv", type=Path, help="write the CSV table here")
    parser.add_argument("--figure", type=Path, help="write a PNG figure here")
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


if __name__ == "__main__":
    main()
