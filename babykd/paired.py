"""Paired-by-seed differences between two models of a study, and the one rule that calls a difference real.

A study's arms share each seed's data order and initial weights, so A − B is taken seed by seed: the
seed-to-seed spread of that difference is the noise a verdict has to clear. RESULTS.md states the rule
once (`RULE`), and every sentence, table cell and plain-words summary applies it through `Paired`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

#: The student's plain cross-entropy on the dev split (`eval_loss` in provenance), nats per token: comparable
#: across objectives, and the one key where lower is better.
DEV_CE = "dev CE"
#: The verdict rule in words, as RESULTS.md prints it above its findings.
RULE = ("differences are paired by seed (A − B on the same seed); one counts as real when |mean Δ| exceeds "
        "twice its standard error over seeds (sd(Δ)/√n). Lower dev CE is better")


def scale_of(key: str) -> tuple[float, str]:
    """How a key's differences are printed: dev CE in nats, scores (fractions) in points."""
    return (1.0, "nats") if key == DEV_CE else (100.0, "points")


class PerSeed(Protocol):
    """What a paired difference reads of a model: its per-seed values of a key."""

    def by_seed(self, key: str) -> Mapping[int, float]: ...


@dataclass(frozen=True)
class Paired:
    """A − B per seed both have: mean, sd, the seeds, and how many favour A (higher score / lower CE)."""

    key: str
    mean: float
    sd: float
    n: int
    favour_a: int

    @property
    def lower_is_better(self) -> bool:
        return self.key == DEV_CE

    @property
    def standard_error(self) -> float:
        """sd(Δ)/√n; nan with one seed (no noise estimate)."""
        return self.sd / math.sqrt(self.n) if self.n > 1 else math.nan

    @property
    def exceeds_noise(self) -> bool:
        """|mean Δ| above twice its standard error over seeds (a paired t above 2); needs 2 seeds or more."""
        if self.n < 2:
            return False
        return abs(self.mean) > 2 * self.standard_error if self.sd > 0 else self.mean != 0

    @property
    def a_better(self) -> bool:
        return self.mean < 0 if self.lower_is_better else self.mean > 0

    @property
    def largest_gain(self) -> float:
        """The largest improvement of A over B the rule leaves open (mean Δ two standard errors its way, ≥ 0).

        In the key's own direction: nats less dev CE, or score more. nan with one seed."""
        if self.n < 2:
            return math.nan
        toward_a = -self.mean if self.lower_is_better else self.mean
        return max(0.0, toward_a + 2 * self.standard_error)

    @property
    def scale(self) -> tuple[float, str]:
        return scale_of(self.key)

    @property
    def verdict(self) -> str:
        if not self.exceeds_noise:
            return "within seed noise"
        return f"exceeds seed noise: {'better' if self.a_better else 'worse'}"

    def describe(self) -> str:
        """One finding in words: `dev CE -0.05 nats (3 paired seeds, sd 0.09; 2/3 seeds favour it; …)`."""
        scale, unit = self.scale
        spread = "" if math.isnan(self.sd) else f", sd {self.sd * scale:.2f}"
        return (f"{self.key} {self.mean * scale:+.2f} {unit} ({self.n} paired seeds{spread}; "
                f"{self.favour_a}/{self.n} seeds favour it; {self.verdict})")

    def cell(self, seeds: int) -> str:
        """The table's cell: mean ± sd, seeds paired out of the study's, and a mark when it clears the rule."""
        scale, _ = self.scale
        spread = "" if math.isnan(self.sd) else f" ± {self.sd * scale:.2f}"
        mark = (" **better**" if self.a_better else " **worse**") if self.exceeds_noise else ""
        return f"{self.mean * scale:+.2f}{spread} ({self.n}/{seeds}){mark}"


def paired(a: PerSeed, b: PerSeed, key: str) -> Paired | None:
    """A − B on every seed both ran (nan values skipped); None when they share no seed."""
    first, second = a.by_seed(key), b.by_seed(key)
    diffs = [first[s] - second[s] for s in first if s in second and not math.isnan(first[s] - second[s])]
    if not diffs:
        return None
    better = (lambda d: d < 0) if key == DEV_CE else (lambda d: d > 0)
    return Paired(key, statistics.fmean(diffs), statistics.stdev(diffs) if len(diffs) > 1 else math.nan,
                  len(diffs), sum(1 for d in diffs if better(d)))


def paired_table(pairs: Sequence[tuple[str, Sequence[Paired | None]]], keys: Sequence[str], seeds: int) -> str:
    """Markdown: one line per comparison, one column per key (dev CE in nats, scores in points)."""
    lines = ["| A − B | " + " | ".join(f"{key} ({scale_of(key)[1]})" for key in keys) + " |",
             "|---|" + "---:|" * len(keys)]
    for label, results in pairs:
        lines.append(f"| {label} | " + " | ".join("n/a" if r is None else r.cell(seeds) for r in results) + " |")
    return "\n".join(lines)
