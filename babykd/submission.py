"""From a finished run to a BabyLM 2025/2026 submission file in one command, and a check of any such file.

    python -m babykd.submission RUN_DIR [--out DIR] [--skip-glue] [--dtype bf16] [--track strict]
    python -m babykd.submission RUN_DIR --stage fast --index 3     # one unit (what a SLURM array task runs)
    python -m babykd.submission RUN_DIR --list fast glue           # the units of stages: "STAGE NAME" lines
    python -m babykd.submission --check FILE [--track strict-small]

Why one command: the submission needs the fast suite of every ``chck_*``
revision, the full suite of the final model, AoA over the revisions and seven
GLUE fine-tunings; each exists as its own command, and driving them by hand
leaves gaps that only the leaderboard notices. Here every piece is a *unit*,
run in order by the same code the separate commands run (`babykd.evaluate`,
`babykd.evaluation.aoa`, `babykd.evaluation.finetune`), each skipped when its
results are already there for the same weights (``weights_sha256``, the key
`report.write_results` keeps scores under): fast suite per revision -> full
suite -> AoA -> GLUE per task (a task interrupted mid-way resumes from its last
epoch) -> collate -> `submission_check`. It ends by naming what is complete,
what is missing and why (a task whose data this machine does not have is named
with the path looked for). One line per unit with its wall time; the long
units show their own progress bars.

The exit status is 1 when a unit failed; an incomplete file is reported, not
an error (`--check` is the gate before uploading: exit 1, one line per problem).
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from babykd import evaluate
from babykd.cli import library_progress_bars
from babykd.errors import UserError
from babykd.evaluation import aoa, finetune, store
from babykd.evaluation.glue_data import GLUE_TASKS, load_split
from babykd.evaluation.report import weights_fingerprint
from babykd.evaluation.scorer import DTYPES
from babykd.evaluation.submission import FULL_KEYS, collate_submission, track_revisions
from babykd.evaluation.submission_check import check_file
from babykd.evaluation.suite import FULL_ONLY, SUITE_TASKS, make_source, result_name, task_data_sha256
from babykd.evaluation.suite_data import MissingEvalData, SuiteData
from babykd.evaluation.tasks import TaskDataError
from babykd.rules import FINAL_REVISION, REVISIONS_DIR, TRACKS, is_revision_name, revision_words

STAGES = ("fast", "full", "aoa", "glue", "collate")


@dataclass(frozen=True)
class Unit:
    """One resumable piece of the submission: the command it runs and how to tell it is done already."""

    stage: str
    name: str
    run: Callable[[], Any]
    done: Callable[[], bool]
    #: Why the unit cannot produce its submission part here ("" when it can).
    note: str = ""


def suite_digests(args: argparse.Namespace, fast: bool) -> tuple[dict[str, str], dict[str, str]]:
    """(zero-shot task -> its data's sha256 for the tasks with data here, task -> why the others have none)."""
    source = make_source(fast, args.data_dir, args.suite_data)
    digests, missing = {}, {}
    for task in SUITE_TASKS:
        if fast and task in FULL_ONLY:
            continue
        try:
            digests[task] = task_data_sha256(task, source)
        except MissingEvalData as exc:
            missing[task] = str(exc)
    return digests, missing


def _suite_done(path: Path, model_dir: Path, fast: bool, dtype: str, digests: dict[str, str]) -> bool:
    """Every zero-shot task with data here scored on all its items with `dtype`, for these weights and data."""
    record, weights = store.read_record(path), weights_fingerprint(model_dir)
    return record is not None and all(
        store.belongs(record["tasks"].get(result_name(task, fast)), weights,
                      store.suite_setup(fast, dtype, None, sha))
        for task, sha in digests.items()
    )


def revisions_of(run_dir: Path) -> list[str]:
    """The run's ``revisions/chck_*`` folders, in words-seen order; anything else there is named once and ignored."""
    folder = run_dir / REVISIONS_DIR
    if not folder.is_dir():
        return []
    names, stray = [], []
    for path in sorted(folder.iterdir()):
        (names if path.is_dir() and is_revision_name(path.name) and path.name != FINAL_REVISION else stray).append(path.name)
    if stray:
        _warn_stray(folder, tuple(stray))
    return sorted(names, key=revision_words)


@functools.lru_cache(maxsize=None)
def _warn_stray(folder: Path, stray: tuple[str, ...]) -> None:
    """One warning per folder and content, however often the revisions are listed."""
    print(f"warning: {folder}: ignored {', '.join(stray)} (not a revision folder chck_<words>)", file=sys.stderr)


def _common(args: argparse.Namespace) -> list[str]:
    """The options every scoring command of a unit takes from ours."""
    out = ["--dtype", args.dtype] + (["--device", args.device] if args.device else [])
    return out + (["--no-progress"] if args.no_progress else [])


def _data(args: argparse.Namespace) -> list[str]:
    """The 2025 suite option of the AoA and fine-tuning commands (named --data there)."""
    return ["--data", str(args.suite_data)] if args.suite_data else []


def fast_units(args: argparse.Namespace) -> list[Unit]:
    units, (digests, _) = [], suite_digests(args, fast=True)
    for name in revisions_of(args.run_dir):
        argv = [str(args.run_dir), "--tasks", "all", "--fast", "--revision", name, *args.suite_args, *_common(args)]
        results, model = store.results_path(args.run_dir, name), store.revision_model(args.run_dir, name)
        units.append(Unit("fast", name, lambda argv=argv: evaluate.run(evaluate.parse_args(argv)),
                          lambda r=results, m=model: _suite_done(r, m, True, args.dtype, digests)))
    return units


def full_unit(args: argparse.Namespace) -> tuple[Unit, list[str]]:
    """The final model's whole zero-shot suite, and a note per task whose data is absent."""
    argv = [str(args.run_dir), "--tasks", "all", *args.suite_args, *_common(args)]
    results = store.results_path(args.run_dir)
    digests, missing = suite_digests(args, fast=False)
    unit = Unit("full", "final model", lambda: evaluate.run(evaluate.parse_args(argv)),
                lambda: _suite_done(results, args.run_dir, False, args.dtype, digests))
    return unit, [f"{task}: {reason}" for task, reason in missing.items()]


def aoa_unit(args: argparse.Namespace) -> Unit:
    """AoA over the track's revisions; without all of them (a demo's scaled schedule), unofficially over those there."""
    wanted, found = track_revisions(args.track), revisions_of(args.run_dir)
    absent = [r for r in wanted if r not in found]
    revisions = list(wanted) if not absent else found
    note = "" if not absent else (
        f"aoa: the run lacks {len(absent)} of the track's {len(wanted)} revisions ({', '.join(absent[:3])}"
        f"{', ...' if len(absent) > 3 else ''}): scored on the {len(found)} it has, kept out of the submission"
    )
    argv = [str(args.run_dir), "--track", args.track, *_common(args), *_data(args)]
    argv += ["--revisions", *revisions] if absent else []

    def done() -> bool:  # AoA belongs to its revisions' weights, not the final model's
        try:
            data_sha = aoa.load_aoa_data(SuiteData(args.suite_data)).sha256
        except TaskDataError:  # no AoA data here: running the unit names what is missing
            return False
        setup = store.aoa_setup(revisions, args.dtype, None, data_sha, official_revisions=not absent)
        weights = store.revisions_sha256(args.run_dir, revisions)
        return store.entry_done(store.results_path(args.run_dir), "aoa", weights, setup) and (
            bool(absent) or store.predictions_path(store.eval_dir(args.run_dir), None, "aoa").is_file())

    return Unit("aoa", f"{len(revisions)} revisions", lambda: aoa.run(aoa.parse_args(argv)), done, note)


def glue_units(args: argparse.Namespace) -> tuple[list[Unit], list[str]]:
    """(one unit per GLUE task whose data is here, why each other task is not run)."""
    suite = SuiteData(args.suite_data)
    units, notes = [], []
    for name, task in GLUE_TASKS.items():
        splits = {}
        try:  # one example of each split: the data's sha256 is the whole file's
            for split in ("train", "valid"):
                splits[split] = load_split(suite, task, split, 1)
        except TaskDataError as exc:
            notes.append(f"glue.{name}: no {split} data ({exc})")
            continue
        argv = [str(args.run_dir), name, *args.glue_args, *_data(args)]
        argv += ["--device", args.device] if args.device else []
        argv += ["--no-progress"] if args.no_progress else []
        hp = finetune.parse_args(argv).hp
        setup = finetune.task_setup(task, hp, splits["train"], splits["valid"], args.max_train_examples, None)

        def done(name: str = name, setup: dict[str, Any] = setup) -> bool:
            weights = weights_fingerprint(args.run_dir)
            return store.entry_done(store.results_path(args.run_dir), name, weights, setup)

        units.append(Unit("glue", name, lambda argv=argv: finetune.run(finetune.parse_args(argv)), done))
    return units, notes


def stage_units(args: argparse.Namespace, stage: str) -> tuple[list[Unit], list[str]]:
    """The units of `stage` and the notes on parts it cannot produce."""
    if stage in ("fast", "aoa") and not revisions_of(args.run_dir):
        return [], [f"{stage}: the run has no {REVISIONS_DIR}/chck_* (train with training.checkpoint_words: babylm)"]
    if stage == "fast":
        return fast_units(args), []
    if stage == "full":
        unit, notes = full_unit(args)
        return [unit], notes
    if stage == "aoa":
        unit = aoa_unit(args)
        return [unit], [unit.note] if unit.note else []
    if stage == "glue":
        if args.skip_glue:
            return [], ["glue: skipped (--skip-glue)"]
        units, notes = glue_units(args)
        if args.max_train_examples:
            notes.append(f"glue: fine-tuned on the first {args.max_train_examples} training examples "
                         "(--max-train-examples): scores only, kept out of the submission")
        return units, notes
    return [], []


def run_unit(unit: Unit, position: str, run_dir: Path) -> bool:
    """Run one unit unless done (asked under the unit's lock); one line with its wall time; False when it failed."""
    label = f"[{position}] {unit.stage} {unit.name}"
    with store.unit_lock(run_dir, f"{unit.stage} {unit.name}"):
        if unit.done():
            print(f"{label}: done already for these weights, skipped", flush=True)
            return True
        return _run_now(unit, label)


def _run_now(unit: Unit, label: str) -> bool:
    print(f"{label}: running", flush=True)
    start = time.perf_counter()
    try:
        unit.run()
    except UserError as exc:  # the evaluation functions end with one line naming what is wrong
        print(f"{label}: FAILED after {time.perf_counter() - start:.1f} s: error: {exc}", flush=True)
        return False
    print(f"{label}: finished in {time.perf_counter() - start:.1f} s", flush=True)
    return True


def collate_and_report(args: argparse.Namespace, notes: Sequence[str]) -> Path:
    """Collate, validate, and print what is complete, what is missing and why."""
    path, _ = collate_submission(args.run_dir, args.track)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = Path(shutil.copy2(path, args.out / path.name))
    problems = check_file(path, args.track, suite=args.suite_data)
    parts = (*FULL_KEYS, "fast_eval_results")
    complete = [p for p in parts if not any(line.startswith((f"{p}:", f"{p}.", f"{p}[")) for line in problems)]
    print(f"submission file: {path}")
    print(f"complete: {', '.join(complete) or 'nothing'}")
    for note in notes:
        print(f"why: {note}")
    if problems:
        print(f"not ready to upload: {len(problems)} problem(s):")
        for line in problems:
            print(f"  {line}")
    else:
        print(f"ready to upload: every part of the {args.track} submission is there and valid")
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m babykd.submission", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    parser.add_argument("run_dir", type=Path, nargs="?", help="a finished run (final model, revisions/chck_*)")
    parser.add_argument("--check", type=Path, metavar="FILE", help="only validate this submission file (anyone's)")
    parser.add_argument("--track", choices=sorted(TRACKS), default="strict-small",
                        help="whose revision list (default: strict-small)")
    parser.add_argument("--out", type=Path, help="also copy the submission file here (default: RUN_DIR/eval only)")
    parser.add_argument("--stage", choices=STAGES, help="run this stage only (collate: collate and validate)")
    parser.add_argument("--index", type=int, help="with --stage: only its unit number N (a SLURM array task id)")
    parser.add_argument("--list", nargs="+", choices=STAGES[:4],
                        help="print 'STAGE NAME' per unit of these stages, and exit")
    parser.add_argument("--skip-glue", action="store_true", help="no GLUE fine-tuning (its part stays missing)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                        help="zero-shot and AoA scoring (fp32: official)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--data-dir", type=Path, help="BLiMP/supplement/EWoK full sets (as babykd.evaluate --data-dir)")
    parser.add_argument("--suite-data", type=Path, help="the BabyLM 2025 evaluation zip or folder (as babykd.evaluate)")
    parser.add_argument("--epochs", type=int, help="GLUE: epochs of every task (default: the official 10, WSC 30)")
    parser.add_argument("--max-train-examples", type=int,
                        help="GLUE: first N training examples (smoke runs; not official)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars inside the units")
    parser.add_argument("--debug", action="store_true", help="full tracebacks")
    args = parser.parse_args(argv)
    if (args.check is None) == (args.run_dir is None):
        parser.error("give RUN_DIR, or --check FILE")
    if args.index is not None and args.stage is None:
        parser.error("--index needs --stage")
    for flag, least in (("epochs", 1), ("max_train_examples", 1), ("index", 0)):
        if getattr(args, flag) is not None and getattr(args, flag) < least:
            parser.error(f"--{flag.replace('_', '-')} must be at least {least}")
    if args.run_dir is not None and not (args.run_dir / "config.json").is_file():
        parser.error(f"{args.run_dir}: no final model here (config.json); train the run first")
    args.suite_args = [*(["--data-dir", str(args.data_dir)] if args.data_dir else []),
                       *(["--suite-data", str(args.suite_data)] if args.suite_data else [])]
    args.glue_args = [*(["--epochs", str(args.epochs)] if args.epochs else []),
                      *(["--max-train-examples", str(args.max_train_examples)] if args.max_train_examples else [])]
    return args


def check_main(args: argparse.Namespace) -> int:
    problems = check_file(args.check, args.track)
    for line in problems:
        print(f"{args.check}: {line}")
    if not problems:
        print(f"{args.check}: a complete {args.track} submission")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    library_progress_bars(show=not args.no_progress)
    if args.check is not None:
        return check_main(args)
    try:
        if args.list:
            for stage in args.list:
                units, notes = stage_units(args, stage)
                for note in notes:
                    print(note, file=sys.stderr)
                for unit in units:
                    print(f"{stage} {unit.name}")
            return 0
        stages = [args.stage] if args.stage else list(STAGES)
        plan, notes = [], []
        for stage in STAGES:  # the chosen stages' units; every stage's notes when collating (they are reported)
            if stage not in stages and "collate" not in stages:
                continue
            units, stage_notes = stage_units(args, stage)
            plan.extend(units if stage in stages else [])
            notes.extend(stage_notes)
        if args.index is not None:
            if not 0 <= args.index < len(plan):
                raise TaskDataError(
                    f"{args.run_dir}: stage {args.stage} has {len(plan)} unit(s); no number {args.index}"
                )
            plan = [plan[args.index]]
        ok = [run_unit(unit, f"{k}/{len(plan)}", args.run_dir) for k, unit in enumerate(plan, start=1)]
        if "collate" in stages:
            collate_and_report(args, notes)
    except TaskDataError as exc:
        if args.debug:
            raise
        raise SystemExit(f"error: {exc}") from None
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
