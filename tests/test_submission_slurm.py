"""The submission as one SLURM chain (scripts/submit_submission.sh) on the real local cluster, at tiny scale.

Two revisions and two GLUE tasks (one epoch, 64 training examples) of the
tiny run and suite of test_submission: a fast array, the full suite, AoA and a
GLUE array side by side (their merges into one results.json are locked), then
collate + validate after all of them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from babykd import REPO_ROOT
from slurm_cluster import ensure_local_slurm, slurm_trail, wait_for_jobs
from test_slurm_jobs import LOCAL_RESOURCES, started_after
from test_submission import run_dir, suite  # noqa: F401  (fixtures)

CHAIN = re.compile(r"fast (\d+) \(0-1\), full (\d+), aoa (\d+), glue (\d+) \(0-1\) side by side; collate (\d+) after all")


@pytest.mark.slow
def test_the_submission_chain_runs_every_stage_in_order_and_collates(suite, run_dir, tmp_path):  # noqa: F811
    ensure_local_slurm()
    env = {**os.environ, "BABYKD_MODELS": str(tmp_path / "models"), "BABYKD_LOGS": str(tmp_path / "logs"),
           "BABYKD_SBATCH_ARGS": " ".join(LOCAL_RESOURCES), "BABYKD_EVAL_DATA": str(suite["legacy"]),
           "BABYKD_EVAL_DATA_2025": str(suite["suite"]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "submit_submission.sh"), str(run_dir), "--epochs", "1",
         "--max-train-examples", "64", "--no-progress", "--device", "cpu"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    match = CHAIN.search(proc.stderr)
    assert match, proc.stderr
    fast, full, aoa, glue, collate = match.groups()
    rows = wait_for_jobs([fast, aoa, full, glue, collate], timeout=420)
    trail = slurm_trail([fast, aoa, full, glue, collate])
    print(trail)
    logs = "\n".join(f"==> {p.name}\n{p.read_text()[-3000:]}" for p in sorted((tmp_path / "logs").glob("*.out")))
    expected = [f"{fast}_0", f"{fast}_1", aoa, full, f"{glue}_0", f"{glue}_1", collate]
    states = {j: (rows[j].state, rows[j].exit_code) for j in expected}
    assert states == {j: ("COMPLETED", "0:0") for j in expected}, logs
    assert started_after(rows[collate], *(rows[j] for j in expected if j != collate))

    results = json.loads((run_dir / "eval" / "results.json").read_text())
    assert {"blimp_filtered", "reading", "aoa", "rte", "mrpc"} <= set(results["tasks"])
    for revision in ("chck_1M", "chck_2M"):
        fast_results = json.loads((run_dir / "eval" / "revisions" / revision / "results.json").read_text())
        assert "blimp_filtered_fast" in fast_results["tasks"]
    collate_log = next((tmp_path / "logs").glob(f"*-{collate}.out")).read_text()
    assert "submission file: " in collate_log and "why: glue.boolq: no train data" in collate_log, collate_log
    assert "fast_eval_results.blimp: 2 revisions, expected 19" in collate_log
