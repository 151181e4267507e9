"""CLI: ``python -m babykd.data.grammar OUT [--train-words N] [--dev-words N] [--pairs-per-task N] [--seed S]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import generate_demo_corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m babykd.data.grammar",
        description="Write the built-in demo corpus (BabyLM 2024 layout) and its minimal pairs.")
    parser.add_argument("out", type=Path, help="output directory (train_10M/, dev/, eval/demo_pairs/)")
    parser.add_argument("--train-words", type=int, default=300_000)
    parser.add_argument("--dev-words", type=int, default=30_000)
    parser.add_argument("--pairs-per-task", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        demo = generate_demo_corpus(args.out, train_words=args.train_words, dev_words=args.dev_words,
                                    pairs_per_task=args.pairs_per_task, seed=args.seed)
    except (ValueError, RuntimeError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {demo.train_words:,} train and {demo.dev_words:,} dev words to {demo.corpus_dir} "
          f"in {time.perf_counter() - start:.1f}s")
    for uid, n in demo.pairs.items():
        print(f"  {demo.pairs_dir / (uid + '.jsonl')}: {n} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
