"""CPU smoke of benchmarks/bench_offline_kd.py at tiny shapes: three real runs, the cache built for the chunks read."""

from __future__ import annotations

import sys

from babykd import REPO_ROOT
from babykd.training import PREFETCHED_BATCHES


def test_the_three_runs_are_timed_and_the_cache_holds_only_the_chunks_read(demo_corpus, tmp_path) -> None:
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import bench_offline_kd as bench

    records = bench.main(["--shapes", "tiny", "--steps", "3", "--warmup", "1", "--k", "8", "--device", "cpu",
                          "--corpus", str(demo_corpus.corpus_dir), "--work", str(tmp_path), "--no-results"])
    by_arm = {r.get("arm", r.get("event")): r for r in records}
    assert set(by_arm) == {"alone", "online", "cached", "heads", "ratios"}
    assert all(by_arm[arm]["median_step_s"] > 0 for arm in ("alone", "online", "cached", "heads"))
    for arm in ("cached", "heads"):
        cached = by_arm[arm]
        # 3 steps of 8 chunks and the loader's read-ahead margin, not the corpus
        assert cached["cache_chunks_built"] == (3 + PREFETCHED_BATCHES) * 8 < cached["corpus_chunks"]
        assert by_arm["ratios"][f"{arm}_over_alone"] == round(
            cached["median_step_s"] / by_arm["alone"]["median_step_s"], 3)
    assert by_arm["cached"]["cache_bytes_per_position"] == 8 * (2 + 2)  # uint16 ids + float16 log-probs, K = 8
    assert by_arm["heads"]["top_k_mass"] == 1.0 and by_arm["heads"]["k"] is None
