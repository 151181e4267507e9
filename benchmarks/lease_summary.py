"""The GPU lease kit's markdown summary, built from its results file and nothing else.

Why a module of its own: the summary is where a figure could be invented, so it
has one rule, tested on its own (`tests/test_gpu_lease.py`): every number in
it is read from a record the kit wrote during the run; a figure with no record
is printed as "not measured" with the reason (stage timed out, failed, record
missing, or, in a lease run, measured on a CPU).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

#: The issue's goals on one H100/H200: (scenario, figure, threshold).
TRAINING_GOALS = (("babyllama", "speedup", 5.0), ("babyllama", "mfu", 0.35),
                  ("pretrain-gpt2-705m", "speedup", 2.3), ("pretrain-gpt2-705m", "mfu", 0.45))
#: All BLiMP + supplement + EWoK sentences (two per item): the evaluation goal is < 10 s fp32 for these.
ALL_SENTENCES = 145_422
EVAL_GOAL_S = 10.0
#: The 2025 suite's stages: the cheap tasks and reading, then entity tracking (capped) in its own.
SUITE_STAGE, ENTITY_STAGE, ENTITY_TASK = "evaluation-2025", "evaluation-2025-entity", "entity_tracking"


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _fmt(value: Any, spec: str = "") -> str:
    return "—" if value is None else format(value, spec)


class Evidence:
    """The kit's lines, grouped by stage, with the rule for which records count as measured."""

    def __init__(self, lines: Iterable[dict[str, Any]], smoke: bool) -> None:
        self.lines = list(lines)
        self.smoke = smoke
        self.ends = {line["stage"]: line for line in self.lines if line.get("event") == "end"}
        self.started = [line["stage"] for line in self.lines if line.get("event") == "start"]
        self.planned = {line["stage"]: line.get("planned_s") for line in self.lines if line.get("event") == "start"}

    def records(self, stage: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("stage") == stage and "event" not in line]

    def why_missing(self, stage: str) -> str:
        """Why a stage left no usable figure."""
        end = self.ends.get(stage)
        if end is None:
            return "stage did not run" if stage not in self.started else "stage did not finish (kit stopped)"
        if end["status"] != "ok":
            return f"stage {end['status']} after {end['wall_s']} s (limit {end['limit_s']} s)"
        return "no record"

    def refused(self, record: dict[str, Any], device: str | None) -> str | None:
        """A reason to refuse a record's figures, or None. A lease reports GPU figures only."""
        if "error" in record:
            return f"error: {str(record['error'])[:120]}"
        if not self.smoke and (device is None or device.startswith("CPU")):
            return f"measured on {device or 'an unknown device'}, not a GPU"
        return None


def stage_table(evidence: Evidence) -> list[str]:
    rows = ["| stage | status | wall (s) | planned (s) | limit (s) | records |", "|---|---|---:|---:|---:|---:|"]
    for stage in dict.fromkeys([*evidence.started, *evidence.ends]):
        end, planned = evidence.ends.get(stage), _fmt(evidence.planned.get(stage) or None)
        if end is None:
            rows.append(f"| {stage} | did not finish | — | {planned} | — | {len(evidence.records(stage))} |")
        else:
            rows.append(f"| {stage} | {end['status']} | {end['wall_s']} | {planned} | {end['limit_s']} | "
                        f"{end['records']} |")
    return rows


def correctness_section(evidence: Evidence) -> list[str]:
    tests = evidence.records("correctness")
    if not tests:
        return [f"Not measured: {evidence.why_missing('correctness')}."]
    counts = Counter(t["outcome"] for t in tests)
    lines = [", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) + f" (of {len(tests)} tests)."]
    bad = [t for t in tests if t["outcome"] in {"failed", "error"}]
    if bad:
        lines += ["", "| test | outcome | message |", "|---|---|---|"]
        lines += [f"| {t['test']} | {t['outcome']} | {t['message'].replace('|', '/')} |" for t in bad]
    return lines


def training_rows(evidence: Evidence, scenario: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict], str | None]:
    """(accepted mode records, comparison records by mode, reason when nothing was accepted)."""
    stage = f"training-{scenario}"
    records = [r for r in evidence.records(stage) if r.get("scenario") == scenario]
    modes, refusals = {}, []
    for record in records:
        if "/" in record.get("mode", ""):
            continue
        reason = evidence.refused(record, record.get("device"))
        if reason:
            refusals.append(f"{record.get('mode')}: {reason}")
        else:
            modes[record["mode"]] = record
    compared = {r["mode"].split("/")[0]: r for r in records if "/" in r.get("mode", "") and r["mode"].split("/")[0] in modes}
    reason = "; ".join(refusals) or evidence.why_missing(stage)
    return modes, compared, None if modes else reason


def best_mode(modes: dict[str, dict[str, Any]]) -> str | None:
    """The fastest measured mode other than the reference."""
    ours = [m for m in modes if m != "reference" and modes[m].get("tokens_per_s")]
    return max(ours, key=lambda m: modes[m]["tokens_per_s"]) if ours else None


def training_section(evidence: Evidence, scenarios: Iterable[str]) -> list[str]:
    lines = ["| scenario | mode | tokens/s | MFU | peak GB | ×reference | first-batch loss equal |",
             "|---|---|---:|---:|---:|---:|---|"]
    for scenario in scenarios:
        modes, compared, reason = training_rows(evidence, scenario)
        if reason:
            lines.append(f"| {scenario} | — | not measured: {reason} | | | | |")
            continue
        reference = modes.get("reference", {}).get("tokens_per_s")
        for mode, record in modes.items():
            speed = record.get("tokens_per_s")
            ratio = f"{speed / reference:.2f}" if speed and reference and mode != "reference" else "—"
            match = compared.get(mode, {}).get("loss_match")
            equal = "—" if mode == "reference" else {True: "yes", False: "**no**"}.get(match, "not compared")
            lines.append(f"| {scenario} | {mode} | {_fmt(speed, ',.0f')} | {_fmt(record.get('mfu'), '.1%')} | "
                         f"{_fmt(record.get('peak_mem_gb'), '.2f')} | {ratio} | {equal} |")
    return lines


def evaluation_figures(evidence: Evidence) -> tuple[dict[str, Any] | None, str | None]:
    """The benchmark's summary record (it carries the runs) if accepted, else the reason."""
    summaries = [r for r in evidence.records("evaluation") if r.get("benchmark") == "evaluation"]
    if not summaries:
        return None, evidence.why_missing("evaluation")
    summary = summaries[-1]
    reason = evidence.refused(summary, summary.get("device"))
    return (None, reason) if reason else (summary, None)


def evaluation_section(evidence: Evidence) -> list[str]:
    summary, reason = evaluation_figures(evidence)
    if summary is None:
        return [f"Not measured: {reason}."]
    lines = [f"Model: {summary['model']}; tasks: {', '.join(summary['tasks'])}; items: {summary['items']:,}; "
             f"device: {summary.get('device')}.", "",
             "| evaluator | dtype | sentences | seconds | sentences/s |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['evaluator']} | {r['dtype']} | {r['sentences']:,} | {r['seconds']} | {r['sentences_per_s']:,} |"
              for r in summary["runs"]]
    lines += ["", f"bf16 vs fp32: same decision on {summary['bf16_same_decisions']:.2%} of items, "
                  f"largest log-prob difference {summary['bf16_max_abs_logprob_diff']:.3g}."]
    return lines


def suite_section(evidence: Evidence) -> list[str]:
    """The 2025 suite per task (each printed as it finished), ours against the official loops."""
    records = evidence.records(SUITE_STAGE)
    summary = next((r for r in records if r.get("benchmark") == "evaluation-2025"), None)
    entity = [r for r in evidence.records(ENTITY_STAGE) if r.get("task") == ENTITY_TASK]
    tasks = [r for r in records if "task" in r] + entity
    # Per-task lines carry no device: the summary's, or (stage stopped early) the device the lease asked for.
    device = summary.get("device") if summary else None if evidence.smoke else "cuda (the stage's --device)"
    reason = evidence.why_missing(SUITE_STAGE) if not tasks else evidence.refused({}, device)
    if reason:
        return [f"Not measured: {reason}."]
    lines = [f"Device: {device}." + ("" if summary else " The stage stopped before its summary: tasks measured so far."),
             "", "| task | items | ours (s) | official loop (s) | ratio | same decisions |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['task']} | {r['items']:,} | {r['ours_s']} | {r['official_loop_s']} | {r['speedup']} | "
              f"{r['same_decisions']:.2%} |" for r in tasks]
    if summary:
        lines.append(f"| **suite without entity tracking** | {summary['items']:,} | {summary['ours_s']} | "
                     f"{summary['official_loop_s']} | {summary['speedup']} | |")
    if not entity:
        lines += ["", f"entity_tracking not measured: {evidence.why_missing(ENTITY_STAGE)}."]
    return lines


def goals_section(evidence: Evidence) -> list[str]:
    lines = ["| goal | measured | met |", "|---|---|---|"]
    for scenario, figure, threshold in TRAINING_GOALS:
        modes, _, reason = training_rows(evidence, scenario)
        best = best_mode(modes) if not reason else None
        label = f"{scenario} {figure} ≥ {threshold:g}{'×' if figure == 'speedup' else ''}"
        reference = modes.get("reference", {}).get("tokens_per_s")
        why = ((reason or "no mode of ours measured") if best is None
               else "no reference measured" if figure == "speedup" and not reference
               else "no MFU (no known bf16 peak for this device)" if figure == "mfu" and modes[best].get("mfu") is None
               else None)
        if why:
            lines.append(f"| {label} | not measured: {why} | — |")
            continue
        value = modes[best]["tokens_per_s"] / reference if figure == "speedup" else modes[best]["mfu"]
        shown = f"{value:.2f}× ({best})" if figure == "speedup" else f"{value:.1%} ({best})"
        lines.append(f"| {label} | {shown} | {'yes' if value >= threshold else 'no'} |")
    summary, reason = evaluation_figures(evidence)
    fp32 = next((r for r in (summary or {}).get("runs", []) if r["dtype"] == "fp32" and r["evaluator"] == "babykd"), None)
    label = f"evaluation of all {ALL_SENTENCES:,} sentences < {EVAL_GOAL_S:g} s fp32"
    if fp32 is None:
        lines.append(f"| {label} | not measured: {reason or 'no fp32 run'} | — |")
    elif fp32["sentences"] != ALL_SENTENCES:
        lines.append(f"| {label} | not measured: only {fp32['sentences']:,} sentences scored | — |")
    else:
        lines.append(f"| {label} | {fp32['seconds']} s | {'yes' if fp32['seconds'] < EVAL_GOAL_S else 'no'} |")
    return lines


def environment(evidence: Evidence) -> str:
    """Device and versions as the training benchmark reported them (its first line), else the eval's."""
    env = next((r["env"] for r in evidence.lines if "env" in r and r.get("stage", "").startswith("training")), None)
    if env is None:
        env = next((r for r in evidence.lines if r.get("benchmark") == "evaluation"), {})
    versions = env.get("versions", {})
    return (f"device: {env.get('device', 'unknown')}; python {versions.get('python', '?')}, torch "
            f"{versions.get('torch', '?')}, transformers {versions.get('transformers', '?')}; "
            f"commit {env.get('git_commit', 'unknown')}")


def render(lines: list[dict[str, Any]], smoke: bool) -> str:
    evidence = Evidence(lines, smoke)
    kit = next((line for line in lines if line.get("event") == "kit"), {})
    scenarios = [s.removeprefix("training-") for s in dict.fromkeys(evidence.started) if s.startswith("training-")]
    mode = "CPU smoke (tiny shapes: the figures only show that the kit runs)" if smoke else "GPU lease"
    parts = [
        f"# GPU lease kit — {mode}", "",
        f"{kit.get('date', '')}; {environment(evidence)}. Every figure below comes from `results.jsonl` of this run; "
        "a figure without a record there is marked *not measured*.", "",
        "## Stages", "", *stage_table(evidence), "",
        *(f"Not in this lease: {what}: {why}." for what, why in kit.get("not_in_lease", {}).items()), "",
        "## Correctness (`pytest -m gpu`)", "", *correctness_section(evidence), "",
        "## Training speed (`bench_training.py`)", "", *training_section(evidence, scenarios), "",
        "## Evaluation speed (`bench_evaluation.py`)", "", *evaluation_section(evidence), "",
        "## The 2025 zero-shot suite (`bench_evaluation.py --protocol 2025`)", "", *suite_section(evidence), "",
        "## Against the goals", "", *goals_section(evidence), "",
    ]
    return "\n".join(parts)


def write_summary(results: Path, summary: Path, smoke: bool) -> Path:
    summary.write_text(render(read_lines(results), smoke), encoding="utf-8")
    return summary
