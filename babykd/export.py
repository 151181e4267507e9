"""Lay out a finished run as a model repository for the hub: final model on ``main``, one branch per revision.

    python -m babykd.export RUN_DIR OUT

The BabyLM submission reads intermediate checkpoints as revisions (branches) of
the model's hub repository, named ``chck_1M`` ... ``chck_100M``; the
age-of-acquisition evaluation asks for exactly those names. This command turns
``RUN_DIR`` (its top-level model and its ``revisions/chck_*`` folders) into a
local git repository in that layout, with a model card on every branch naming
the corpus, the recipe, the words seen (model and lineage) and the scores if
the run has been evaluated. When ``python -m babykd.submission`` has collated
the run's leaderboard file, ``main`` carries it too, and the card says how it
was scored and what ``--check`` finds in it. ``.gitattributes`` marks weights
(and that file, tens of MB) for git-lfs as the hub does (effective where
git-lfs is installed).

Pushing needs a network and is left to the user: create the repository on the
hub, then ``git -C OUT remote add origin https://huggingface.co/USER/NAME`` and
``git -C OUT push --all origin`` (with git-lfs installed; see README).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import subprocess
from pathlib import Path
from typing import Any, Sequence

import yaml

from babykd.evaluation.store import weights_fingerprint, weights_problem
from babykd.evaluation.submission import SUBMISSION_FILE, collate_submission
from babykd.evaluation.submission_check import check_file
from babykd.run.provenance import PROVENANCE_FILE, describe_code_versions
from babykd.run.words_seen import REVISION_INFO_FILE, saved_revisions

#: Files of a saved HF model + tokenizer that belong in the repository (not checkpoints, logs, eval).
MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".txt", ".model")
#: Run-folder files that are records of the run, not parts of the model.
RUN_RECORDS = frozenset({PROVENANCE_FILE, REVISION_INFO_FILE, "run_config.yaml"})
GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in ("*.safetensors", "*.bin", SUBMISSION_FILE)
)


class ExportError(RuntimeError):
    """The run cannot be exported as asked; the message names the path."""


def model_files(folder: Path) -> list[Path]:
    """The model and tokenizer files directly in ``folder``."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES and p.name not in RUN_RECORDS
    )


def _git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=babykd export", "-c", "user.email=babykd@localhost"]
    configured = subprocess.run(["git", "config", "user.email"], cwd=repo, capture_output=True, text=True)
    command = ["git", *(() if configured.returncode == 0 else identity), *args]
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    if done.returncode != 0:
        raise ExportError(f"{repo}: git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def model_card(run_dir: Path, revision: Path | None = None, submission: Path | None = None) -> str:
    """A hub model card (YAML header + markdown) from the run's records (and the exported submission file)."""
    provenance = _read_json(run_dir / PROVENANCE_FILE)
    run_config = yaml.safe_load((run_dir / "run_config.yaml").read_text(encoding="utf-8")) \
        if (run_dir / "run_config.yaml").is_file() else {}
    info = _read_json(revision / REVISION_INFO_FILE) if revision is not None else {}
    name = provenance.get("run", run_dir.name)
    distillation = run_config.get("distillation") or {}
    words = info.get("words_seen", provenance.get("words_seen"))
    lineage = provenance.get("lineage_words_seen")
    header = {"language": ["en"], "library_name": "transformers", "tags": ["babylm", "babykd", "causal-lm"]}
    lines = [
        "---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "",
        f"# {name}" + (f" — revision {revision.name}" if revision is not None else ""), "",
        f"- Corpus: `{(run_config.get('data') or {}).get('corpus', 'unknown')}`",
        f"- Architecture: {(run_config.get('model') or {}).get('name', 'unknown')}, "
        f"{provenance.get('parameters', 'unknown')} parameters",
        "- Recipe: " + (
            f"distilled from {', '.join(Path(t).name for t in distillation.get('teachers', []))} "
            f"(loss weights {distillation.get('weights')})" if distillation else "pretrained from scratch"
        ),
        f"- Words seen: {words:,}" if isinstance(words, int) else "- Words seen: not recorded",
    ]
    if revision is not None:
        lines.append(f"- Checkpoint: first optimizer step at or past {info.get('mark', 0):,} words (step {info.get('step')})")
    else:
        lines.append(
            f"- Words seen by the whole lineage (tokenizer, teachers, this model): {lineage:,}"
            if isinstance(lineage, int) else "- Words seen by the whole lineage: unknown (a teacher has no record)"
        )
    if revision is None:
        lines += score_lines(run_dir) + scoring_lines(submission)
    versions = describe_code_versions(provenance)
    lines += ["", f"Trained with babykd, commit {provenance.get('git_commit', 'unknown')}."
              + (f" The run was {versions}." if versions else ""), ""]
    return "\n".join(lines)


def score_lines(run_dir: Path) -> list[str]:
    """The card's scores section: eval/results.json's tasks, only if scored on the weights exported."""
    results = _read_json(run_dir / "eval" / "results.json")
    if not results.get("tasks"):
        return []
    if weights_problem(results, weights_fingerprint(run_dir)):
        return ["", "## Scores", "", "Not evaluated: eval/results.json was not scored on these weights "
                "(the run was retrained since, or it was written before results were stamped)."]
    lines = ["", "## Scores", "", "| task | score |", "|---|---|"]
    return lines + [f"| {task} | {entry.get('score', float('nan')):.4f} |" for task, entry in results["tasks"].items()]


def scoring_lines(submission: Path | None) -> list[str]:
    """The card's "How this was scored" section: the submission file, how it was made, what --check finds."""
    if submission is None:
        return []
    problems = check_file(submission)
    verdict = ("complete for the strict-small track" if not problems else
               f"{len(problems)} problem(s), e.g. " + "; ".join(f"`{p}`" for p in problems[:3]))
    return [
        "", "## How this was scored", "",
        f"`{SUBMISSION_FILE}` is the BabyLM 2025/2026 leaderboard file, written by `python -m babykd.submission`: "
        "babykd's implementation of `babylm/evaluation-pipeline-2025` (zero-shot tasks ranked by the completion's "
        "log-likelihood; the fast suite on every `chck_*` revision; age of acquisition over the revisions; "
        "(Super)GLUE fine-tuned with the official hyperparameters), collated in the official layout.",
        f"`python -m babykd.submission --check {SUBMISSION_FILE}` (the official collate step's item counts and "
        f"revision names, field types and ranges): {verdict}.",
    ]


def _replace_model(repo: Path, source: Path, card: str) -> None:
    for old in model_files(repo):
        old.unlink()
    for file in model_files(source):
        # copyfile, not copy2: a copied mtime (older than git's index) plus a reused inode and equal size
        # let `git add` take a revision's weights for the previous branch's, unchanged (git's stat cache)
        shutil.copyfile(file, repo / file.name)
    (repo / "README.md").write_text(card, encoding="utf-8")
    _git(repo, "add", "-A")


def export_run(run_dir: str | Path, out: str | Path) -> list[str]:
    """Create the repository at ``out``; return its branch names (``main`` first)."""
    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / PROVENANCE_FILE).is_file():
        raise ExportError(f"{run_dir}: not a finished run (no {PROVENANCE_FILE}); train it to the end first")
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out}: exists and is not empty; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    _git(out, "init", "-q", "-b", "main")
    (out / ".gitattributes").write_text(GITATTRIBUTES, encoding="utf-8")
    with tempfile.TemporaryDirectory() as scratch:
        submission = None
        if (run_dir / "eval" / SUBMISSION_FILE).is_file():  # on main only: a revision branch replaces every *.json
            # collated again through the results store, not copied: a file collated before a retrain would
            # publish the old weights' predictions; the store keeps only what belongs to the weights exported
            submission, _ = collate_submission(run_dir, destination=Path(scratch) / SUBMISSION_FILE)
        _replace_model(out, run_dir, model_card(run_dir, submission=submission))
        if submission is not None:
            shutil.copyfile(submission, out / SUBMISSION_FILE)
            _git(out, "add", SUBMISSION_FILE)
    _git(out, "commit", "-q", "-m", f"{run_dir.name}: final model")
    branches = ["main"]
    for revision in saved_revisions(run_dir):
        _git(out, "checkout", "-q", "-b", revision.name, "main")
        _replace_model(out, revision, model_card(run_dir, revision))
        _git(out, "commit", "-q", "-m", f"{run_dir.name}: {revision.name}")
        branches.append(revision.name)
    _git(out, "checkout", "-q", "main")
    return branches


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m babykd.export", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="a finished run folder (with provenance.json)")
    parser.add_argument("out", type=Path, help="new folder for the git repository")
    args = parser.parse_args(argv)
    try:
        branches = export_run(args.run_dir, args.out)
    except ExportError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"{args.out}: branches {', '.join(branches)}")
    print(f"push: git -C {args.out} remote add origin https://huggingface.co/USER/NAME && "
          f"git -C {args.out} push --all origin")


if __name__ == "__main__":
    main()
