"""The trainable modules of the distillation terms, bundled as one ``nn.Module``.

Projections and auxiliary heads are trained with the student and must be
checkpointed with it; bundling them lets the trainer hand one module to the
optimizer and to ``state_dict`` instead of tracking three optional ones.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from torch import nn

from babykd.losses.auxiliary import AuxiliaryHeads
from babykd.losses.combine import LossWeights
from babykd.losses.hidden import HiddenStateProjections
from babykd.losses.layer_maps import last_layer_maps, uniform_layer_map, validate_layer_map


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

    @classmethod
    def build(
        cls,
        weights: LossWeights,
        *,
        student_width: int,
        n_student_layers: int,
        teacher_widths: Sequence[int],
        n_teacher_layers: Sequence[int],
        teacher_names: Sequence[str],
        layer_maps: Sequence[Mapping[int, int] | None] | None = None,
        vocab_size: int | None = None,
        aux_layers: Sequence[int] = (),
    ) -> "DistillationModules":
        """Create exactly the modules the active terms of `weights` need.

        `n_*_layers` are transformer block counts (``config.num_hidden_layers``);
        a teacher whose entry in `layer_maps` is missing or None gets
        :func:`uniform_layer_map`.  Every map is validated against the depths.
        """
        if not len(teacher_widths) == len(n_teacher_layers) == len(teacher_names):
            raise ValueError(
                f"got {len(teacher_widths)} teacher widths, {len(n_teacher_layers)} layer counts and "
                f"{len(teacher_names)} names: one of each per teacher"
            )
        modules = cls()
        if weights.hidden > 0:
            given = list(layer_maps or [])
            if len(given) > len(teacher_names):
                raise ValueError(f"got {len(given)} layer maps for {len(teacher_names)} teachers")
            given += [None] * (len(teacher_names) - len(given))
            maps = [
                dict(layer_map) if layer_map is not None else uniform_layer_map(n_layers, n_student_layers)
                for layer_map, n_layers in zip(given, n_teacher_layers)
            ]
            for layer_map, n_layers, name in zip(maps, n_teacher_layers, teacher_names):
                validate_layer_map(layer_map, n_layers, n_student_layers, name)
            modules.projections = HiddenStateProjections(
                teacher_widths, student_width, maps, teacher_names=teacher_names
            )
        if weights.contrastive > 0:
            modules.contrastive_projections = HiddenStateProjections(
                teacher_widths,
                student_width,
                last_layer_maps(n_teacher_layers, n_student_layers),
                teacher_names=teacher_names,
            )
        if weights.aux > 0:
            if vocab_size is None or not aux_layers:
                raise ValueError("the 'aux' term needs vocab_size and at least one entry in aux_layers")
            bad = [layer for layer in aux_layers if not 0 <= layer <= n_student_layers]
            if bad:
                raise ValueError(
                    f"aux_layers {bad} are out of range: the student has {n_student_layers} layers, "
                    f"so valid hidden_states indices are 0..{n_student_layers}"
                )
            modules.aux_heads = AuxiliaryHeads(student_width, vocab_size, aux_layers)
        return modules
