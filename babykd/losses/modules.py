"""The trainable modules of the loss terms, bundled as one ``nn.Module``.

Projections and auxiliary heads are trained with the student and must be
checkpointed with it; bundling them lets the trainer hand one module to the
optimizer and to ``state_dict`` instead of tracking one per term. Each module is
registered under its term's `module_key` (``projections``, ``aux_heads``, ...),
which is its prefix in a checkpoint's state dict.
"""

from __future__ import annotations

from typing import Mapping

from torch import nn

from babykd.losses.terms import LossTerm


class DistillationModules(nn.Module):
    """Holds the trainable module of every term that has one, by the term's `module_key`."""

    def __init__(self, modules: Mapping[str, nn.Module] | None = None) -> None:
        super().__init__()
        for key, module in (modules or {}).items():
            self.add_module(key, module)

    def of(self, term: LossTerm) -> nn.Module | None:
        """`term`'s own module (None for a term without one)."""
        return self._modules.get(term.module_key) if term.module_key else None
