"""A study's confirmation: arms chosen from its screens by dev CE, then trained on every seed beside its plan.

Issue 31's rule, "screen cheaply, confirm with seeds": the screened points (one seed, short runs) are
ranked by the student's dev CE, as `python -m babykd.grid summary` ranks them; the best point's alpha
(its KL weight) fixes the control, logit KD at that alpha, and the grid of hidden-term variants is
screened at it. Then the best points, the best variant, the control and (optionally) the control from
the head-input teacher cache are trained per seed at the students' full length, on the plan's data
order and initial weights, so every difference is paired by seed. The choice is written to
`<out>/confirmation.json` and into RESULTS.md, with the figures it was made on.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from babykd.grid import PointResult, format_value, rank, read_point
from babykd.losses.terms import weight_of
from babykd.paired import DEV_CE, Paired, paired
from babykd.reproduce import (
    GRID_DIR, Budget, Comparison, ModelRow, Screen, Stage, evaluate_runs, run_grids, run_stages, screens,
    stage_config,
)
from babykd.run.atomic import atomic_write_json

#: The term whose weight a confirmation's alpha is (the logit KD term), and that weight's setting.
ALPHA_TERM = "kl"
ALPHA_KEY = f"distillation.weights.{ALPHA_TERM}"
#: Where the choice is recorded, below the budget's output root.
CHOICE_FILE = "confirmation.json"


@dataclass(frozen=True)
class Arm:
    """A model the confirmation trains per seed: a distillation recipe under `overrides`, and why it was chosen."""

    name: str
    recipe: str
    overrides: tuple[str, ...]
    why: str

    def stage(self, seed: int) -> Stage:
        return Stage(self.recipe, "student", seed, self.name, self.overrides)


@dataclass
class Confirmation:
    """What a confirmation adds to the report: its runs, its screens and comparisons, its choice in words, and
    which models answer its question (the control, the hidden-term arms set against it, the cache pair)."""

    stages: list[Stage]
    screens: list[Screen]
    comparisons: list[Comparison]
    choice: str
    control: str
    baselines: list[str]
    hidden_arms: list[str]
    cache_pair: tuple[str, str] | None

    def section(self, rows: Sequence[ModelRow], columns: Sequence[str]) -> str:
        """RESULTS.md's confirmation: how the arms were chosen, then what their paired differences say."""
        return "\n".join([self.choice, what_this_says(self, {row.label: row for row in rows}, columns)])


def ranked_points(screened: Sequence[Screen]) -> list[tuple[Screen, PointResult]]:
    """Every finished point of `screened`, lowest dev CE first (`babykd.grid.rank`'s order, across the grids)."""
    pairs = [(screen, read_point(screen.grid.point(index), run_dir))
             for screen in screened for index, run_dir in zip(screen.indices, screen.run_dirs())]
    owner = {result.run_dir: screen for screen, result in pairs}
    return [(owner[result.run_dir], result) for result in rank([result for _, result in pairs])]


def point_arm(screen: Screen, result: PointResult, extra: Sequence[str], suffix: str, why: str) -> Arm:
    """A screened point as an arm: its grid's base recipe under the point's values (and `extra`)."""
    base = screen.grid.base
    recipe = Stage(base.stem, "student", 0).config_path
    if recipe.resolve() != base.resolve():
        raise SystemExit(f"{screen.grid.source}: base {base} is not a distillation recipe of the repository "
                         f"({recipe.parent}): a confirmation trains those")
    return Arm(f"{result.point.name}{suffix}", base.stem, (*result.point.overrides, *extra), why)


def alpha_of(screen: Screen, result: PointResult) -> float:
    """The KL weight the point trained with (an axis or its recipe's value)."""
    distillation = screen.grid.config(result.point.index, screen.overrides).distillation
    assert distillation is not None, "a screened grid is a distillation recipe's"
    return weight_of(distillation.weights, ALPHA_TERM)


def _dev_ce(result: PointResult) -> str:
    return f"dev CE {result.dev_ce:.4f}" if result.dev_ce is not None else "no dev CE"


def same_as_plan(arm: Arm, budget: Budget, plan_stages: Sequence[Stage], corpus: Path, out_root: Path) -> str | None:
    """The plan's recipe that trains exactly `arm` (the published point, say), so it is not trained twice."""
    def settings(stage: Stage) -> dict[str, Any]:
        config = dataclasses.asdict(stage_config(stage, budget, corpus, out_root))
        config.pop("output")
        return config

    wanted = settings(arm.stage(0))
    return next((stage.label for stage in plan_stages
                 if stage.role == "student" and stage.seed == 0 and settings(stage) == wanted), None)


def run_confirmation(budget: Budget, plan_stages: Sequence[Stage], screened: Sequence[Screen], seeds: int,
                     corpus: Path, out_root: Path, eval_data: Path | None, suite_data: Path | None) -> Confirmation:
    """Choose the arms from the finished screens, screen the variants, train and score every arm on every seed."""
    confirmation = budget.confirmation
    assert confirmation is not None
    ranked = ranked_points([s for s in screened if s.entry.file in confirmation.screens])
    if not ranked:
        sys.exit("confirmation: no screened point has finished with a dev CE; run the screens first")
    best_screen, best = ranked[0]
    alpha = alpha_of(best_screen, best)
    at_alpha = f"{ALPHA_KEY}={format_value(alpha)}"
    logit = Arm(f"logit-kd-L{format_value(alpha)}", best_screen.grid.base.stem, (at_alpha, *confirmation.logit_kd),
                f"logit KD at the best point's alpha ({best.point.name}: {_dev_ce(best)}): "
                f"`{' '.join(confirmation.logit_kd)}`")
    arms = [logit]
    points = [point_arm(screen, result, (), "", f"screen rank {position} of {len(ranked)} ({_dev_ce(result)})")
              for position, (screen, result) in enumerate(ranked[:confirmation.best], 1)]

    variant_screens = screens(confirmation.variants, budget, corpus, out_root, extra=[at_alpha],
                              folder=f"{GRID_DIR}/at-L{format_value(alpha)}")
    run_grids(variant_screens, out_root)
    variants = ranked_points(variant_screens)
    if variants:
        screen, result = variants[0]
        points.append(point_arm(screen, result, (at_alpha,), f"-L{format_value(alpha)}",
                                f"best hidden-term variant at alpha {format_value(alpha)} of {len(variants)} "
                                f"({_dev_ce(result)})"))
    elif confirmation.variants:
        print("confirmation: no variant point finished with a dev CE: no variant arm", flush=True)

    compared, notes = [], []
    for arm in points:
        twin = same_as_plan(arm, budget, plan_stages, corpus, out_root)
        if twin is None:
            arms.append(arm)
        else:
            notes.append(f"- `{arm.name}` ({arm.why}) is the plan's `{twin}`: not trained twice")
        compared.append(twin or arm.name)
    if confirmation.cache:
        fixed = ("data.random_offset=false",)
        arms += [Arm(f"{logit.name}-fixed", logit.recipe, (*logit.overrides, *fixed),
                     "the control on fixed chunks (the cache's data order), online teachers"),
                 Arm(f"{logit.name}-cached", logit.recipe,
                     (*logit.overrides, *fixed, "distillation.teacher_cache_head_inputs=true"),
                     "the same from the head-input teacher cache")]

    stages = [arm.stage(seed) for seed in range(seeds) for arm in arms]
    run_stages(stages, budget, corpus, out_root)
    evaluate_runs([*(out_root / s.run_name for s in stages), *(d for s in variant_screens for d in s.run_dirs())],
                  budget.evaluation, eval_data, suite_data, out_root)

    comparisons = [Comparison(f"{logit.name} (logit KD at the best alpha) vs the student alone", logit.name, baseline)
                   for baseline in budget.plan.baselines]
    named = dict.fromkeys([*compared,
                           *(s.label for s in plan_stages if s.role == "student" and s.seed == 0)])
    comparisons += [Comparison(f"{name} vs {logit.name}", name, logit.name) for name in named]
    cache_pair = (f"{logit.name}-cached", f"{logit.name}-fixed") if confirmation.cache else None
    if cache_pair:
        comparisons.append(Comparison(f"{logit.name}: teacher cache vs online teachers (fixed chunks)", *cache_pair))
    choice = {"alpha": alpha, "ranked": [{"run": r.point.name, "dev_ce": r.dev_ce} for _, r in ranked],
              "variants": [{"run": r.point.name, "dev_ce": r.dev_ce} for _, r in variants],
              "arms": [dataclasses.asdict(arm) for arm in arms], "plan_twins": notes}
    atomic_write_json(out_root / CHOICE_FILE, choice)
    return Confirmation(stages, variant_screens, comparisons, choice_section(arms, notes, alpha, seeds), logit.name,
                        list(budget.plan.baselines), list(named), cache_pair)


def choice_section(arms: Sequence[Arm], notes: Sequence[str], alpha: float, seeds: int) -> str:
    """RESULTS.md's account of the choice: each arm, what it is and why it was chosen."""
    lines = ["## Confirmation arms", "",
             f"Chosen by `babykd.confirmation` from the screens above (lowest dev CE first); the best point's "
             f"alpha is {format_value(alpha)}. Each arm trains {seeds} seed{'s' * (seeds > 1)} at the students' "
             f"full length on the plan's data order and initial weights (its choice: `{CHOICE_FILE}`).", ""]
    lines += [f"- `{arm.name}`: {arm.why}; settings `{' '.join(arm.overrides)}` on `{arm.recipe}`" for arm in arms]
    return "\n".join([*lines, *notes, ""])


def _gain(result: Paired) -> str:
    scale, unit = result.scale
    return f"{result.largest_gain * scale:.3f} {unit}"


def _delta(result: Paired) -> str:
    scale, unit = result.scale
    spread = "" if math.isnan(result.sd) else f" ± {result.sd * scale:.3f}"
    return f"{result.mean * scale:+.3f}{spread} {unit} over {result.n} seed{'s' * (result.n > 1)}"


def what_this_says(confirmation: Confirmation, by_label: Mapping[str, ModelRow], columns: Sequence[str]) -> str:
    """The confirmation's answer in plain words, generated from its paired differences by the report's rule.

    Does any hidden-term arm beat logit KD beyond seed noise (which, by how much), and if none does, the
    largest gain the rule leaves open: the effect sizes the study rules out. Then the cache against online."""
    lines = ["## What this says", "",
             "Generated from the paired differences above, by their rule (|mean Δ| over twice its standard error)."]
    control = by_label.get(confirmation.control)
    if control is None:
        return "\n".join([*lines, "", f"`{confirmation.control}` has no results yet: nothing to say.", ""])
    sentences = []
    for baseline in confirmation.baselines:
        if baseline in by_label and (result := paired(control, by_label[baseline], DEV_CE)) is not None:
            sentences.append(f"Logit KD at the best alpha (`{control.label}`) against the student alone "
                             f"(`{baseline}`): dev CE {_delta(result)}, {result.verdict}.")
    against = {name: {key: paired(by_label[name], control, key) for key in (DEV_CE, *columns)}
               for name in confirmation.hidden_arms if name in by_label}
    dev = {name: results[DEV_CE] for name, results in against.items() if results[DEV_CE] is not None}
    if dev:
        seeds = max(result.n for result in dev.values())
        best_name = min(dev, key=lambda name: dev[name].mean)
        best = dev[best_name]
        better = [name for name, result in dev.items() if result.exceeds_noise and result.a_better]
        worse = [name for name, result in dev.items() if result.exceeds_noise and not result.a_better]
        if better:
            sentences.append(
                f"{len(better)} of the {len(dev)} hidden-term arms beat logit KD on dev CE beyond seed noise: "
                + "; ".join(f"`{name}` by {_delta(dev[name])}" for name in better) + ".")
        elif seeds < 2:
            sentences.append(f"No verdict: one seed gives no noise estimate. The lowest dev CE against logit KD is "
                             f"`{best_name}`'s, {_delta(best)}.")
        else:
            open_gain = max(dev.values(), key=lambda result: result.largest_gain)
            sentences.append(
                f"No hidden-term arm beats logit KD on dev CE beyond seed noise ({len(dev)} arms). The closest, "
                f"`{best_name}`, is {_delta(best)}; the rule leaves open a gain of at most {_gain(best)} for it, "
                f"and of at most {_gain(open_gain)} for any arm: larger dev CE gains are ruled out.")
        if worse:
            sentences.append(f"{len(worse)} {'is' if len(worse) == 1 else 'are'} worse than logit KD beyond seed noise: "
                             + ", ".join(f"`{name}` ({_delta(dev[name])})" for name in worse) + ".")
        beyond = [(name, result) for name, results in against.items() for key, result in results.items()
                  if key != DEV_CE and result is not None and result.exceeds_noise]
        wins = [f"`{name}` on {result.key} ({_delta(result)})" for name, result in beyond if result.a_better]
        losses = len(beyond) - len(wins)
        sentences.append(
            (f"On the {len(columns)} tasks, beating logit KD beyond seed noise: " + "; ".join(wins) + "."
             if wins else f"On none of the {len(columns)} tasks does any hidden-term arm beat logit KD beyond "
                          "seed noise.")
            + f" Arm-task pairs worse beyond it: {losses}.")
        if columns and seeds > 1:
            first = [results[columns[0]] for results in against.values() if results[columns[0]] is not None]
            if first and not any(result.exceeds_noise and result.a_better for result in first):
                widest = max(first, key=lambda result: result.largest_gain)
                sentences.append(f"On {columns[0]} the rule leaves open a gain of at most {_gain(widest)} for "
                                 "any arm.")
    if confirmation.cache_pair and all(name in by_label for name in confirmation.cache_pair):
        cached, fixed = (by_label[name] for name in confirmation.cache_pair)
        results = [result for key in (DEV_CE, *columns) if (result := paired(cached, fixed, key)) is not None]
        differing = [f"{result.key} ({_delta(result)})" for result in results if result.exceeds_noise]
        head = results[0] if results and results[0].key == DEV_CE else None
        sentences.append(
            f"Logit KD from the head-input teacher cache against the same recipe with online teachers, on the "
            f"same fixed chunks: " + (f"dev CE {_delta(head)}; " if head else "")
            + (f"it differs beyond seed noise on {', '.join(differing)}." if differing else
               "no difference beyond seed noise on dev CE or any task: the cache trains the same recipe "
               "as far as these seeds can tell."))
    return "\n".join([*lines, "", *(f"- {sentence}" for sentence in sentences), ""])
