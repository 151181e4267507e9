"""CPU smoke of benchmarks/bench_term_shares.py: every recipe's table at the small size, on the tiny teachers.

Beyond "it runs": the shares of each recipe sum to one, every weighted term is
measured, and no term of the auxiliary-classifier and contrastive recipes is
negligible (their published weights gave those terms under 1% of the student's
gradient: 0.7% and 0.3% at this size on the demo's teachers).
"""

from __future__ import annotations

import sys
from collections import defaultdict

import pytest

from babykd import REPO_ROOT
from babykd.config import load_run_config


def test_every_recipe_gets_a_share_table_and_no_added_term_is_negligible(
    demo_corpus, shared_data_dirs, tiny_teachers, capsys
) -> None:
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import bench_term_shares as bench

    records = bench.main([
        "--teachers", *map(str, tiny_teachers), "--batch", "4",
        "--set", f"data={REPO_ROOT / 'config/data/tiny.yaml'}", f"data.corpus={demo_corpus.corpus_dir}",
        f"data.tokenizer_dir={shared_data_dirs['tokenizer_dir']}", f"data.cache_dir={shared_data_dirs['cache_dir']}",
    ])
    printed = capsys.readouterr().out
    by_recipe: dict[str, dict[str, float]] = defaultdict(dict)
    for record in records:
        by_recipe[record["recipe"]][record["term"]] = record["share"]
    assert set(by_recipe) == {recipe.stem for recipe in bench.RECIPES}
    for recipe in bench.RECIPES:
        weights = vars(load_run_config(recipe).distillation.weights)
        shares = by_recipe[recipe.stem]
        assert set(shares) == {name for name, weight in weights.items() if weight > 0}, recipe.stem
        assert sum(shares.values()) == pytest.approx(1.0)
        assert recipe.stem in printed
    print(printed)
    assert by_recipe["AuxDSKD-Llama-58M-strict"]["aux"] > 0.02
    assert by_recipe["ContrastiveLlama-58M-strict"]["contrastive"] > 0.02
