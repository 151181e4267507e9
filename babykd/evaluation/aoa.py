"""Age of acquisition (BabyLM 2025): word surprisal over a run's ``chck_*`` revisions, scored against children.

    python -m babykd.evaluation.aoa MODEL_DIR [--data SUITE] [--track strict-small]

MODEL_DIR is a finished run: its revisions are HF model folders
``MODEL_DIR/revisions/chck_1M`` ... ``chck_100M``. What the official pipeline
does (``evaluation_pipeline/AoA_word``), and so this module:

* Words and contexts: ``full_eval/aoa/cdi_childes.json`` (word -> CHILDES
  contexts); words of one character are dropped, words without contexts give
  no points (``--min_context`` is 0: the shell script's ``MIN_CONTEXT=20`` is
  never passed on).
* Revisions: the fixed list of the track (strict-small: ``chck_1M`` ..
  ``chck_9M``, ``chck_10M`` .. ``chck_100M``; other tracks add ``chck_200M`` ..
  ``chck_1000M``); the words seen of a revision come from its name. Other
  revisions in the folder (``chck_250K``) are not used. A missing one is an
  error here (the official run logs it and its collate step then refuses the
  submission).
* Surprisal of a word in a context: the text ``context.strip() + " " +
  word.strip()`` tokenized with the tokenizer's default special tokens and
  offsets; the word's tokens are those whose character span ends after the
  word starts; the causal LM's log-probs are shifted, so token 0 is never
  scored; surprisal = minus the sum of their natural-log probabilities.
* The score (`aoa_fit`): Pearson r between per-word sigmoid-fit AoAs of the
  model and of children (``cdi_human.csv``).

What is ours: each revision's contexts are scored in length-sorted batches
(`scorer.loglikelihoods`), not one forward pass per context. A context longer
than a model with learned positions can take gives NaN, as the official
per-item call fails there and records NaN.

Outputs: the ``aoa`` entry of ``MODEL_DIR/eval/results.json`` and
``MODEL_DIR/eval/predictions/main/aoa.json``, the official ``surprisal.json``
content, which is the ``aoa`` part of the submission file (`submission`,
collated again after each run); a run on a subset (``--max-words``,
``--revisions``) writes its surprisals to ``eval/aoa_partial_surprisal.json``
instead. ``--from-surprisals FILE`` scores an existing
surprisal file (ours or the official pipeline's) without any model.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from babykd.run.atomic import atomic_write_json
from babykd.cli import library_progress_bars
from babykd.errors import EvaluationError, UserError
from babykd.evaluation import store, submission
from babykd.evaluation.aoa_fit import curve_fitness
from babykd.evaluation.family_results import refresh_submission, save_family_results
from babykd.evaluation.scorer import DTYPES, Request, loglikelihoods
from babykd.evaluation.suite_data import SuiteData
from babykd.evaluation.tasks import TaskDataError
from babykd.models import position_limit
from babykd.rules import (
    FINAL_REVISION, REVISIONS_DIR, TRACKS, check_revision_name, is_revision_name, revision_words,
)

CONTEXTS_FILE = "full_eval/aoa/cdi_childes.json"
#: Surprisal records per revision the official collate step asserts (AOA_SIZE: the 504 CDI words' contexts).
OFFICIAL_CONTEXTS = 8005
CDI_FILE = "full_eval/aoa/cdi_human.csv"
#: The months the CDI table may have (the pipeline uses those of 16..30 present).
CDI_AGES = tuple(range(16, 31))
#: The revisions the official AoA run reads, per track (``AoA_word/eval_util.py`` ``StepConfig``).
TRACK_REVISIONS: dict[str, tuple[str, ...]] = {name: submission.track_revisions(name) for name in TRACKS}
#: `--revisions found`: every revision folder the run has.
FOUND = "found"
#: Surprisals of a run on a subset of words or revisions (not a submission part).
PARTIAL_SURPRISALS = "aoa_partial_surprisal.json"


@dataclass(frozen=True)
class AoAData:
    """The words with their contexts (official order) and the children's CDI curves."""

    words: tuple[str, ...]
    contexts: tuple[tuple[str, ...], ...]
    cdi_ages: np.ndarray
    cdi: dict[str, np.ndarray]
    sha256: str
    source: str

    @property
    def n_contexts(self) -> int:
        return sum(map(len, self.contexts))


def _parse_cdi(raw: bytes, where: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """CDI proportions per word at the months present; the first row of a word wins (as `np.where(...)[0][0]`)."""
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))
    if not rows or "word" not in rows[0]:
        raise TaskDataError(f"{where}: expected a CSV with a 'word' column")
    ages = [a for a in CDI_AGES if str(a) in rows[0]]
    if not ages:
        raise TaskDataError(f"{where}: no age columns ({CDI_AGES[0]}..{CDI_AGES[-1]})")
    cdi: dict[str, np.ndarray] = {}
    for line, row in enumerate(rows, start=2):
        try:
            values = np.array([float(row[str(a)]) if row[str(a)] not in ("", None) else math.nan for a in ages])
        except ValueError as exc:
            raise TaskDataError(f"{where}:{line}: {exc}") from None
        cdi.setdefault(row["word"], values)
    return np.array(ages), cdi


def load_aoa_data(suite: SuiteData, max_words: int | None = None) -> AoAData:
    """Read both AoA files from the suite; `max_words` keeps the first N words (smoke runs)."""
    raw_contexts, raw_cdi = suite.read_bytes(CONTEXTS_FILE), suite.read_bytes(CDI_FILE)
    try:
        table = json.loads(raw_contexts)
        pairs = [
            (word, tuple(entry["context"] for entry in entries))
            for word, entries in table.items() if len(word) > 1
        ]
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise TaskDataError(f"{suite.describe(CONTEXTS_FILE)}: not a word -> [{{'context': ...}}] table ({exc})") from None
    if max_words is not None:
        pairs = pairs[:max_words]
    ages, cdi = _parse_cdi(raw_cdi, suite.describe(CDI_FILE))
    return AoAData(
        words=tuple(w for w, _ in pairs),
        contexts=tuple(c for _, c in pairs),
        cdi_ages=ages,
        cdi=cdi,
        sha256=hashlib.sha256(hashlib.sha256(raw_contexts).digest() + hashlib.sha256(raw_cdi).digest()).hexdigest(),
        source=str(suite.source),
    )


@dataclass(frozen=True)
class Revision:
    name: str
    words_seen: int
    path: Path


def find_revisions(model_dir: Path, names: Sequence[str]) -> list[Revision]:
    """The named revisions of a run, in words-seen order; an error lists every one that is missing."""
    folder = model_dir / REVISIONS_DIR
    revisions = sorted((Revision(n, revision_words(n), folder / n) for n in names), key=lambda r: r.words_seen)
    missing = [r.name for r in revisions if not (r.path / "config.json").is_file()]
    if missing:
        present = sorted(p.name for p in folder.glob("chck_*")) if folder.is_dir() else []
        raise TaskDataError(
            f"{folder}: missing revision(s) {', '.join(missing)} (present: {', '.join(present) or 'none'}); "
            "the AoA score needs every checkpoint of the track (or name the ones to use with --revisions)"
        )
    return revisions


def revision_names(model_dir: Path, requested: Sequence[str] | None, track: str) -> Sequence[str]:
    """The revisions to read: the track's list by default, every ``chck_*`` folder for ``found``, else those named."""
    if requested is None:
        return TRACK_REVISIONS[track]
    if list(requested) == [FOUND]:
        found = [p.name for p in (model_dir / REVISIONS_DIR).glob("chck_*") if p.is_dir()]
        if not found:
            raise TaskDataError(f"{model_dir / REVISIONS_DIR}: no chck_* revision folders")
        return found
    return requested


def word_requests(tokenizer: Any, words: Sequence[str], contexts: Sequence[str], max_length: int | None) -> list[Request | None]:
    """One request per (word, context): the tokens up to the word's last token and how many of them to score.

    Tokens after the word (a special token a post-processor appends) cannot
    change a causal LM's log-probs of the word, so they are dropped. None
    marks an input longer than `max_length` (scored NaN).
    """
    texts = [c.strip() + " " + w.strip() for w, c in zip(words, contexts)]
    encoded = tokenizer(texts, return_offsets_mapping=True)
    requests: list[Request | None] = []
    for text, word, ids, offsets in zip(texts, words, encoded["input_ids"], encoded["offset_mapping"]):
        start = len(text) - len(word.strip())
        in_word = [i for i, (_, end) in enumerate(offsets) if end > start]
        if not in_word:  # nothing to score: the official sum over no tokens is 0
            requests.append(Request(tuple(ids), 0))
            continue
        last = in_word[-1]
        tokens = tuple(ids[: last + 1])
        if max_length is not None and len(tokens) - 1 > max_length:
            requests.append(None)
            continue
        requests.append(Request(tokens, last + 1 - max(in_word[0], 1)))
    return requests


def revision_surprisals(
    model: torch.nn.Module, tokenizer: Any, data: AoAData, *, dtype: str = "fp32",
    batch_tokens: int | None = None, progress: bool = True,
) -> np.ndarray:
    """Surprisal (nats) of every (word, context) in data order; NaN where the model cannot take the input."""
    words = [w for w, contexts in zip(data.words, data.contexts) for _ in contexts]
    contexts = [c for cs in data.contexts for c in cs]
    limit = position_limit(model.config)
    requests = word_requests(tokenizer, words, contexts, limit)
    scorable = [r for r in requests if r is not None]
    lls = loglikelihoods(model, scorable, dtype=dtype, batch_tokens=batch_tokens, progress=progress)
    out = np.full(len(requests), math.nan)
    out[[i for i, r in enumerate(requests) if r is not None]] = -lls
    return out


def surprisal_records(data: AoAData, revision: Revision, surprisals: np.ndarray) -> list[dict[str, Any]]:
    """The official ``surprisal.json`` entries of one revision."""
    records, k = [], 0
    for word, contexts in zip(data.words, data.contexts):
        for context_id, context in enumerate(contexts):
            records.append({
                "step": revision.name, "word_count": revision.words_seen, "target_word": word,
                "context_id": context_id, "context": context, "surprisal": float(surprisals[k]),
            })
            k += 1
    return records


def score_records(records: Sequence[dict[str, Any]], data: AoAData) -> dict[str, Any]:
    """The ``aoa`` results entry from surprisal records (any order of revisions)."""
    steps = sorted({r["step"] for r in records}, key=revision_words)
    order = {name: i for i, name in enumerate(steps)}
    ordered = sorted(records, key=lambda r: order[r["step"]])  # stable: word and context order kept
    fit = curve_fitness(ordered, {s: revision_words(s) for s in steps}, data.cdi_ages, data.cdi)
    return {
        "score": fit.correlation,
        "stderr": None,
        "metric": "pearson_r(model AoA, child AoA)",
        "p_value": fit.p_value,
        "n_words": fit.n_words,
        "n_contexts": len(records) // max(1, len(steps)),
        "revisions": steps,
        "nan_surprisals": int(sum(1 for r in records if math.isnan(r["surprisal"]))),
        "data_sha256": data.sha256,
        "path": data.source,
        "words": {w: {"model_log10_words": m, "child_months": c} for w, (m, c) in fit.words.items()},
    }


def read_surprisals(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(its store stamp, or None for a plain file; its records) of a surprisal file, ours or the official pipeline's.

    Why each record is checked here: its step becomes a revision (a name, words seen, the setup) and its values the
    word curves, so a record that is not one (a crafted step name, a missing field) would end the fit with a
    traceback far from the file; here it is one `TaskDataError` naming the file and the record.
    """
    try:
        stamp, payload = store.unstamped(json.loads(path.read_text(encoding="utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TaskDataError(f"{path}: not a JSON file ({exc})") from None
    records = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(records, list) or not records:
        raise TaskDataError(f"{path}: not a surprisal file (no 'results' list of records)")
    for i, record in enumerate(records):
        if problem := _surprisal_record_problem(record):
            raise TaskDataError(f"{path}: record {i}: {problem}")
    return stamp, records


def _surprisal_record_problem(record: Any) -> str | None:
    """What keeps `record` from being scored (None: it can be): the fields the fit reads, of their types."""
    if not isinstance(record, dict) or not {"step", "target_word", "surprisal"} <= set(record):
        return "not a surprisal record (an object with step, target_word and surprisal)"
    step, surprisal = record["step"], record["surprisal"]
    if not isinstance(step, str) or step == FINAL_REVISION or not is_revision_name(step):
        return f"step {step!r} is not a checkpoint revision name (chck_<N>[K|M], e.g. chck_10M)"
    if not isinstance(record["target_word"], str):
        return f"target_word must be a string, got {record['target_word']!r}"
    if not isinstance(surprisal, (int, float)) or isinstance(surprisal, bool):
        return f"surprisal must be a number, got {surprisal!r}"
    return None


def run_revisions(
    revisions: Sequence[Revision], data: AoAData, device: torch.device, *, dtype: str = "fp32",
    batch_tokens: int | None = None, progress: bool = True,
) -> list[dict[str, Any]]:
    """Surprisal records of every revision (each revision loaded with its own tokenizer)."""
    records: list[dict[str, Any]] = []
    for revision in tqdm(revisions, desc="AoA revisions", unit="rev", disable=not progress):
        tokenizer = AutoTokenizer.from_pretrained(revision.path)
        model = AutoModelForCausalLM.from_pretrained(revision.path, dtype=torch.float32).to(device)
        surprisals = revision_surprisals(model, tokenizer, data, dtype=dtype, batch_tokens=batch_tokens, progress=progress)
        records.extend(surprisal_records(data, revision, surprisals))
        del model
    return records


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m babykd.evaluation.aoa", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="run directory holding revisions/chck_*")
    parser.add_argument("--data", default=None, help="BabyLM 2025 evaluation zip or folder (default: $BABYKD_EVAL_DATA_2025, else ../shared/evaluation_data_2025.zip)")
    parser.add_argument("--track", choices=sorted(TRACK_REVISIONS), default="strict-small", help="which official revision list to read")
    parser.add_argument("--revisions", nargs="+", default=None,
                        help="revision names to use instead of the track's list, or 'found': every revisions/chck_* of the run "
                             "(e.g. a demo's scaled schedule); not an official score unless they are the track's list")
    parser.add_argument("--from-surprisals", type=Path, default=None, help="score this surprisal.json instead of running models")
    parser.add_argument("--output", type=Path, default=None, help="results JSON (default: MODEL_DIR/eval/results.json)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--batch-tokens", type=int, default=None, help="token budget per forward pass")
    parser.add_argument("--max-words", type=int, default=None, help="only the first N words (smoke runs; not an official score)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    for flag in ("batch_tokens", "max_words"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    if args.revisions and args.revisions != [FOUND]:
        for name in args.revisions:
            try:
                revision_words(check_revision_name(name))  # a path part under MODEL_DIR/revisions, and words seen
            except ValueError as exc:
                parser.error(str(exc))
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Score as `args` say; returns the results record written. Raises `EvaluationError` (one line)."""
    library_progress_bars(show=not args.no_progress)
    start = time.perf_counter()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:  # data and revisions first: a missing file or checkpoint fails before any model is loaded
        data = load_aoa_data(SuiteData(args.data), args.max_words)
        if args.from_surprisals is not None:
            from_file, records = read_surprisals(args.from_surprisals)
            surprisal_file = args.from_surprisals
        else:
            revisions = find_revisions(args.model, revision_names(args.model, args.revisions, args.track))
    except (TaskDataError, OSError) as exc:
        raise EvaluationError(str(exc)) from None
    steps = {r["step"] for r in records} if args.from_surprisals is not None else {r.name for r in revisions}
    official = args.max_words is None and steps == set(TRACK_REVISIONS[args.track])
    setup = store.aoa_setup(sorted(steps), args.dtype, args.max_words, data.sha256, official)
    # AoA belongs to its revisions' weights: those the surprisal file names (none for a plain one), or ours
    if args.from_surprisals is not None:
        weights = (from_file or {}).get("weights_sha256")
    else:
        weights = store.revisions_sha256(args.model, sorted(steps))
    if args.from_surprisals is None:
        records = run_revisions(revisions, data, device, dtype=args.dtype, batch_tokens=args.batch_tokens, progress=not args.no_progress)
        surprisals = {
            "metadata": {"model_name": store.model_name(args.model), "use_bos_only": False,
                         "total_steps": len(revisions), "completed_steps": len(revisions)},
            "results": records,
        }
        if official:  # the submission's "aoa" part
            surprisal_file = store.write_predictions(store.eval_dir(args.model), None, "aoa", surprisals, weights, setup)
        else:  # a subset of words or revisions: kept out of the submission
            surprisal_file = store.eval_dir(args.model) / PARTIAL_SURPRISALS
            atomic_write_json(surprisal_file, store.stamped_file(surprisals, weights, setup))
    try:
        scored = score_records(records, data)
    except ImportError as exc:  # scipy missing (the GPU machine): the surprisals are safe on disk
        raise EvaluationError(f"{exc}; the surprisals are saved: score them where scipy is installed with "
                         f"--from-surprisals {surprisal_file}") from None
    entry = {**scored, "surprisal_file": str(surprisal_file), "dtype": args.dtype,
             "max_words": args.max_words, "official_setup": official and args.dtype == "fp32",
             **store.stamp(weights, setup)}
    written = save_family_results(args.model, args.output, {"aoa": entry}, time.perf_counter() - start, device)
    print(f"{store.model_name(args.model)}: aoa r = {entry['score']:.4f} over {entry['n_words']} words "
          f"({len(entry['revisions'])} revisions, {entry['nan_surprisals']} NaN surprisals) -> {surprisal_file}")
    if args.from_surprisals is None and official:
        refresh_submission(args.model)
    return written


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The command line: parse, run, and the one place an `EvaluationError` becomes an exit status."""
    try:
        return run(parse_args(argv))
    except UserError as exc:  # EvaluationError, or a full disk (DiskFullError)
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
