"""Each weighted loss term's share of the student's gradient: does a term reach the update at all?

A term whose gradient is a few percent of the update trains little, whatever its weight looks like
in the config. One forward pass gives every term; the gradient of each weighted term ``w·L`` with
respect to the student's parameters is taken separately (one backward each, nothing accumulated
into ``.grad``), and its share is ``‖∇(w·L)‖ / Σ_terms ‖∇(w·L)‖``. Used by the trainer at the first,
middle and last step of a distillation run and by benchmarks/bench_term_shares.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from babykd.run.atomic import atomic_write_json
from babykd.losses.terms import weight_of, weighted_terms

#: Where a run keeps its measured shares (see `TermShareLog`).
TERM_SHARES_FILE = "term_shares.json"


def term_gradient_norms(terms: Mapping[str, Tensor], weights: Any, params: Sequence[nn.Parameter]) -> dict[str, float]:
    """‖∇_params (w·L)‖ of every weighted term in `terms` (one graph, retained until the last)."""
    active = [term.name for term in weighted_terms(weights)]
    norms = {}
    for index, name in enumerate(active):
        weighted = weight_of(weights, name) * terms[name]
        grads = torch.autograd.grad(weighted, params, retain_graph=index < len(active) - 1, allow_unused=True)
        present = [g.norm() for g in grads if g is not None]
        norms[name] = torch.linalg.vector_norm(torch.stack(present)).item() if present else 0.0
    return norms


def shares(norms: Mapping[str, float]) -> dict[str, float]:
    """Each term's fraction of the summed gradient norms (0 everywhere when nothing moves)."""
    total = sum(norms.values())
    return {name: (norm / total if total > 0 else 0.0) for name, norm in norms.items()}


class TermShareLog:
    """Term shares at the first, middle and last step of a run, kept in ``<run>/term_shares.json``.

    Why a file beside the logs: the grid summary and the study's report read a point's shares
    without parsing TensorBoard; a resumed run keeps the steps measured before it was stopped.
    """

    def __init__(self, path: Path, resumed: bool) -> None:
        self.path = path
        #: A resumed run keeps what it measured before; an unreadable file is measured again from here.
        self.records: list[dict[str, Any]] = read_records(path) if resumed else []

    @staticmethod
    def steps(max_steps: int) -> list[int]:
        """The steps measured (0-based global steps before their update): first, middle, last."""
        return sorted({0, max_steps // 2, max(max_steps - 1, 0)})

    def due(self, step: int, max_steps: int) -> bool:
        return step in self.steps(max_steps) and all(record["step"] != step for record in self.records)

    def add(self, step: int, norms: Mapping[str, float]) -> dict[str, float]:
        """Record one measurement, rewrite the file, and return the shares."""
        fractions = shares(norms)
        self.records.append({"step": step, "grad_norm": dict(norms), "share": fractions})
        atomic_write_json(self.path, {"records": sorted(self.records, key=lambda record: record["step"])})
        return fractions


def read_term_shares(run_dir: Path) -> list[dict[str, Any]]:
    """The shares a run recorded, by step ([] when it recorded none or the file is unreadable)."""
    return read_records(run_dir / TERM_SHARES_FILE)


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a term-shares file ([] when it is absent or unreadable)."""
    try:
        return list(json.loads(path.read_text(encoding="utf-8"))["records"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
