"""The official BabyLM 2025 evaluation code against ours: same model, same items, decisions compared.

Used by ``bench_evaluation.py --against-official PIPELINE_DIR``. PIPELINE_DIR is a checkout of
``babylm/evaluation-pipeline-2025`` given by the user (outside this repository; none of its code
is copied here). Each official task runs as its own process, as ``eval_zero_shot_fast.sh`` /
``eval_zero_shot.sh`` run them; ours (``python -m babykd.evaluate``) runs each task alone, then
all of them in one process, as a participant would. Both read the same data folder, written here with every file
subsampled alike (`tasks.subsample`, evenly spaced), and both write the official
``predictions.json``; the decisions are compared item by item.

Times are whole-process wall times (imports, model load, data, scoring, writing). A task row is
one official process against one process of ours for that task alone; the suite row is one
process of ours for all tasks (one import and model load) against the official processes summed.
Ours runs with the encoded-request cache off, so every process encodes its data (the cold case).

The official sentence reader imports ``aiohttp`` (for images only): when it is not importable a
stub is put on the official processes' path, and the record says so. The official reading task
needs ``statsmodels`` for its regressions; without it the reading row is left out and named.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from babykd.evaluation.store import predictions_path, unstamped
from babykd.evaluation.suite import SUBMISSION_KEYS, Source, result_name
from babykd.evaluation.suite_tasks import REGISTRY
from babykd.evaluation.tasks import subsample

#: Sentence tasks of the official `sentence_zero_shot.run` (its --task names; the supplement is "blimp").
OFFICIAL_TASK = {task: ("blimp" if key == "blimp_supplement" else key) for task, key in SUBMISSION_KEYS.items()
                 if REGISTRY[task].decode is not None and task != "comps"}
#: Reading rows kept per item of --max-items-per-subtask (reading has no subtasks).
READING_ROWS_PER_ITEM = 20
AIOHTTP_STUB = "class ClientTimeout:\n    def __init__(self, **kwargs):\n        pass\n"


def is_pipeline(path: Path) -> bool:
    """Whether `path` holds the official code (a checkout of babylm/evaluation-pipeline-2025)."""
    return (path / "evaluation_pipeline" / "sentence_zero_shot" / "run.py").is_file()


def pipeline_commit(path: Path) -> str | None:
    out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or None


def write_suite(source: Source, tasks: Sequence[str], root: Path, limit: int | None) -> dict[str, int]:
    """The tasks' files, each subsampled to `limit` items, in the 2025 layout under `root`; items per task."""
    counts = {}
    for task in tasks:
        if task == "reading":
            where, data = source.reading_csv()
            rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
            kept = subsample(rows[1:], limit and READING_ROWS_PER_ITEM * limit)
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerows([rows[0], *kept])
            path = root / reading_path(source.fast)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(buffer.getvalue(), encoding="utf-8")
            counts[task] = len(kept)
            continue
        folder = root / REGISTRY[task].folder(source.fast)
        folder.mkdir(parents=True, exist_ok=True)
        counts[task] = 0
        for where, data in source.folder(task):
            lines = subsample([line for line in data.decode("utf-8").split("\n") if line.strip()], limit)
            text = "".join(f"{line}\n" for line in lines)
            (folder / Path(where.rsplit(":", 1)[-1]).name).write_text(text, encoding="utf-8")
            counts[task] += len(lines)
    return counts


def reading_path(fast: bool) -> str:
    return f"{'fast' if fast else 'full'}_eval/reading/reading_data.csv"


def official_env(work: Path, pipeline: Path, base: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The official processes' environment (the pipeline on the path, stubs where needed) and notes."""
    paths, notes = [str(pipeline)], []
    if importlib.util.find_spec("aiohttp") is None:
        stub = work / "stubs" / "aiohttp"
        stub.mkdir(parents=True, exist_ok=True)
        (stub / "__init__.py").write_text(AIOHTTP_STUB)
        paths.append(str(stub.parent))
        notes.append("aiohttp stubbed for the official code (imported for images only)")
    env = {**base, "PYTHONPATH": os.pathsep.join(paths + [p for p in [base.get("PYTHONPATH")] if p])}
    return env, notes


def official_command(task: str, model: str, data: Path, out: Path) -> list[str]:
    if task == "reading":
        return [sys.executable, "-m", "evaluation_pipeline.reading.run", "--model_path_or_name", model,
                "--backend", "causal", "--data_path", str(data), "--output_dir", str(out)]
    return [sys.executable, "-m", "evaluation_pipeline.sentence_zero_shot.run", "--model_path_or_name", model,
            "--backend", "causal", "--task", OFFICIAL_TASK[task], "--data_path", str(data), "--save_predictions",
            "--output_dir", str(out)]


def official_predictions(task: str, model: str, data: Path, out: Path) -> Path:
    """Where the official run writes a task's predictions.json (run.py's output_path)."""
    base = out / Path(model).stem / "main" / "zero_shot" / "causal"
    folder = base / "reading" if task == "reading" else base / OFFICIAL_TASK[task] / data.stem
    return folder / "predictions.json"


def run_timed(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> float:
    """Wall seconds of one process; its output goes to `log`; a failure names the log."""
    start = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[:3])} failed (exit {done.returncode}); see {log}")
    return seconds


def compare(task: str, ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Same decisions (sentence tasks: the chosen completion of every item; reading: surprisal within 1e-3)."""
    def rows(preds: dict[str, Any]) -> dict[tuple[str, Any], dict[str, Any]]:
        return {(uid, row["id"]): row for uid, block in preds.items() for row in block["predictions"]}

    mine, official = rows(ours), rows(theirs)
    if set(mine) != set(official):
        return {"same_decisions": 0.0, "note": f"item ids differ ({len(mine)} ours, {len(official)} official)"}
    if task == "reading":
        diffs = [abs(mine[k][f] - official[k][f]) for k in official for f in ("pred", "prev_pred")
                 if not (math.isnan(mine[k][f]) and math.isnan(official[k][f]))]
        return {"same_decisions": float(sum(d <= 1e-3 for d in diffs) / max(1, len(diffs))),
                "max_abs_score_diff": max(diffs, default=0.0)}
    same = [mine[k]["pred"] == official[k]["pred"] for k in official]
    record: dict[str, Any] = {"same_decisions": sum(same) / len(same)}
    if "prob" in next(iter(official.values())):
        record["max_abs_score_diff"] = max(abs(mine[k]["prob"] - official[k]["prob"]) for k in official)
    return record


def run_against_official(
    pipeline: Path, model: str, source: Source, tasks: Sequence[str], work: Path, *,
    limit: int | None, device: str, batch_tokens: int | None, env: dict[str, str],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-task records (official process vs ours, decisions compared) and the suite summary."""
    suite = work / "suite"
    counts = write_suite(source, tasks, suite, limit)
    notes: list[str] = []
    if "reading" in tasks and importlib.util.find_spec("statsmodels") is None:
        tasks = [t for t in tasks if t != "reading"]
        notes.append("reading left out: the official reading task needs statsmodels (pip install statsmodels)")
    official_base, stub_notes = official_env(work, pipeline, env)
    notes += stub_notes + ["ours without the encoded-request cache (BABYKD_EVAL_CACHE=off): every process encodes"]
    ours_env = {**env, "BABYKD_EVAL_CACHE": "off"}

    def ours(names: Sequence[str], out: Path) -> float:
        command = [sys.executable, "-m", "babykd.evaluate", model, "--tasks", *names, "--suite-data", str(suite),
                   "--data-dir", str(work / "no-legacy-folders"), "--output", str(out / "results.json"),
                   "--no-progress", "--device", device, *(["--fast"] if source.fast else []),
                   *(["--batch-tokens", str(batch_tokens)] if batch_tokens else [])]
        return run_timed(command, ours_env, Path.cwd(), out.with_suffix(".log"))

    runs, failed, official_total = [], [], 0.0
    for task in tasks:
        data = suite / (reading_path(source.fast) if task == "reading" else REGISTRY[task].folder(source.fast))
        out = work / "official"
        try:
            command = official_command(task, model, data, out)
            seconds = run_timed(command, official_base, pipeline, work / f"official-{task}.log")
        except RuntimeError as exc:  # e.g. the official WUG report fails on a NaN rho (fewer than 3 items)
            failed.append({"task": task, "items": counts[task], "error": str(exc)})
            print(json.dumps(failed[-1]), flush=True)
            continue
        official_total += seconds
        ours_s = ours([task], work / f"ours-{task}")
        theirs = json.loads(official_predictions(task, model, data, out).read_text())
        mine = unstamped(json.loads(predictions_path(work / f"ours-{task}", None, SUBMISSION_KEYS[task]).read_text()))[1]
        runs.append({"task": task, "items": counts[task], "ours_s": round(ours_s, 3),
                     "official_loop_s": round(seconds, 3), "speedup": round(seconds / ours_s, 2),
                     **compare(task, mine, theirs)})
        print(json.dumps(runs[-1]), flush=True)
    compared = [r["task"] for r in runs]
    if not compared:
        raise RuntimeError(f"no official task ran; their logs are in {work}")
    suite_s = ours(compared, work / "ours-suite")
    in_process = json.loads((work / "ours-suite" / "results.json").read_text())["tasks"]
    for run in runs:
        run["ours_in_suite_process_s"] = in_process[result_name(run["task"], source.fast)]["wall_time_s"]
    summary = {
        "reference": f"official code {pipeline} (commit {pipeline_commit(pipeline)}), one process per task; "
                     "ours: one process per task in the task rows, one process for all in the suite row",
        "items": sum(counts[t] for t in compared), "ours_s": round(suite_s, 3),
        "official_loop_s": round(official_total, 3), "speedup": round(official_total / suite_s, 2),
        "notes": notes, "runs": runs, "failed": failed,
    }
    return runs, summary
