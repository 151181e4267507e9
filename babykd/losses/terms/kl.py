"""Logit distillation: ``T² · KL(teachers' tempered soft targets ‖ student)``, live or from the cache.

One term, three sources of the same soft targets: the live teachers' logits (dense, every
vocabulary entry); with ``distillation.teacher_cache_head_inputs`` the same dense logits,
recomputed by the trainer from the cached inputs of the teachers' heads; or, when
``distillation.teacher_cache_top_k`` is set, the cache's top-k targets computed once before
training (`babykd.teacher_cache`, the sparse KL of `babykd.losses.sparse`). The weight
``distillation.weights.kl`` means the same in all three.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from babykd.losses.logit import kl_distillation_loss
from babykd.losses.sparse import sparse_kl_distillation_loss
from babykd.losses.terms.base import CACHED_TARGETS, TEACHER_LOGITS, LossTerm, StepTensors


def needs(cfg: Any) -> frozenset[str]:
    """The cache's top-k targets when it holds them, else the teachers' logits (live or recomputed)."""
    cached = cfg is not None and cfg.teacher_cache_top_k is not None
    return frozenset({CACHED_TARGETS if cached else TEACHER_LOGITS})


def compute(step: StepTensors, module: nn.Module | None) -> Tensor:
    cfg = step.distillation
    if step.cached_ids is not None:
        assert step.cached_log_probs is not None
        return sparse_kl_distillation_loss(
            step.student_logits, step.cached_ids, step.cached_log_probs, step.labels,
            temperature=cfg.temperature, normalization=cfg.kl_normalization,
        )
    assert step.teacher_logits is not None
    return kl_distillation_loss(
        step.student_logits, step.teacher_logits, step.labels,
        temperature=cfg.temperature, combine=cfg.combine, normalization=cfg.kl_normalization,
    )


TERM = LossTerm(name="kl", compute=compute, needs=needs, order=1)
