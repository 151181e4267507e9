"""Smoke test on a real SLURM scheduler: batch job, job array, dependency, failure.

Why: the project's `.slurm` scripts rely on exactly these scheduler features; this proves the
local cluster and the helpers in slurm_cluster.py handle them before real scripts are submitted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_cluster import ensure_local_slurm, slurm_trail, submit, wait_for_jobs

pytestmark = pytest.mark.slow

# Writes "<name>[_<array task>].txt" in the working directory as key=value lines, sleeping
# in between so a dependent job has something to wait for.
JOB_SCRIPT = """#!/bin/bash
set -euo pipefail
name="$1${SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}"
start=$(date +%s.%N)
echo "hello from $name"
sleep "$2"
printf '%s\\n' "start=$start" "end=$(date +%s.%N)" "job=$SLURM_JOB_ID" \\
    "task=${SLURM_ARRAY_TASK_ID:-}" "token=${BABYKD_SMOKE_TOKEN:-}" "cwd=$PWD" > "$name.txt"
exit "${3:-0}"
"""
# Commas and spaces: checks env values reach the job intact.
TOKEN = "a,b c=d"


def read_key_values(path: Path) -> dict[str, str]:
    """Parse the key=value lines a job wrote, naming the file in errors (jobs may die half-way)."""
    if not path.exists():
        raise AssertionError(f"job output {path} was not written")
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        key, sep, value = line.partition("=")
        assert sep, f"{path}:{number}: expected key=value, got {line!r}"
        values[key] = value
    return values


@pytest.fixture()
def job_script(tmp_path: Path) -> Path:
    ensure_local_slurm()
    path = tmp_path / "job.sh"
    path.write_text(JOB_SCRIPT)
    return path


def test_batch_array_and_dependency_complete_in_order(job_script: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    common = {"chdir": work, "env": {"BABYKD_SMOKE_TOKEN": TOKEN}}
    first = submit(job_script, "first", 3, output=work / "first-%j.out", **common)
    array = submit(job_script, "task", 0, array="0-2", output=work / "task-%A_%a.out", **common)
    after = submit(job_script, "after", 0, dependency=f"afterok:{first}", job_name="after", **common)
    ids = [first, array, after]
    queued = slurm_trail(ids)
    rows = wait_for_jobs(ids, timeout=120)
    print(f"--- right after submission ---\n{queued}--- after completion ---\n{slurm_trail(ids)}")

    # The first job runs 3 s, so the dependent one is seen held back by its dependency.
    assert "Dependency" in queued, queued
    expected = [first, f"{array}_0", f"{array}_1", f"{array}_2", after]
    assert sorted(rows) == sorted(expected), rows
    assert {j: (rows[j].state, rows[j].exit_code) for j in expected} == {
        j: ("COMPLETED", "0:0") for j in expected}
    assert rows[after].name == "after"

    first_out = read_key_values(work / "first.txt")
    assert first_out["job"] == first
    assert first_out["token"] == TOKEN
    assert first_out["cwd"] == str(work)
    assert (work / f"first-{first}.out").read_text() == "hello from first\n"
    for task in range(3):
        task_out = read_key_values(work / f"task_{task}.txt")
        assert task_out["task"] == str(task)
        assert (work / f"task-{array}_{task}.out").read_text() == f"hello from task_{task}\n"

    after_out = read_key_values(work / "after.txt")
    assert float(after_out["start"]) >= float(first_out["end"])
    assert rows[after].start >= rows[first].end  # sacct agrees (ISO times, 1 s resolution)


def test_failed_job_is_reported_and_its_dependent_cancelled(job_script: Path, tmp_path: Path) -> None:
    failing = submit(job_script, "failing", 0, 3, chdir=tmp_path)
    dependent = submit(job_script, "never", 0, dependency=f"afterok:{failing}", chdir=tmp_path)
    rows = wait_for_jobs([failing, dependent], timeout=120)
    print(slurm_trail([failing, dependent]))

    assert (rows[failing].state, rows[failing].exit_code) == ("FAILED", "3:0")
    assert rows[dependent].state.startswith("CANCELLED")
    assert not (tmp_path / "never.txt").exists()
