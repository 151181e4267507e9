#!/usr/bin/env python
"""Each loss term's share of the student's gradient, for every distillation recipe.

    python benchmarks/bench_term_shares.py --teachers T1 T2 --set KEY=VALUE ... [--published] [--recipes R ...]

Why: a term whose gradient is a fraction of a percent of the update trains
nothing, whatever its weight looks like in the config. Per recipe, on one batch
of training chunks: one student forward, then the gradient of each weighted term
``w·L`` with respect to the student's parameters (the trainer's own terms,
:meth:`babykd.trainer.KDTrainer.loss_terms`, one backward pass each: `babykd.losses.shares`),
and its share ``‖∇(w·L)‖ / Σ_terms ‖∇(w·L)‖``. The distillation extras (projections,
aux heads) are freshly initialised, as at the first step of a run.

Without ``--published`` every recipe's student is the CPU-sized
``config/models/tiny-llama-student.yaml`` at seq_length 32 (layer maps
uniform, aux heads on layers 1-2); with it, the recipe's own student and
seq_length are kept. `--teachers` replaces the recipes' teachers (each recipe
takes as many as it lists); `--set` overrides apply to every recipe (data paths,
vocabulary size). Prints one table: recipe, term, weight, gradient norm, share.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import PreTrainedModel, TrainingArguments

from babykd import REPO_ROOT
from babykd.config import RunConfig, load_run_config
from babykd.losses.shares import shares, term_gradient_norms
from babykd.models import build_model
from babykd.teachers import build_distillation_modules, load_teachers
from babykd.trainer import KDTrainer
from babykd.training import load_data

RECIPES = sorted((REPO_ROOT / "config" / "runs" / "distill").glob("*.yaml"))
#: The CPU-sized stand-in for every recipe's student (and what it needs to fit that student).
SMALL = (
    f"model={REPO_ROOT / 'config' / 'models' / 'tiny-llama-student.yaml'}",
    "data.seq_length=32",
    "distillation.layer_maps=null",
    "distillation.aux_layers=[1,2]",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="*", type=Path, default=RECIPES, help="distillation run configs")
    parser.add_argument("--teachers", nargs="*", type=Path, default=None, help="trained teacher checkpoints")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every recipe")
    parser.add_argument("--published", action="store_true", help="keep each recipe's student and seq_length")
    parser.add_argument("--batch", type=int, default=8, help="chunks in the batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    return parser.parse_args(argv)


def recipe_config(recipe: Path, options: argparse.Namespace) -> RunConfig:
    """The recipe with the benchmark's overrides: the small student unless --published, then --teachers, --set."""
    overrides = [] if options.published else list(SMALL)
    if options.teachers:
        n_teachers = len(load_run_config(recipe).distillation.teachers)  # type: ignore[union-attr]
        overrides.append(f"distillation.teachers=[{','.join(str(t) for t in options.teachers[:n_teachers])}]")
    return load_run_config(recipe, [*overrides, *options.set])


class Inputs:
    """Data and teachers, loaded once and shared by every recipe that asks for the same ones."""

    def __init__(self, batch: int, seed: int) -> None:
        self.batch, self.seed = batch, seed
        self._data: dict[str, Any] = {}
        self._teachers: dict[tuple[str, ...], list[PreTrainedModel]] = {}

    def data(self, config: RunConfig) -> Any:
        key = repr(config.data)
        if key not in self._data:
            self._data[key] = load_data(config)
        return self._data[key]

    def first_batch(self, config: RunConfig) -> dict[str, torch.Tensor]:
        """`batch` training chunks drawn with `seed`: input_ids and labels ``[batch, seq_length]``."""
        dataset = self.data(config).train_dataset
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(self.seed))[: self.batch]
        items = [dataset[int(i)] for i in order]
        return {key: torch.stack([item[key] for item in items]) for key in ("input_ids", "labels")}

    def teachers(self, config: RunConfig) -> list[PreTrainedModel]:
        cfg = config.distillation
        assert cfg is not None
        key = tuple(cfg.teachers)
        if key not in self._teachers:
            self._teachers[key] = load_teachers(cfg, self.data(config).tokenizer, config.data.seq_length)
        return self._teachers[key]


def measure(recipe: Path, options: argparse.Namespace, inputs: Inputs) -> list[dict[str, Any]]:
    """One record per active term of `recipe`: weight, gradient norm, share of the student's gradient."""
    config = recipe_config(recipe, options)
    cfg = config.distillation
    assert cfg is not None, f"{recipe}: not a distillation config"
    batch, teachers = inputs.first_batch(config), inputs.teachers(config)
    torch.manual_seed(options.seed)
    student = build_model(config.model)
    student.train()
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(output_dir=scratch, report_to="none", use_cpu=not torch.cuda.is_available())
        trainer = KDTrainer(model=student, args=args, teachers=teachers, distillation=cfg,
                            extra_modules=build_distillation_modules(cfg, student, teachers))
        batch = {k: v.to(args.device) for k, v in batch.items()}
        outputs = student(input_ids=batch["input_ids"], output_hidden_states=trainer.needs_hidden_states)
        params = [p for p in student.parameters() if p.requires_grad]
        norms = term_gradient_norms(trainer.loss_terms(outputs, batch), trainer.weights, params)
    fractions = shares(norms)
    return [
        {"recipe": recipe.stem, "term": name, "weight": getattr(cfg.weights, name), "grad_norm": norm,
         "share": fractions[name], "kl_normalization": cfg.kl_normalization, "seq_length": config.data.seq_length,
         "student": config.model.name}
        for name, norm in norms.items()
    ]


def table(records: Sequence[dict[str, Any]]) -> str:
    """A plain-text table, one line per (recipe, term)."""
    lines = [f"{'recipe':<48} {'term':<12} {'weight':>7} {'grad norm':>10} {'share':>7}"]
    for r in records:
        lines.append(f"{r['recipe']:<48} {r['term']:<12} {r['weight']:>7g} {r['grad_norm']:>10.4g} "
                     f"{100 * r['share']:>6.1f}%")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    options = parse_args(argv)
    inputs = Inputs(options.batch, options.seed)
    records = [record for recipe in options.recipes for record in measure(recipe, options, inputs)]
    if options.json:
        print("\n".join(json.dumps(r) for r in records))
    else:
        first = records[0] if records else {}
        print(f"student {first.get('student')}, seq_length {first.get('seq_length')}, batch {options.batch}")
        print(table(records))
    return records


if __name__ == "__main__":
    main(sys.argv[1:])
