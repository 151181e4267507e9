"""Hidden-state terms: layer-mapped MSE (DSKD without auxiliary heads) and contrastive KD.

The published DSKD code computed its hidden-state MSE inside ``torch.no_grad()``
with projections kept in a plain dict, so that term never produced a gradient
and its projections were never trained.  Here the projections are registered
submodules (the optimizer and the checkpoint see them) and only the teacher
states are detached, so the terms train both the student and the projections.
"""

from __future__ import annotations

from typing import Callable, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from babykd.losses.layer_maps import validate_layer_map
from babykd.losses.positions import position_rows, safe_mean


class HiddenStateProjections(nn.Module):
    """One learned ``nn.Linear`` per (teacher, mapped layer pair), from the smaller width to the larger.

    When the student is narrower than (or as wide as) a teacher, the student
    state is projected to the teacher width; otherwise the (detached) teacher
    state is projected to the student width.  Either way the MSE is taken in
    the larger space and the projection is trained by the loss.
    `layer_maps[k]` maps teacher-k hidden_states indices to student ones.
    """

    def __init__(
        self,
        teacher_widths: Sequence[int],
        student_width: int,
        layer_maps: Sequence[Mapping[int, int]],
        *,
        teacher_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if len(teacher_widths) != len(layer_maps):
            raise ValueError(f"got {len(teacher_widths)} teacher widths but {len(layer_maps)} layer maps")
        if teacher_names is not None and len(teacher_names) != len(teacher_widths):
            raise ValueError(f"got {len(teacher_widths)} teacher widths but {len(teacher_names)} teacher names")
        if not teacher_widths:
            raise ValueError("at least one teacher is needed for hidden-state projections")
        for width in (*teacher_widths, student_width):
            if width < 1:
                raise ValueError(f"hidden widths must be >= 1, got {width}")
        self.teacher_widths = tuple(int(w) for w in teacher_widths)
        self.student_width = int(student_width)
        self.layer_maps = tuple(dict(sorted(m.items())) for m in layer_maps)
        self.teacher_names = tuple(teacher_names or (f"teacher {k}" for k in range(len(teacher_widths))))
        self.per_teacher = nn.ModuleList(
            nn.ModuleDict(
                {
                    _pair_key(t, s): nn.Linear(min(width, student_width), max(width, student_width))
                    for t, s in layer_map.items()
                }
            )
            for width, layer_map in zip(self.teacher_widths, self.layer_maps)
        )

    @property
    def n_teachers(self) -> int:
        return len(self.teacher_widths)

    def projects_student(self, teacher: int) -> bool:
        """Whether the student side is projected for `teacher` (student not wider than it)."""
        return self.student_width <= self.teacher_widths[teacher]

    def projection(self, teacher: int, teacher_layer: int, student_layer: int) -> nn.Linear:
        """The linear layer of one mapped pair."""
        return self.per_teacher[teacher][_pair_key(teacher_layer, student_layer)]

    def project_pair(
        self, teacher: int, teacher_layer: int, student_layer: int, student_rows: Tensor, teacher_rows: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Bring one pair of ``[N, width]`` rows to the common (larger) width: (student, teacher)."""
        name = self.teacher_names[teacher]
        for side, rows, width in (
            ("student", student_rows, self.student_width),
            (name, teacher_rows, self.teacher_widths[teacher]),
        ):
            if rows.size(-1) != width:
                raise ValueError(
                    f"{side} hidden state for pair {teacher_layer}:{student_layer} of {name!r} has width "
                    f"{rows.size(-1)}, but the projections were built for width {width}"
                )
        linear = self.projection(teacher, teacher_layer, student_layer)
        if self.projects_student(teacher):
            return linear(student_rows), teacher_rows
        return student_rows, linear(teacher_rows)

    def check_depths(self, teacher: int, n_teacher_states: int, n_student_states: int) -> None:
        """Validate teacher `teacher`'s map against hidden_states tuples of the given lengths."""
        validate_layer_map(
            self.layer_maps[teacher], n_teacher_states - 1, n_student_states - 1, self.teacher_names[teacher]
        )

    def check_teacher_count(self, n_teachers: int) -> None:
        if n_teachers != self.n_teachers:
            raise ValueError(
                f"got hidden states of {n_teachers} teachers, but the projections were built for {self.n_teachers}"
            )


def hidden_state_loss(
    student_hidden: Sequence[Tensor],
    teacher_hidden: Sequence[Sequence[Tensor]],
    projections: HiddenStateProjections,
    attention_mask: Tensor | None = None,
    *,
    distance: Distance = "mse",
) -> Tensor:
    """Distance between mapped student and teacher hidden states, mean over pairs, then over teachers.

    ``distance="mse"`` is the published term; ``"cosine"`` is ``1 - cos`` per position, a
    scale-free variant whose value and gradient do not grow with the states' norms (which, in a
    pre-norm transformer, grow with depth and differ between teacher and student).

    `student_hidden` and each ``teacher_hidden[k]`` are HF ``hidden_states``
    tuples of ``[B, T, width]`` tensors; pairs come from
    ``projections.layer_maps[k]``.  Each pair's MSE is the mean squared
    difference over the positions where `attention_mask` ``[B, T]`` is non-zero
    (all when None) and over the (larger) width.  Teacher states are detached
    here; the student states and the projections keep their graph.
    """
    projections.check_teacher_count(len(teacher_hidden))
    weights = None if attention_mask is None else _position_weights(attention_mask, student_hidden[0])
    per_teacher = []
    for k, teacher_states in enumerate(teacher_hidden):
        projections.check_depths(k, len(teacher_states), len(student_hidden))
        pair_losses = []
        for teacher_layer, student_layer in projections.layer_maps[k].items():
            student_rows, teacher_rows = projections.project_pair(
                k,
                teacher_layer,
                student_layer,
                position_rows(student_hidden[student_layer], None),
                position_rows(teacher_states[teacher_layer].detach(), None),
            )
            pair_losses.append(DISTANCES[distance](student_rows, teacher_rows, weights))
        per_teacher.append(torch.stack(pair_losses).mean())
    return torch.stack(per_teacher).mean()


def contrastive_loss(
    student_hidden_last: Tensor,
    teacher_hidden_last: Sequence[Tensor],
    projections: HiddenStateProjections,
    mask: Tensor | None = None,
    tau: float = 2.0,
    *,
    max_positions: int = 512,
    generator: torch.Generator | None = None,
) -> Tensor:
    """InfoNCE between projected student and teacher hidden states, averaged over teachers.

    Uses one pair of states per teacher, by default the last hidden states
    (``hidden_states[-1]``, ``[B, T, width]``); `projections` must hold exactly
    one pair per teacher, e.g. built with ``last_layer_maps`` (its layer indices
    only name the pair).  The positions where `mask` ``[B, T]`` is non-zero (all
    when None) are flattened across the batch; for memory at most
    `max_positions` of them are kept — a random subset drawn with `generator`
    when one is given (deterministic for a seeded generator), else the first
    `max_positions` in row-major order — the same subset for every teacher.

    For each kept position i, the logits are the cosine similarities between
    student state i and every kept teacher state j, divided by `tau`; the loss
    is the cross-entropy with target j = i (the same (b, t) position is the
    positive, every other kept position in the batch a negative), averaged
    over positions.  (The published code instead projected both sides to 256
    dims with untrained projections and contrasted positions within a sequence.)
    """
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    projections.check_teacher_count(len(teacher_hidden_last))
    student_rows = position_rows(student_hidden_last, mask)
    keep = _subsample(student_rows.size(0), max_positions, generator, student_rows.device)
    student_rows = student_rows[keep]
    if student_rows.size(0) == 0:
        return student_rows.sum() * 0.0
    targets = torch.arange(student_rows.size(0), device=student_rows.device)
    per_teacher = []
    for k, teacher_states in enumerate(teacher_hidden_last):
        ((teacher_layer, student_layer),) = _single_pair(projections, k)
        teacher_rows = position_rows(teacher_states.detach(), mask)[keep]
        student_side, teacher_side = projections.project_pair(
            k, teacher_layer, student_layer, student_rows, teacher_rows
        )
        similarity = F.normalize(student_side.float(), dim=-1) @ F.normalize(teacher_side.float(), dim=-1).T
        per_teacher.append(F.cross_entropy(similarity / tau, targets))
    return torch.stack(per_teacher).mean()


def _position_weights(attention_mask: Tensor, states: Tensor) -> Tensor:
    """The mask as one fp32 weight per row of the flattened ``[B·T, width]`` states.

    All rows are projected and weighted instead of gathering the masked ones: a
    gather's size depends on the data, and reading it is a host-device sync per pair.
    """
    if tuple(attention_mask.shape) != tuple(states.shape[:2]):
        raise ValueError(
            f"position mask of shape {tuple(attention_mask.shape)} does not match hidden states of shape "
            f"{tuple(states.shape)}"
        )
    return attention_mask.reshape(-1).float()


def _mean_squared_error(a: Tensor, b: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean of ``(a - b)²`` in fp32 over the rows of weight 1 (all when None) and the width; 0 without rows."""
    squared = (a.float() - b.float()).pow(2)
    if weights is None:
        return safe_mean(squared.sum(), a.numel())
    return safe_mean(squared.sum(dim=-1).mul(weights).sum(), weights.sum() * a.size(-1))


def _cosine_distance(a: Tensor, b: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean of ``1 - cos(a_i, b_i)`` in fp32 over the rows of weight 1 (all when None); 0 without rows."""
    distance = 1.0 - F.cosine_similarity(a.float(), b.float(), dim=-1)
    if weights is None:
        return safe_mean(distance.sum(), distance.numel())
    return safe_mean(distance.mul(weights).sum(), weights.sum())


Distance = Literal["mse", "cosine"]
#: How a pair of projected hidden states is compared.
DISTANCES: dict[str, Callable[[Tensor, Tensor, Tensor | None], Tensor]] = {
    "mse": _mean_squared_error, "cosine": _cosine_distance,
}


def _subsample(n_rows: int, max_positions: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Indices of the rows to keep: all, the first `max_positions`, or a seeded random subset."""
    if max_positions < 1:
        raise ValueError(f"max_positions must be >= 1, got {max_positions}")
    if n_rows <= max_positions:
        return torch.arange(n_rows, device=device)
    if generator is None:
        return torch.arange(max_positions, device=device)
    chosen = torch.randperm(n_rows, generator=generator, device=generator.device)[:max_positions]
    return chosen.to(device)


def _single_pair(projections: HiddenStateProjections, teacher: int) -> list[tuple[int, int]]:
    pairs = list(projections.layer_maps[teacher].items())
    if len(pairs) != 1:
        raise ValueError(
            f"contrastive projections for {projections.teacher_names[teacher]!r} must hold exactly one layer "
            f"pair (e.g. from last_layer_maps), got {len(pairs)}"
        )
    return pairs


def _pair_key(teacher_layer: int, student_layer: int) -> str:
    return f"t{teacher_layer}_s{student_layer}"
