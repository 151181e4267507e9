"""The trainable modules of the distillation terms, bundled as one ``nn.Module``.

Projections and auxiliary heads are trained with the student and must be
checkpointed with it; bundling them lets the trainer hand one module to the
optimizer and to ``state_dict`` instead of tracking three optional ones.
"""

from __future__ import annotations

from torch import nn

from babykd.losses.auxiliary import AuxiliaryHeads
from babykd.losses.hidden import HiddenStateProjections


class DistillationModules(nn.Module):
    """Holds whichever of `projections`, `contrastive_projections`, `aux_heads` a run uses (None = unused)."""

    def __init__(
        self,
        projections: HiddenStateProjections | None = None,
        contrastive_projections: HiddenStateProjections | None = None,
        aux_heads: AuxiliaryHeads | None = None,
    ) -> None:
        super().__init__()
        self.projections = projections
        self.contrastive_projections = contrastive_projections
        self.aux_heads = aux_heads
