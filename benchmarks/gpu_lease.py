#!/usr/bin/env python3
"""The GPU lease kit: one prepared command that checks the GPU path and measures every speed figure.

A GPU comes as a short lease: 15 minutes of device time in all, machine start-up
(minutes) included, at most 10 minutes per command, and no machine starts with
under 4 minutes left, so the lease is ONE call of at most :data:`LEASE_CALL_S`
(only the working tree and the carried pack travel, at most 8 files come back).
Everything the lease needs is prepared and smoke-tested here:

    python benchmarks/gpu_lease.py pack [DIR]    # here, before the lease: data into DIR (default lease-pack/)
    python3 benchmarks/gpu_lease.py run OUT_DIR  # on the GPU machine (benchmarks/gpu_lease.sh does this)
    python3 benchmarks/gpu_lease.py reproduce OUT_DIR [--seeds 3]   # issue 14's reproduction: NOT in the lease

`run` first checks that the pack was built and carried (one line and a failing exit if
not), then executes the stages, most valuable first, each in its own process
with its own time limit, so a failure or a hang in one never loses the others'
figures, and never past the call's budget (a stage gets what is left, or is
skipped and says so):

1. correctness: ``pytest -m gpu tests/test_gpu.py`` (bf16 steps vs fp32 CPU,
   no host-device sync in a step, bit-exact resume, evaluator and
   teacher-cache agreement);
2. training speed of the real path: ``bench_training.py`` per scenario
   (babyllama, dskd, pretrain-gpt2-705m at the published shapes; reference
   and ours, each ratio printed as soon as both sides exist);
3. evaluation speed: ``bench_evaluation.py`` (all BLiMP/supplement/EWoK
   sentences, fp32 and bf16), then ``--protocol 2025``: the cheap tasks
   first, entity tracking last in its own stage, capped; every task prints
   its record when it ends.

Not in the lease, for lack of time (:data:`NOT_IN_LEASE`): the compile mode (a
cold Inductor compile of a 16-layer student and two 24-layer teachers needs
about 100 s per scenario) and the reproduction (about 8 minutes).

Every record a stage prints (also one stopped at its limit: the benchmarks
print each figure as soon as it is measured) is appended to
``OUT_DIR/results.jsonl`` when the stage ends, between a start and an end line
for the stage; ``OUT_DIR/summary.md`` is written last from those lines only. A figure with no record behind it is
shown as "not measured" with the reason, and in a lease run a record measured
on a CPU is refused. ``--smoke`` runs the same stages at tiny shapes on the
CPU (what ``tests/test_gpu_lease.py`` runs, so the kit cannot rot).

Only what the GPU machine has is used: its python3 (torch, transformers,
tokenizers, accelerate, pytest, numpy, yaml, tqdm, matplotlib; no minicons,
datasets or nbclient), the project imported from the working tree through
``PYTHONPATH``, and the data from the pack folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from lease_summary import write_summary  # beside this file (the script's folder is on sys.path)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PACK = REPO_ROOT / "lease-pack"
DEFAULT_SHARED = Path(os.environ.get("BABYKD_SHARED", REPO_ROOT.parent / "shared"))
#: What the pack holds, relative to the shared folder (the evaluation folder travels zipped).
CORPUS = Path("corpus") / "substitute_10M.zip"
EVAL_FOLDER = "evaluation_data"
EVAL_2025_ZIP = "evaluation_data_2025.zip"
PACK_LIMIT_BYTES = 40 * 2**20
RESULTS, SUMMARY, LOG, JUNIT = "results.jsonl", "summary.md", "lease.log", "correctness.xml"
TRAINING_SCENARIOS = ("babyllama", "dskd", "pretrain-gpt2-705m")
#: Lease modes per training scenario: the two sides of the comparison (compile does not fit, see NOT_IN_LEASE).
LEASE_MODES = "reference,ours"
#: The one device call: 15 minutes less start-up (minutes) leaves 9, and no machine starts under 4 left.
LEASE_CALL_S = 540
#: Kept free in the call for the kit itself (interpreter, unpacking the pack, the summary).
KIT_OVERHEAD_S = 25
#: A stage is skipped rather than started with less than this left in the call.
MIN_STAGE_S = 15
#: The 2025 suite in two stages: the cheap tasks and reading, then entity tracking alone, capped.
SUITE_CHEAP = ("blimp_filtered", "blimp_supplement", "ewok_filtered", "wug_adj_nominalization", "wug_past_tense")
ENTITY_TRACKING = "entity_tracking"
ENTITY_ITEMS_PER_SUBTASK = 50
NOT_IN_LEASE = {
    "training compile mode": "a cold compile needs ~100 s per scenario; measure it in a lease of its own "
                             "(bench_training.py --modes ours,ours+compile)",
    "reproduction": "about 8 minutes: it does not fit beside the stages in one call (gpu_lease.py reproduce)",
}
#: The correctness tests the CPU smoke runs (cheap ones: no teachers to pretrain).
SMOKE_CORRECTNESS = "pretraining_step"


# ----------------------------------------------------------------------------- the pack


def pack(dest: Path, shared: Path = DEFAULT_SHARED) -> dict[str, Any]:
    """Copy the kit's data from `shared` into `dest`; the manifest says what and how big."""
    missing = [p for p in (shared / CORPUS, shared / EVAL_FOLDER) if not p.exists()]
    if missing:
        raise SystemExit(f"--pack: not found: {', '.join(map(str, missing))} (set BABYKD_SHARED)")
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / CORPUS.parent).mkdir(parents=True)
    shutil.copyfile(shared / CORPUS, staging / CORPUS)
    with zipfile.ZipFile(staging / f"{EVAL_FOLDER}.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for file in sorted((shared / EVAL_FOLDER).rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(shared).as_posix())
    if (shared / EVAL_2025_ZIP).is_file():
        shutil.copyfile(shared / EVAL_2025_ZIP, staging / EVAL_2025_ZIP)
    files = {p.relative_to(staging).as_posix(): p.stat().st_size for p in sorted(staging.rglob("*")) if p.is_file()}
    manifest = {"source": str(shared), "files": files, "bytes": sum(files.values())}
    if manifest["bytes"] >= PACK_LIMIT_BYTES:
        shutil.rmtree(staging)
        raise SystemExit(f"--pack: {manifest['bytes'] / 2**20:.1f} MiB exceeds the {PACK_LIMIT_BYTES >> 20} MiB limit")
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return manifest


def check_pack(pack_dir: Path) -> None:
    """Exit with one line unless `pack_dir` holds every file its manifest lists, at its size (built and carried)."""
    manifest = pack_dir / "manifest.json"
    hint = "run `benchmarks/gpu_lease.sh --pack` here first and carry lease-pack"
    if not manifest.is_file():
        raise SystemExit(f"no pack at {pack_dir}: {hint}")
    files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    wrong = [name for name, size in files.items()
             if not (pack_dir / name).is_file() or (pack_dir / name).stat().st_size != size]
    if wrong:
        raise SystemExit(f"the pack at {pack_dir} is incomplete ({', '.join(wrong)}): {hint}")


def unpack(pack_dir: Path, into: Path) -> Path:
    """A folder laid out like ../shared from a pack (the corpus and 2025 zips linked, evaluation data unzipped)."""
    check_pack(pack_dir)
    (into / CORPUS.parent).mkdir(parents=True, exist_ok=True)
    for name in (CORPUS, Path(EVAL_2025_ZIP)):
        if (pack_dir / name).is_file() and not (into / name).exists():
            (into / name).symlink_to((pack_dir / name).resolve())
    with zipfile.ZipFile(pack_dir / f"{EVAL_FOLDER}.zip") as archive:
        archive.extractall(into)
    return into


# ----------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class Stage:
    """One step of the kit: a command, its time limit, and how its output becomes records.

    `planned_s` is the wall time the stage is expected to need on the GPU machine (an
    estimate until a lease measures it); the limit leaves it headroom.
    """

    name: str
    limit_s: int
    command: list[str]
    parse: Callable[[str, Path], list[dict[str, Any]]]
    env: dict[str, str] = field(default_factory=dict)
    planned_s: int = 0


def json_lines(stdout: str, out: Path) -> list[dict[str, Any]]:
    """The benchmarks print one JSON object per line on stdout (anything else there is ignored)."""
    records = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def junit_records(stdout: str, out: Path) -> list[dict[str, Any]]:
    """One record per test from pytest's JUnit XML: outcome, seconds and the first line of any message.

    pytest writes the XML when it ends; a run killed at its time limit leaves none, and then the
    outcomes come from the verbose progress lines (`tests/test_gpu.py::name PASSED`) printed so far.
    """
    path = out / JUNIT
    if not path.is_file():
        return progress_records(stdout)
    records = []
    for case in ElementTree.parse(path).iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind]
                message = (element.get("message") or "").splitlines()[0][:300] if element.get("message") else ""
                break
        records.append({"test": case.get("name"), "outcome": outcome, "seconds": float(case.get("time") or 0),
                        "message": message})
    return records


def progress_records(stdout: str) -> list[dict[str, Any]]:
    records = []
    for line in stdout.splitlines():
        test, _, rest = line.partition(" ")
        outcome = rest.split(" ", 1)[0].lower()
        if "::" in test and outcome in {"passed", "failed", "error", "skipped"}:
            records.append({"test": test.split("::", 1)[1], "outcome": outcome, "seconds": None,
                            "message": "from the progress line (pytest was stopped before its report)"})
    return records


def plan(out: Path, python: str, smoke: bool, eval_model: Path | None, eval_results: Path) -> list[Stage]:
    """The kit's stages, most valuable first: the lease's limits and shapes, or the CPU smoke's."""
    correctness = [python, "-m", "pytest", "-m", "gpu", str(REPO_ROOT / "tests" / "test_gpu.py"), "-v", "-rA",
                   "-p", "no:cacheprovider", f"--junitxml={out / JUNIT}"]
    bench = [python, str(REPO_ROOT / "benchmarks" / "bench_training.py"), "--no-results"]
    model = ["--model", str(eval_model)] if eval_model is not None else []
    scorer = [python, str(REPO_ROOT / "benchmarks" / "bench_evaluation.py"), "--results", str(eval_results), *model]
    suite = [*scorer, "--protocol", "2025", "--suite-tasks"]
    cheap, entity = [*suite, *SUITE_CHEAP, "reading"], [*suite, ENTITY_TRACKING]
    offline_kd = [python, str(REPO_ROOT / "benchmarks" / "bench_offline_kd.py"), "--no-results",
                  "--work", str(eval_results.parent / "offline-kd")]
    if smoke:
        cpu = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
        tiny = ["--device", "cpu", "--max-items-per-subtask", "1"]
        return [
            Stage("correctness", 240, [*correctness, "-k", SMOKE_CORRECTNESS], junit_records,
                  {"BABYKD_GPU_TEST_DEVICE": "cpu"}),
            *(Stage(f"training-{name}", 120, [*bench, "--scenarios", name, "--device", "cpu", "--shapes", "tiny",
                                              "--modes", LEASE_MODES, "--steps", "1", "--warmup", "1"], json_lines, cpu)
              for name in TRAINING_SCENARIOS),
            Stage("evaluation", 120, [*scorer, "--no-minicons", *tiny], json_lines, cpu),
            Stage("evaluation-2025", 120, [*cheap, *tiny], json_lines, cpu),
            Stage("evaluation-2025-entity", 120, [*entity, *tiny], json_lines, cpu),
            Stage("offline-kd", 240, [*offline_kd, "--shapes", "tiny", "--steps", "3", "--warmup", "1", "--k", "8",
                                      "--device", "cpu"], json_lines, cpu),
        ]
    # planned_s: ~12 s of imports and CUDA start per process, then the work (estimates from the CPU runs and
    # the arithmetic until a lease measures them); each limit leaves headroom over its plan.
    training = {"babyllama": (45, 60), "dskd": (55, 70), "pretrain-gpt2-705m": (40, 55)}
    return [
        Stage("correctness", 110, correctness, junit_records, planned_s=95),
        *(Stage(f"training-{name}", limit, [*bench, "--scenarios", name, "--modes", LEASE_MODES, "--warmup", "5",
                                            "--steps", "15"], json_lines, planned_s=planned)
          for name, (planned, limit) in training.items()),
        Stage("evaluation", 45, [*scorer, "--no-minicons"], json_lines, planned_s=35),
        Stage("evaluation-2025", 60, [*cheap, "--device", "cuda"], json_lines, planned_s=52),
        Stage("evaluation-2025-entity", 30, [*entity, "--device", "cuda", "--max-items-per-subtask",
                                             str(ENTITY_ITEMS_PER_SUBTASK)], json_lines, planned_s=25),
        # The published student's shapes: the 16k tokenizer and token caches, then four 8-step runs (alone,
        # online, top-k cache, head-input cache; last: the least certain plan; a timeout loses only this stage).
        Stage("offline-kd", 85, [*offline_kd, "--shapes", "published", "--steps", "8", "--warmup", "3",
                                 "--device", "cuda"], json_lines, planned_s=75),
    ]


def run_stage(stage: Stage, out: Path, env: dict[str, str], log: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run one stage in its own process group; kill the group at its limit. Returns (end line, records)."""
    started = time.perf_counter()
    log.write(f"\n===== {stage.name} (limit {stage.limit_s} s): {' '.join(stage.command)}\n")
    log.flush()
    process = subprocess.Popen(stage.command, cwd=REPO_ROOT, env={**env, **stage.env}, stdout=subprocess.PIPE,
                               stderr=log, text=True, start_new_session=True)
    try:
        stdout, _ = process.communicate(timeout=stage.limit_s)
        status = "ok" if process.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, _ = process.communicate()
        status = "timeout"
    log.write(stdout)
    log.flush()
    wall = round(time.perf_counter() - started, 1)
    records = [{"stage": stage.name, **record} for record in stage.parse(stdout, out)]
    end = {"stage": stage.name, "event": "end", "status": status, "returncode": process.returncode,
           "wall_s": wall, "limit_s": stage.limit_s, "records": len(records)}
    return end, records


def append_lines(path: Path, lines: Sequence[dict[str, Any]]) -> None:
    """Append and flush at once: the file must hold every finished stage if a later one takes the machine down."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(line, default=str) + "\n" for line in lines)


def child_environment(shared: Path) -> dict[str, str]:
    """The project from this working tree (no install on the GPU machine) and the unpacked data as ../shared."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "BABYKD_SHARED": str(shared), "PYTHONUNBUFFERED": "1"}


def run(out: Path, pack_dir: Path, smoke: bool, eval_model: Path | None, only: Sequence[str] | None,
        limits: dict[str, int], budget_s: int | None) -> Path:
    """Every stage in order within `budget_s` (None: no budget), then the summary. Returns the summary's path."""
    started = time.monotonic()
    results = out / RESULTS
    with tempfile.TemporaryDirectory(prefix="babykd-lease-") as tmp:
        stages = plan(out, sys.executable, smoke, eval_model, Path(tmp) / "evaluation.jsonl")
        unknown = sorted(set(only or ()) - {s.name for s in stages})
        if unknown:
            raise SystemExit(f"--only: no stage {', '.join(unknown)}; stages: {', '.join(s.name for s in stages)}")
        stages = [s for s in stages if not only or s.name in only]
        env = child_environment(unpack(pack_dir, Path(tmp) / "shared"))  # checks the pack before anything runs
        out.mkdir(parents=True, exist_ok=True)
        append_lines(results, [{"event": "kit", "mode": "smoke" if smoke else "lease", "python": sys.version.split()[0],
                                "stages": [s.name for s in stages], "budget_s": budget_s, "not_in_lease": NOT_IN_LEASE,
                                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}])
        with open(out / LOG, "a", encoding="utf-8") as log:
            for stage in stages:
                stage = dataclasses.replace(stage, limit_s=limits.get(stage.name, stage.limit_s))
                if budget_s is not None:
                    left = int(budget_s - KIT_OVERHEAD_S - (time.monotonic() - started))
                    if left < MIN_STAGE_S:
                        print(f"[lease] {stage.name}: skipped ({left} s left in the call)", flush=True)
                        append_lines(results, [{"stage": stage.name, "event": "end", "status": "skipped",
                                                "returncode": None, "wall_s": 0.0, "limit_s": stage.limit_s,
                                                "records": 0}])
                        continue
                    stage = dataclasses.replace(stage, limit_s=min(stage.limit_s, left))
                print(f"[lease] {stage.name}: running (limit {stage.limit_s} s)", flush=True)
                append_lines(results, [{"stage": stage.name, "event": "start", "limit_s": stage.limit_s,
                                        "planned_s": stage.planned_s}])
                end, records = run_stage(stage, out, env, log)
                append_lines(results, [*records, end])
                print(f"[lease] {stage.name}: {end['status']} in {end['wall_s']} s, {len(records)} records", flush=True)
    return write_summary(results, out / SUMMARY, smoke)


def reproduce(out: Path, pack_dir: Path, budget: str, seeds: int) -> int:
    """Issue 14's reproduction on the pack's corpus and evaluation data; RESULTS.md, CSV and PNG land in `out`.

    The runs (weights) stay in a temporary folder: only the report comes back from a lease.
    """
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="babykd-reproduce-") as tmp:
        shared = unpack(pack_dir, Path(tmp) / "shared")
        env = child_environment(shared)
        command = [sys.executable, "-m", "babykd.reproduce", str(shared / CORPUS), "--budget", budget,
                   "--seeds", str(seeds), "--out", str(Path(tmp) / "runs"),
                   "--eval-data", str(shared / EVAL_FOLDER), "--results", str(out / "RESULTS.md")]
        with open(out / "reproduce.log", "a", encoding="utf-8") as log:
            return subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode


def parse_limits(items: Sequence[str]) -> dict[str, int]:
    """`--limit STAGE=SECONDS` pairs."""
    limits = {}
    for item in items:
        stage, _, seconds = item.partition("=")
        if not seconds.isdigit() or int(seconds) < 1:
            raise SystemExit(f"--limit {item!r}: expected STAGE=SECONDS with SECONDS a positive integer")
        limits[stage] = int(seconds)
    return limits


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("pack", help="copy the kit's data from ../shared into DIR (here, before the lease)")
    p.add_argument("dir", nargs="?", type=Path, default=DEFAULT_PACK)
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared data folder (default %(default)s)")
    r = commands.add_parser("run", help="run the stages, write results.jsonl and summary.md into OUT_DIR")
    r.add_argument("out", type=Path)
    r.add_argument("--pack-dir", type=Path, default=DEFAULT_PACK)
    r.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (the tests' run)")
    r.add_argument("--eval-model", type=Path, help="checkpoint for the evaluation stage (default: random Llama-58M)")
    r.add_argument("--only", nargs="+", metavar="STAGE", help="run only these stages (names as in the summary)")
    r.add_argument("--limit", nargs="+", default=[], metavar="STAGE=SECONDS", help="override a stage's time limit")
    r.add_argument("--budget", type=int, default=None,
                   help=f"seconds for the whole call (default {LEASE_CALL_S} in a lease, none in --smoke)")
    q = commands.add_parser("reproduce", help="issue 14's reproduction into OUT_DIR (not in the 15-minute lease)")
    q.add_argument("out", type=Path)
    q.add_argument("--pack-dir", type=Path, default=DEFAULT_PACK)
    q.add_argument("--budget", default="lease")
    q.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "pack":
        manifest = pack(args.dir.resolve(), args.shared)
        print(json.dumps(manifest, indent=1))
        print(f"pack: {manifest['bytes'] / 2**20:.1f} MiB in {args.dir}")
        return 0
    if args.command == "reproduce":
        return reproduce(args.out.resolve(), args.pack_dir.resolve(), args.budget, args.seeds)
    budget = args.budget if args.budget is not None else None if args.smoke else LEASE_CALL_S
    summary = run(args.out.resolve(), args.pack_dir.resolve(), args.smoke, args.eval_model, args.only,
                  parse_limits(args.limit), budget)
    print(summary.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
