"""CPU smoke of the GPU lease kit (benchmarks/gpu_lease.sh): it must already run when a GPU is lent.

A lease is too short to debug in, so the kit's whole path runs here, with the
packages the GPU machine lacks made unimportable: the pack
from ../shared fits the transfer limit with the working tree, the smoke mode
runs every stage (the `gpu` tests against the CPU, the training benchmark at
tiny shapes, the evaluation benchmark on a tiny model) and writes the results
file and the summary, a stage past its time limit is killed without losing the
others, and the summary never shows a figure that has no record behind it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from babykd import REPO_ROOT
from conftest import SHARED, shared_or_skip

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import gpu_lease  # noqa: E402 - the kit's modules live beside its script, not in the package
import lease_summary  # noqa: E402

MIB = 2**20
#: What the device tool carries in one call (working tree + carried folders) and what may come back.
TRANSFER_LIMIT, MAX_FILES_BACK = 64 * MIB, 8
ALL_ITEMS = 59_875 + 5_218 + 7_618  # blimp_filtered + supplement + ewok (../shared/README.md)


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    shared_or_skip("corpus", "substitute_10M.zip")
    shared_or_skip("evaluation_data")
    dest = tmp_path_factory.mktemp("lease") / "pack"
    return dest, gpu_lease.pack(dest, SHARED)


def tracked_bytes() -> int:
    git = shutil.which("git")
    listed = subprocess.run([git, "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=False) if git else None
    if listed is None or listed.returncode != 0:
        pytest.skip("not a git checkout: the working tree's size cannot be listed")
    return sum((REPO_ROOT / name).stat().st_size for name in listed.stdout.decode().split("\0")
               if name and (REPO_ROOT / name).is_file())


def test_pack_holds_the_data_and_fits_the_transfer_with_the_working_tree(pack_dir, tmp_path: Path) -> None:
    from babykd.evaluation.tasks import DEFAULT_TASKS, load_tasks

    dest, manifest = pack_dir
    assert manifest["bytes"] < gpu_lease.PACK_LIMIT_BYTES
    assert {"corpus/substitute_10M.zip", "evaluation_data.zip"} <= set(manifest["files"])
    assert tracked_bytes() + manifest["bytes"] <= TRANSFER_LIMIT
    assert "/lease-pack/" in (REPO_ROOT / ".gitignore").read_text().split()  # travels only when carried
    shared = gpu_lease.unpack(dest, tmp_path / "shared")
    tasks = load_tasks(DEFAULT_TASKS, shared / "evaluation_data")
    assert sum(task.n_items for task in tasks) == ALL_ITEMS
    assert (shared / "corpus" / "substitute_10M.zip").stat().st_size == manifest["files"]["corpus/substitute_10M.zip"]


def test_pack_refuses_missing_shared_data(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not found"):
        gpu_lease.pack(tmp_path / "pack", tmp_path / "no-shared")


#: Installed here, absent on the GPU machine: the smoke runs with them hidden, as if not installed
#: (`find_spec` gives None, so optional-import checks in our code and in transformers see them absent).
NOT_ON_GPU_MACHINE = ("minicons", "datasets", "nbclient")
HIDE_PACKAGES = f'''import sys

ABSENT = {set(NOT_ON_GPU_MACHINE)!r}


class HideAbsent:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT:
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.finder, attr)


sys.meta_path[:] = [HideAbsent(f) if getattr(f, "__name__", "") == "PathFinder" else f for f in sys.meta_path]
'''


@pytest.fixture(scope="module")
def smoke(pack_dir, tiny_teachers, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("lease-out")
    blockers = tmp_path_factory.mktemp("not-on-gpu-machine")
    (blockers / "sitecustomize.py").write_text(HIDE_PACKAGES)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "BABYKD_PYTHON": sys.executable,
           "PYTHONPATH": str(blockers)}
    completed = subprocess.run(
        ["bash", str(REPO_ROOT / "benchmarks" / "gpu_lease.sh"), str(out), "--smoke", "--pack-dir", str(pack_dir[0]),
         "--eval-model", str(tiny_teachers[0])],
        capture_output=True, text=True, env=env, timeout=1200,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    return out, lease_summary.read_lines(out / gpu_lease.RESULTS)


def test_smoke_runs_every_stage_and_brings_back_few_files(smoke) -> None:
    out, lines = smoke
    files = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert len(files) <= MAX_FILES_BACK and {gpu_lease.RESULTS, gpu_lease.SUMMARY} <= set(files), files
    ends = {line["stage"]: line for line in lines if line.get("event") == "end"}
    expected = ["correctness", *(f"training-{s}" for s in gpu_lease.TRAINING_SCENARIOS), "evaluation",
                "evaluation-2025", "evaluation-2025-entity", "offline-kd"]
    assert list(ends) == expected
    assert all(end["status"] == "ok" and end["records"] > 0 for end in ends.values()), ends


def test_smoke_records_carry_the_measured_figures(smoke) -> None:
    _, lines = smoke
    tests = {r["test"]: r["outcome"] for r in lines if r.get("stage") == "correctness" and "test" in r}
    assert tests == {"test_bf16_pretraining_step_matches_fp32_cpu": "passed"}
    for scenario in gpu_lease.TRAINING_SCENARIOS:
        records = {r["mode"]: r for r in lines if r.get("stage") == f"training-{scenario}" and "mode" in r}
        assert set(records) == {"reference", "ours", "ours/reference"}, records
        assert records["reference"]["tokens_per_s"] > 0 and records["ours"]["tokens_per_s"] > 0
        assert records["ours/reference"]["loss_match"] is True
    summary = next(r for r in lines if r.get("benchmark") == "evaluation")
    assert summary["items"] == 83 and {run["dtype"] for run in summary["runs"]} == {"fp32", "bf16"}  # 1 per subtask
    suite = [r for r in lines if r.get("stage") == "evaluation-2025" and "task" in r]
    entity = [r for r in lines if r.get("stage") == "evaluation-2025-entity" and "task" in r]
    assert [r["task"] for r in suite] == [*gpu_lease.SUITE_CHEAP, "reading"]  # cheap first, each as it ended
    assert entity[0]["task"] == "entity_tracking"
    assert all(r["ours_s"] > 0 and r["official_loop_s"] > 0 for r in suite + entity)
    offline = {r.get("arm", r.get("event")): r for r in lines if r.get("stage") == "offline-kd"}
    assert {"alone", "online", "cached", "heads", "ratios"} <= set(offline)
    assert offline["ratios"]["cached_over_alone"] > 0 and offline["ratios"]["heads_over_online"] > 0


def test_smoke_summary_shows_the_records_and_marks_the_rest_not_measured(smoke) -> None:
    out, lines = smoke
    text = (out / gpu_lease.SUMMARY).read_text()
    assert text.startswith("# GPU lease kit — CPU smoke")
    training = text.split("## Training speed")[1].split("## Evaluation speed")[0]
    suite = text.split("## The 2025 zero-shot suite")[1].split("## Against the goals")[0]
    assert "| entity_tracking |" in suite and "| **suite without entity tracking** |" in suite
    assert "Not in this lease: training compile mode: a cold compile needs ~100 s" in text  # said, not hidden
    assert "not measured" not in training
    ours = next(r for r in lines if r.get("stage") == "training-babyllama" and r.get("mode") == "ours")
    assert f"| babyllama | ours | {ours['tokens_per_s']:,.0f} |" in training
    goals = text.split("## Against the goals")[1]
    # CPU: no MFU (no GPU peak) and not all 145,422 sentences, so those goals are not measured
    assert "babyllama mfu ≥ 0.35 | not measured: no MFU (no known bf16 peak for this device)" in goals
    assert "not measured: only 166 sentences scored" in goals


def test_a_stage_past_its_limit_is_killed_and_reported_not_measured(pack_dir, tmp_path: Path) -> None:
    out = tmp_path / "out"
    gpu_lease.main(["run", str(out), "--smoke", "--pack-dir", str(pack_dir[0]), "--only", "evaluation",
                    "--limit", "evaluation=1"])
    lines = lease_summary.read_lines(out / gpu_lease.RESULTS)
    end = next(line for line in lines if line.get("event") == "end")
    assert end["status"] == "timeout" and end["wall_s"] < 30
    text = (out / gpu_lease.SUMMARY).read_text()
    assert "Not measured: stage timeout after" in text.split("## Evaluation speed")[1]


def _training_lines(device: str, reference: float, ours: float, mfu: float | None) -> list[dict[str, Any]]:
    record = {"scenario": "babyllama", "device": device, "peak_mem_gb": 1.0}
    return [
        {"event": "kit", "mode": "lease", "date": "2026-11-28T00:00:00Z"},
        {"stage": "training-babyllama", "event": "start", "limit_s": 75},
        {"stage": "training-babyllama", **record, "mode": "reference", "tokens_per_s": reference, "mfu": None},
        {"stage": "training-babyllama", **record, "mode": "ours", "tokens_per_s": ours, "mfu": mfu},
        {"stage": "training-babyllama", "scenario": "babyllama", "mode": "ours/reference", "loss_match": True},
        {"stage": "training-babyllama", "event": "end", "status": "ok", "returncode": 0, "wall_s": 60.0,
         "limit_s": 75, "records": 3},
    ]


def test_a_lease_summary_refuses_figures_measured_on_a_cpu() -> None:
    lines = _training_lines("CPU (x86_64, 16 threads)", 1000.0, 3000.0, None)
    lease = lease_summary.render(lines, smoke=False)
    assert "3,000" not in lease and "measured on CPU (x86_64, 16 threads), not a GPU" in lease
    assert "| babyllama | ours | 3,000 |" in lease_summary.render(lines, smoke=True)


def test_a_lease_summary_holds_gpu_figures_against_the_goals() -> None:
    text = lease_summary.render(_training_lines("NVIDIA H200", 30_000.0, 180_000.0, 0.30), smoke=False)
    assert "| babyllama | ours | 180,000 | 30.0% | 1.00 | 6.00 | yes |" in text
    assert "| babyllama speedup ≥ 5× | 6.00× (ours) | yes |" in text
    assert "| babyllama mfu ≥ 0.35 | 30.0% (ours) | no |" in text
    assert "pretrain-gpt2-705m speedup ≥ 2.3× | not measured: stage did not run" in text
    assert "Not measured: stage did not run." in text  # correctness and evaluation never ran
    suite_lines = [{"stage": "evaluation-2025", "event": "start", "limit_s": 90},
                   {"stage": "evaluation-2025", "task": "reading", "items": 1726, "ours_s": 0.5, "official_loop_s": 9.0,
                    "speedup": 18.0, "max_abs_score_diff": 1e-6, "same_decisions": 1.0},
                   {"stage": "evaluation-2025", "event": "end", "status": "timeout", "returncode": -9, "wall_s": 90.0,
                    "limit_s": 90, "records": 1}]
    stopped = lease_summary.render(suite_lines, smoke=False)  # killed before its summary: the finished task stays
    assert "| reading | 1,726 | 0.5 | 9.0 | 18.0 | 100.00% |" in stopped and "tasks measured so far" in stopped


def test_limit_overrides_and_stage_names_are_checked(tmp_path: Path) -> None:
    assert gpu_lease.parse_limits(["evaluation=30"]) == {"evaluation": 30}
    for bad in ("evaluation", "evaluation=0", "evaluation=x"):
        with pytest.raises(SystemExit, match="STAGE=SECONDS"):
            gpu_lease.parse_limits([bad])
    with pytest.raises(SystemExit, match="--only: no stage evaluatio; stages: correctness, training-babyllama"):
        gpu_lease.main(["run", str(tmp_path / "out"), "--only", "evaluatio", "--pack-dir", str(tmp_path)])


def test_the_lease_is_one_call_most_valuable_stages_first() -> None:
    """Correctness, then the real-path training ratios, then evaluation (cheap tasks first, entity tracking
    last and capped); every limit above its plan, all of them inside one call with the kit's overhead;
    no compile stage and no reproduction (they do not fit, and the kit says so)."""
    stages = gpu_lease.plan(Path("out"), "python3", smoke=False, eval_model=None, eval_results=Path("e.jsonl"))
    names = [stage.name for stage in stages]
    assert names == ["correctness", *(f"training-{s}" for s in gpu_lease.TRAINING_SCENARIOS), "evaluation",
                     "evaluation-2025", "evaluation-2025-entity", "offline-kd"]
    assert "--shapes published" in " ".join(stages[-1].command)  # cached vs online vs alone at the 58M student
    assert sum(stage.limit_s for stage in stages) + gpu_lease.KIT_OVERHEAD_S <= gpu_lease.LEASE_CALL_S <= 540
    assert all(0 < stage.planned_s < stage.limit_s for stage in stages)
    commands = {stage.name: " ".join(stage.command) for stage in stages}
    assert not any("compile" in command for command in commands.values())
    assert all("--modes reference,ours " in commands[f"training-{s}"] for s in gpu_lease.TRAINING_SCENARIOS)
    assert "entity_tracking" not in commands["evaluation-2025"]
    assert "--suite-tasks entity_tracking --device" in commands["evaluation-2025-entity"]  # alone: no reading
    assert commands["evaluation-2025"].endswith(" reading --device cuda")  # the cheap tasks, then reading
    assert f"--max-items-per-subtask {gpu_lease.ENTITY_ITEMS_PER_SUBTASK}" in commands["evaluation-2025-entity"]
    assert set(gpu_lease.NOT_IN_LEASE) == {"training compile mode", "reproduction"}


def test_a_run_without_its_pack_fails_in_one_line_before_any_stage(pack_dir, tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = [sys.executable, str(REPO_ROOT / "benchmarks" / "gpu_lease.py"), "run", str(out)]
    missing = subprocess.run([*script, "--pack-dir", str(tmp_path / "no-pack")], capture_output=True, text=True)
    assert missing.returncode != 0 and missing.stderr.strip().count("\n") == 0
    assert "no pack at" in missing.stderr and "carry lease-pack" in missing.stderr and not out.exists()
    partial = tmp_path / "partial"
    shutil.copytree(pack_dir[0], partial)
    (partial / "evaluation_data.zip").unlink()
    broken = subprocess.run([*script, "--pack-dir", str(partial)], capture_output=True, text=True)
    assert broken.returncode != 0 and "incomplete (evaluation_data.zip)" in broken.stderr.strip().splitlines()[0]


def test_a_stage_with_no_time_left_in_the_call_is_skipped_and_said_so(pack_dir, tmp_path: Path) -> None:
    out = tmp_path / "out"
    budget = gpu_lease.KIT_OVERHEAD_S + gpu_lease.MIN_STAGE_S - 1
    gpu_lease.main(["run", str(out), "--smoke", "--pack-dir", str(pack_dir[0]), "--only", "evaluation",
                    "--budget", str(budget)])
    end = next(line for line in lease_summary.read_lines(out / gpu_lease.RESULTS) if line.get("event") == "end")
    assert end["status"] == "skipped" and end["records"] == 0
    assert "| evaluation | skipped |" in (out / gpu_lease.SUMMARY).read_text()
