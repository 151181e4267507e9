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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from babykd.grid import PointResult, format_value, rank, read_point
from babykd.losses.terms import weight_of
from babykd.reproduce import (
    GRID_DIR, Budget, Comparison, Screen, Stage, evaluate_runs, run_grids, run_stages, screens, stage_config,
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
    """What a confirmation adds to the report: its runs, its screens and comparisons, and its choice in words."""

    stages: list[Stage]
    screens: list[Screen]
    comparisons: list[Comparison]
    section: str


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
    if confirmation.cache:
        comparisons.append(Comparison(f"{logit.name}: teacher cache vs online teachers (fixed chunks)",
                                      f"{logit.name}-cached", f"{logit.name}-fixed"))
    choice = {"alpha": alpha, "ranked": [{"run": r.point.name, "dev_ce": r.dev_ce} for _, r in ranked],
              "variants": [{"run": r.point.name, "dev_ce": r.dev_ce} for _, r in variants],
              "arms": [dataclasses.asdict(arm) for arm in arms], "plan_twins": notes}
    atomic_write_json(out_root / CHOICE_FILE, choice)
    return Confirmation(stages, variant_screens, comparisons, section(arms, notes, alpha, seeds))


def section(arms: Sequence[Arm], notes: Sequence[str], alpha: float, seeds: int) -> str:
    """RESULTS.md's account of the choice: each arm, what it is and why it was chosen."""
    lines = ["## Confirmation arms", "",
             f"Chosen by `babykd.confirmation` from the screens above (lowest dev CE first); the best point's "
             f"alpha is {format_value(alpha)}. Each arm trains {seeds} seed{'s' * (seeds > 1)} at the students' "
             f"full length on the plan's data order and initial weights (its choice: `{CHOICE_FILE}`).", ""]
    lines += [f"- `{arm.name}`: {arm.why}; settings `{' '.join(arm.overrides)}` on `{arm.recipe}`" for arm in arms]
    return "\n".join([*lines, *notes, ""])
