"""Argument parsing shared by the entry points (`train.py`, `distill.py`, `dskd_noaux.py`).

Each entry point is `main(argv, default_config=...)`: parse, load and validate
the config, run. Nobody edits YAML to move paths: `--set data.corpus=/scratch/babylm`.
Errors the user fixes (a bad config, an unreadable corpus or tokenizer, a full
disk, a run folder in use, a diverged run) print as one line naming the path and
the cause; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator, Sequence

from babykd import REPO_ROOT
from babykd.config import ConfigError, RunConfig, load_run_config
from babykd.errors import UserError
from babykd.run.preemption import PREEMPTED_EXIT_CODE


#: `--allow-config-change` of every command that resumes runs (train, distill, grid run).
ALLOW_CONFIG_CHANGE_HELP = "with --resume: continue under a changed config (recorded in provenance.json)"


def build_parser(description: str, default_config: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    if default_config:
        default_config = str(REPO_ROOT / default_config)
    parser.add_argument(
        "config", nargs="?" if default_config else None, default=default_config,
        help="run config YAML (see config/runs/)" + (f"; default {default_config}" if default_config else ""),
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", nargs="+",
        help="override any config value, e.g. --set training.lr=1e-4 data.corpus=/scratch/babylm",
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue from the run's newest complete checkpoint (a first start when there is none)")
    start.add_argument("--fresh", action="store_true",
                       help="delete the checkpoints or finished model already in the run folder and start over")
    parser.add_argument("--allow-config-change", action="store_true", help=ALLOW_CONFIG_CHANGE_HELP)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error, not just its message")
    return parser


@contextlib.contextmanager
def one_line_errors(debug: bool) -> Iterator[None]:
    """Exit with `error: <message>` for user-fixable errors and OS errors (they name the path and the cause)."""
    try:
        yield
    except (UserError, OSError) as error:
        if debug:
            raise
        kind = "config error" if isinstance(error, ConfigError) else "error"
        one_line = " ".join(str(error).split())  # library OSErrors (e.g. HF loading) span several lines
        sys.exit(f"{kind}: {one_line} (--debug shows the traceback)")


def parse_config(argv: Sequence[str] | None, description: str,
                 default_config: str | None = None) -> tuple[RunConfig, argparse.Namespace]:
    """Parse arguments and load the validated config; exits with the config error on bad input."""
    args = build_parser(description, default_config).parse_args(argv)
    overrides = [item for group in args.overrides for item in group]
    with one_line_errors(args.debug):
        return load_run_config(Path(args.config), overrides), args


def library_progress_bars(show: bool) -> None:
    """The evaluation commands' `--no-progress` (show False) hides the bars the libraries draw on their own too.

    transformers draws "Loading weights" at every `from_pretrained` and huggingface_hub its downloads behind
    global switches, not arguments of the calls we make; they filled the logs of jobs run with --no-progress.
    transformers' switch turns huggingface_hub's off too. With show True nothing changes: switching the bars
    on would override a user's HF_HUB_DISABLE_PROGRESS_BARS.
    """
    if not show:
        from transformers.utils import logging as transformers_logging  # cli loads before any heavy import

        transformers_logging.disable_progress_bar()


def setup_logging() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)


def train_main(argv: Sequence[str] | None, description: str, default_config: str | None = None,
               require_distillation: bool = False) -> None:
    """The whole body of every training entry point."""
    setup_logging()
    config, args = parse_config(argv, description, default_config)
    if require_distillation and config.distillation is None:
        sys.exit(f"config error: {config.source}: this entry point needs a 'distillation' section (teachers)")
    from babykd.training import run_training  # heavy imports after argument errors

    with one_line_errors(args.debug):
        result = run_training(config, resume=args.resume, fresh=args.fresh,
                              allow_config_change=args.allow_config_change)
    if result.preempted:
        sys.exit(PREEMPTED_EXIT_CODE)
    print(f"saved {result.run_dir} ({result.parameters:,} parameters, {result.wall_time_s:.1f} s)")
