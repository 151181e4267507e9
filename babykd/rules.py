"""The BabyLM 2025/2026 challenge rules a training run must respect: tracks, the epoch cap, checkpoint marks.

Sources: the challenge guidelines/FAQ (babylm.github.io, 2025 and 2026) and the
evaluation pipeline's submission requirements (github babylm/evaluation-pipeline-2025):

* strict-small: at most 10M words of training text and "no more than 10 epochs",
  i.e. at most 100M words seen, repeats counted; strict: 100M and 1B.
* Words seen by ancillary models (a teacher trained on the same corpus, the
  tokenizer's training pass) count toward a model's budget: :func:`lineage_total`
  adds them up from each run's provenance.
* Intermediate checkpoints every 1M words seen up to 10M, then every 10M up to
  100M (strict-small; strict goes on every 100M up to 1B), named like the hub
  revisions the age-of-acquisition evaluation reads: ``chck_1M`` ... ``chck_100M``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from babykd.errors import UserError

M = 1_000_000
#: Folder of a run's word-mark revisions (``<run>/revisions/chck_*``), as the evaluators expect them.
REVISIONS_DIR = "revisions"
#: The final model's revision name: the hub's default branch (``eval/predictions/main``, the exported repo).
FINAL_REVISION = "main"


@dataclass(frozen=True)
class Track:
    """One challenge track: its corpus limit and its words-seen cap."""

    name: str
    corpus_words: int
    words_seen_cap: int
    checkpoint_words: tuple[int, ...]


def _schedule(last: int) -> tuple[int, ...]:
    """Every 1M words up to 10M, every 10M up to 100M, every 100M up to 1B: the marks up to ``last``.

    The official list (the evaluation pipeline's AoA ``StepConfig`` and collate step):
    19 marks for strict-small, 28 for strict.
    """
    marks = [M * k for k in range(1, 10)] + [10 * M * k for k in range(1, 10)] + [100 * M * k for k in range(1, 11)]
    return tuple(mark for mark in marks if mark <= last)


TRACKS: dict[str, Track] = {
    "strict-small": Track("strict-small", 10 * M, 100 * M, _schedule(100 * M)),
    "strict": Track("strict", 100 * M, 1000 * M, _schedule(1000 * M)),
}
#: ``rules.track`` values: a track name, or "none" (no cap, no official schedule).
TRACK_CHOICES = (*TRACKS, "none")


class RulesError(UserError, ValueError):
    """A run that would break its track's rules; the message gives the numbers."""


def default_track(corpus_words: int) -> str:
    """The smallest track whose corpus limit holds ``corpus_words`` (``none`` beyond strict).

    The limit is the corpus's, so the train split of a 10M-word release (about
    9.4M words after the dev split is taken out) is strict-small.
    """
    for track in TRACKS.values():
        if corpus_words <= track.corpus_words:
            return track.name
    return "none"


def resolve_track(configured: str | None, corpus_words: int) -> str:
    """The configured track, or the default for the corpus when None."""
    return configured if configured is not None else default_track(corpus_words)


def check_words_budget(track: str, corpus_words: int, planned_words: int, how: str) -> None:
    """Refuse a run whose schedule would see more words than its track allows.

    ``how`` says where ``planned_words`` comes from (e.g. "12 epochs x 9,412,301 words").
    """
    if track == "none":
        return
    rules = TRACKS[track]
    if corpus_words > rules.corpus_words:
        raise RulesError(
            f"rules.track={track}: the training corpus has {corpus_words:,} words, over the track's "
            f"{rules.corpus_words:,}; use a smaller corpus or rules.track=none"
        )
    if planned_words > rules.words_seen_cap:
        raise RulesError(
            f"rules.track={track}: this schedule would see {planned_words:,} words ({how}), over the "
            f"track's cap of {rules.words_seen_cap:,} words seen (10 epochs of {rules.corpus_words:,}); "
            "train fewer epochs/steps or set rules.track=none"
        )


def planned_words(
    epochs: float, max_steps: int, batch_size: int, chunks: int, words_per_epoch: int
) -> tuple[int, str]:
    """Words a schedule will see and how that follows: ``max_steps`` wins over ``epochs`` (as in HF).

    By steps it is an estimate at the corpus's mean words per chunk (said so in the
    explanation); by epochs it is exact up to the partial batch dropped per epoch.
    """
    if max_steps > 0:
        words = round(max_steps * batch_size * words_per_epoch / chunks)
        return words, f"{max_steps:,} steps x {batch_size} chunks x ~{words_per_epoch / chunks:.1f} words per chunk"
    return round(epochs * words_per_epoch), f"{epochs:g} epochs x {words_per_epoch:,} words"


def checkpoint_marks(setting: Sequence[int] | str | None, track: str) -> tuple[int, ...]:
    """Word marks for ``training.checkpoint_words``: a list, ``babylm`` (the track's schedule) or None."""
    if setting is None:
        return ()
    if setting == "babylm":
        if track == "none":
            raise RulesError("training.checkpoint_words=babylm needs a track (rules.track strict-small or strict)")
        return TRACKS[track].checkpoint_words
    return tuple(sorted(set(setting)))


def scaled_schedule(corpus_words: int, track: str = "strict-small") -> tuple[int, ...]:
    """The track's checkpoint schedule scaled to a smaller corpus (same marks in epochs of it).

    For demos and small-scale studies: a 300k-word corpus gets marks at 30K ... 300K, 600K ... 3M,
    so learning curves over revisions keep the official shape.
    """
    rules = TRACKS[track]
    return tuple(max(1, round(mark * corpus_words / rules.corpus_words)) for mark in rules.checkpoint_words)


def revision_name(words: int) -> str:
    """The hub revision name of a checkpoint at ``words`` words seen: ``chck_7M``, ``chck_250K``, ``chck_1500``."""
    for unit, suffix in ((M, "M"), (1000, "K")):
        if words % unit == 0:
            return f"chck_{words // unit}{suffix}"
    return f"chck_{words}"


def revision_words(name: str) -> int:
    """Inverse of :func:`revision_name` (``chck_20M`` -> 20,000,000)."""
    if not name.startswith("chck_"):
        raise ValueError(f"{name!r} is not a checkpoint revision name (chck_<N>[K|M])")
    number = name[len("chck_"):]
    scale = {"M": M, "K": 1000}.get(number[-1:], 1)
    digits = number[:-1] if scale > 1 else number
    if not digits.isdigit():
        raise ValueError(f"{name!r} is not a checkpoint revision name (chck_<N>[K|M])")
    return int(digits) * scale


def is_revision_name(name: str) -> bool:
    """A name :func:`check_revision_name` accepts."""
    if name == FINAL_REVISION:
        return True
    try:
        return revision_name(revision_words(name)) == name
    except ValueError:
        return False


def check_revision_name(name: str) -> str:
    """``name`` if it is a revision name: ``chck_<N>[K|M]`` as :func:`revision_name` writes it, or ``main``.

    Revision names become path parts (``<run>/revisions/<name>``, ``eval/predictions/<name>``), so a name
    from the user or from a file must not carry a separator or ``..`` that would lead out of the run;
    only the canonical spelling is taken, so one checkpoint has one folder.
    """
    if not is_revision_name(name):
        raise ValueError(f"{name!r} is not a revision name: use chck_<N>[K|M] (e.g. chck_10M, chck_250K) "
                         f"or {FINAL_REVISION}")
    return name


def lineage_total(lineage: Mapping[str, int]) -> int:
    """Words seen by a model and everything it learned from (each contributor counted once)."""
    return sum(lineage.values())
