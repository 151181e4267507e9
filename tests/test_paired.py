"""The paired-difference rule, its table and the confirmation's plain-words verdict, on crafted per-seed values."""

from __future__ import annotations

import math

import pytest

from babykd.confirmation import Confirmation, what_this_says
from babykd.paired import DEV_CE, paired, paired_table
from babykd.reproduce import ModelRow

TASK = "blimp_filtered_fast"


def _row(label: str, dev_ce: list[float], blimp: list[float], role: str = "student") -> ModelRow:
    return ModelRow(label, role, 1000, 2000, 1.0, {DEV_CE: dev_ce, TASK: blimp}, {TASK: None},
                    seeds=list(range(len(dev_ce))))


def _confirmation(hidden: list[str], cache: tuple[str, str] | None = None) -> Confirmation:
    return Confirmation([], [], [], "## Confirmation arms\n", "logit", ["alone"], hidden, cache)


CONTROL = _row("logit", [4.0, 4.1, 4.2], [0.60, 0.61, 0.62])
ALONE = _row("alone", [4.3, 4.4, 4.5], [0.58, 0.59, 0.60], "baseline")


def test_a_difference_within_noise_states_the_largest_gain_the_rule_leaves_open() -> None:
    # dev CE per seed: +0.01, -0.02, +0.01 -> mean 0, sd 0.0173, standard error 0.01: a gain of at most 0.02
    close = _row("close", [4.01, 4.08, 4.21], [0.60, 0.61, 0.62])
    result = paired(close, CONTROL, DEV_CE)
    assert result is not None and result.n == 3 and not result.exceeds_noise
    assert result.largest_gain == pytest.approx(0.02)
    assert result.cell(3) == "+0.00 ± 0.02 (3/3)"
    worse = paired(_row("worse", [4.1, 4.2, 4.3], [0.6] * 3), CONTROL, DEV_CE)
    assert worse is not None and worse.exceeds_noise and not worse.a_better and worse.largest_gain == 0.0
    assert worse.cell(3) == "+0.10 ± 0.00 (3/3) **worse**"
    one_seed = paired(_row("one", [3.9], [0.7]), CONTROL, DEV_CE)
    assert one_seed is not None and one_seed.n == 1 and math.isnan(one_seed.largest_gain)
    assert one_seed.cell(3) == "-0.10 (1/3)"


def test_the_table_has_one_line_per_comparison_and_a_column_per_key() -> None:
    better = _row("better", [3.9, 4.0, 4.1], [0.62, 0.63, 0.64])
    table = paired_table([("better vs logit", [paired(better, CONTROL, k) for k in (DEV_CE, TASK)]),
                          ("nothing shared", [None, None])], (DEV_CE, TASK), 3).splitlines()
    assert table[0] == f"| A − B | {DEV_CE} (nats) | {TASK} (points) |"
    assert table[2] == "| better vs logit | -0.10 ± 0.00 (3/3) **better** | +2.00 ± 0.00 (3/3) **better** |"
    assert table[3] == "| nothing shared | n/a | n/a |"


def test_no_arm_beating_logit_kd_is_the_finding_with_the_effect_sizes_ruled_out() -> None:
    rows = {r.label: r for r in (
        CONTROL, ALONE,
        _row("close", [4.01, 4.08, 4.21], [0.60, 0.61, 0.62]),
        _row("worse", [4.1, 4.2, 4.3], [0.59, 0.60, 0.61]),
        _row("cached", [4.0, 4.11, 4.19], [0.60, 0.61, 0.62]), _row("fixed", [4.01, 4.1, 4.2], [0.60, 0.61, 0.62]),
    )}
    text = what_this_says(_confirmation(["close", "worse"], ("cached", "fixed")), rows, [TASK])
    assert "against the student alone (`alone`): dev CE -0.300 ± 0.000 nats over 3 seeds, exceeds seed noise: " \
           "better." in text
    assert ("No hidden-term arm beats logit KD on dev CE beyond seed noise (2 arms). The closest, `close`, is "
            "+0.000 ± 0.017 nats over 3 seeds; the rule leaves open a gain of at most 0.020 nats for it, and of at "
            "most 0.020 nats for any arm") in text
    assert "1 is worse than logit KD beyond seed noise: `worse` (+0.100 ± 0.000 nats over 3 seeds)." in text
    assert f"On none of the 1 tasks does any hidden-term arm beat logit KD beyond seed noise. Arm-task pairs " \
           f"worse beyond it: 1." in text
    assert "no difference beyond seed noise on dev CE or any task: the cache trains the same recipe" in text


def test_an_arm_beating_logit_kd_is_named_with_its_margin() -> None:
    rows = {r.label: r for r in (CONTROL, _row("better", [3.9, 4.0, 4.1], [0.62, 0.63, 0.64]))}
    text = what_this_says(_confirmation(["better", "not run"]), rows, [TASK])
    assert "1 of the 1 hidden-term arms beat logit KD on dev CE beyond seed noise: `better` by -0.100 ± 0.000 " \
           "nats over 3 seeds." in text
    assert f"`better` on {TASK} (+2.000 ± 0.000 points over 3 seeds)" in text


def test_one_seed_gives_no_verdict_and_a_missing_control_says_so() -> None:
    rows = {r.label: r for r in (_row("logit", [4.0], [0.6]), _row("arm", [3.9], [0.7]))}
    assert "No verdict: one seed gives no noise estimate." in what_this_says(_confirmation(["arm"]), rows, [TASK])
    assert "`logit` has no results yet" in what_this_says(_confirmation(["arm"]), {}, [TASK])
