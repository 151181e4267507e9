"""Chunked, fused logit losses: value and gradient in one pass, never a full fp32 ``[N, V]`` tensor.

The plain autograd form of a vocabulary-sized loss keeps several fp32
``[N, V]`` tensors alive from the forward to the backward pass (the upcast
logits, the log-softmax, the teacher log-probabilities) and walks them again in
the backward pass.  At the published shapes (N = 32·128 rows, V = 16000) each
of those is 262 MB.  Here the rows are processed in chunks of a few MB: each
chunk's fp32 work tensors live only inside the loop, and the gradient with
respect to the student logits is computed right there (it has a closed form),
then stored once in the logits' own dtype (fp32 in training: accelerate upcasts the
student's outputs; bf16 logits would get a bf16 gradient) until
the backward pass scales it by the incoming gradient.  The arithmetic per row
is the same as the autograd form's (same fp32 upcast, same teacher combination,
same clamping), so values and gradients agree to fp32 rounding.

Every row of a flattened ``[M, V]`` view is visited in contiguous slices and
weighted (0 for a position that is not scored), so the scored rows of a
``[B, T, V]`` tensor are never gathered into a copy, and nothing in a step reads
a device value on the host (a gather of the scored rows would: its size depends
on the data).

The per-chunk arithmetic is a chain of ~20 elementwise passes in eager mode;
:func:`compile_chunk_kernels` fuses each chunk's work into a few kernels with
``torch.compile`` (worth it on a GPU, where those passes are memory-bound).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from babykd.losses.positions import weighted_sum
from babykd.losses.teacher_targets import combined_teacher_log_probs

#: fp32 elements per chunk on CPU / on an accelerator.  Small chunks stay in a CPU's
#: caches; on a GPU larger chunks amortise the per-kernel launch cost.
CPU_CHUNK_ELEMENTS = 1 << 20
DEVICE_CHUNK_ELEMENTS = 1 << 24


def default_chunk_rows(student: Tensor) -> int:
    """Rows per chunk for `student` ``[M, V]``: a fixed element budget, at least one row."""
    budget = CPU_CHUNK_ELEMENTS if student.device.type == "cpu" else DEVICE_CHUNK_ELEMENTS
    return max(1, budget // max(1, student.size(-1)))


Divisor = int | Tensor


def chunked_soft_target_kl(
    student: Tensor,
    teachers: Sequence[Tensor],
    weights: Tensor | None,
    *,
    temperature: float,
    combine: str,
    divisor: Divisor,
    chunk_rows: int | None = None,
) -> Tensor:
    """``T² · Σ_rows w_row · KL(p_teacher ‖ p_student) / divisor`` over the rows of ``[M, V]`` tensors.

    `student` and each of `teachers` are ``[M, V]`` (any float dtype; the
    arithmetic is fp32); `weights` ``[M]`` weighs each row (None: all 1; a row of
    weight 0 gets no gradient).  `divisor` may be a 0-dim tensor (a count kept on
    the device).  The teachers are combined per `combine` exactly as
    :func:`babykd.losses.teacher_targets.combined_teacher_log_probs` does and get no
    gradient.  Returns an fp32 scalar attached to `student`'s graph.
    """
    _check_rows(student, teachers, weights)
    chunk = chunk_rows or default_chunk_rows(student)
    return _SoftTargetKL.apply(
        student, weights, needs_gradient(student), float(temperature), combine, floored_divisor(divisor, student), chunk,
        *teachers,
    )


def chunked_cross_entropy(
    student: Tensor, targets: Tensor, weights: Tensor | None, *, divisor: Divisor, chunk_rows: int | None = None
) -> Tensor:
    """``Σ_rows w_row · (−log softmax(student)[target]) / divisor`` over the rows of `student` ``[M, V]``.

    `targets` ``[M]`` holds the class of each row (any valid class where the
    weight is 0).  Returns an fp32 scalar attached to `student`'s graph.
    """
    _check_rows(student, (), weights)
    if targets.shape != (student.size(0),):
        raise ValueError(f"expected {student.size(0)} targets (one per row), got shape {tuple(targets.shape)}")
    chunk = chunk_rows or default_chunk_rows(student)
    return _CrossEntropy.apply(student, weights, needs_gradient(student), targets, floored_divisor(divisor, student), chunk)


# ----------------------------------------------------------------------------- per-chunk arithmetic


def kl_chunk(
    student_rows: Tensor, teacher_rows: list[Tensor], temperature: float, combine: str, weights: Tensor | None,
    scale: Tensor | None,
) -> tuple[Tensor, Tensor | None]:
    """One chunk: ``Σ w·p·(log p − log q)`` and, when `scale` is given, ``scale·(q·Σp − p)`` in the student's dtype.

    q = softmax(s/T), p = the combined teachers, w the rows' weights (None: 1).
    The row gradient of ``T²·w·KL / divisor`` is ``(T·w / divisor)·(q·Σp − p)``
    (Σp = 1 up to rounding and clamping; it is kept so the gradient is that of
    the value actually computed).  `scale` is an fp32 tensor (0-dim, or ``[rows,
    1]`` with the weights in it), so a new divisor does not make a compiled
    kernel recompile; it is applied in fp32, before the one rounding to the
    student's dtype, as autograd would.
    """
    teacher_log_probs = combined_teacher_log_probs(teacher_rows, temperature, combine)  # type: ignore[arg-type]
    # copy=True: for fp32 logits .float() would be a view, and div_ would scale the caller's tensor.
    log_q = torch.log_softmax(student_rows.to(torch.float32, copy=True).div_(temperature), dim=-1)
    p = teacher_log_probs.exp()
    # The pointwise form of F.kl_div(log_target=True); reuses the teacher buffer.
    total = weighted_sum(teacher_log_probs.sub_(log_q).mul_(p).sum(dim=-1), weights)
    if scale is None:
        return total, None
    grad = log_q.exp_().mul_(p.sum(dim=-1, keepdim=True)).sub_(p).mul_(scale)
    return total, grad.to(student_rows.dtype)


def ce_chunk(
    student_rows: Tensor, targets: Tensor, weights: Tensor | None, scale: Tensor | None, out: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """One chunk: ``Σ w·(−log softmax(s)[target])`` and, with `scale`, ``scale·(softmax(s) − onehot(target))``.

    With `out` (the chunk's rows of the fp32 gradient buffer) the work happens there: no copy of the
    chunk's gradient into the buffer afterwards (the same arithmetic, so the same bits).
    """
    log_probs = torch.log_softmax(student_rows.float(), dim=-1, out=out)
    targets = targets.unsqueeze(1)
    total = -weighted_sum(log_probs.gather(1, targets).squeeze(1), weights)
    if scale is None:
        return total, None
    grad = log_probs.exp_().scatter_add_(1, targets, torch.full(targets.shape, -1.0, device=targets.device))
    return total, grad.mul_(scale).to(student_rows.dtype)


@dataclass(frozen=True)
class _Kernels:
    kl: Callable[..., tuple[Tensor, Tensor | None]]
    ce: Callable[..., tuple[Tensor, Tensor | None]]


_EAGER = _Kernels(kl_chunk, ce_chunk)
_kernels = _EAGER


def compile_chunk_kernels(enabled: bool = True, **compile_options: Any) -> None:
    """Run each chunk's arithmetic through ``torch.compile(**compile_options)`` (process-wide), or eager again.

    Fuses the ~20 elementwise passes over each fp32 chunk into a few kernels;
    the values are the same up to fp32 rounding.  Shapes become dynamic after
    the first change (the last, shorter chunk; a different number of scored
    rows), so a run compiles a handful of times, not once per batch.
    """
    global _kernels
    if not enabled:
        _kernels = _EAGER
        return
    _kernels = _Kernels(torch.compile(kl_chunk, **compile_options), torch.compile(ce_chunk, **compile_options))


# ----------------------------------------------------------------------------- autograd functions


class _SoftTargetKL(torch.autograd.Function):
    """Forward computes the value and (if needed) ``dL/dstudent``; backward only scales it by the upstream gradient."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, student: Tensor, weights: Tensor | None, need_grad: bool, temperature: float, combine: str,
        divisor: Tensor, chunk_rows: int, *teachers: Tensor,
    ) -> Tensor:
        total, grad = chunked_value_and_gradient(
            student, weights, need_grad, temperature, divisor, chunk_rows,
            lambda part, w, scale, out: _kernels.kl(student[part], [t[part] for t in teachers], temperature, combine,
                                                    w, scale),
        )
        ctx.save_for_backward(grad)
        return total * (temperature**2 / divisor)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        n_other_inputs = len(ctx.needs_input_grad) - 1
        return (scaled_gradient(ctx, grad_output), *([None] * n_other_inputs))


class _CrossEntropy(torch.autograd.Function):
    """Hard-target CE; per row ``dL/ds = (softmax(s) − onehot(target)) / divisor``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, student: Tensor, weights: Tensor | None, need_grad: bool, targets: Tensor, divisor: Tensor,
        chunk_rows: int,
    ) -> Tensor:
        total, grad = chunked_value_and_gradient(
            student, weights, need_grad, 1.0, divisor, chunk_rows,
            lambda part, w, scale, out: _kernels.ce(student[part], targets[part], w, scale,
                                                    out if _kernels is _EAGER else None),
        )
        ctx.save_for_backward(grad)
        return total / divisor

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        return scaled_gradient(ctx, grad_output), None, None, None, None, None


# ----------------------------------------------------------------------------- helpers


ChunkFunction = Callable[[slice, "Tensor | None", "Tensor | None", "Tensor | None"], tuple[Tensor, "Tensor | None"]]


def chunked_value_and_gradient(
    rows: Tensor, weights: Tensor | None, need_grad: bool, gradient_factor: float, divisor: Tensor, chunk_rows: int,
    chunk: ChunkFunction,
) -> tuple[Tensor, Tensor | None]:
    """The fp32 sum of `chunk`'s values over the row chunks of `rows`, and (if needed) its stored gradient.

    `chunk(part, weights, scale, out)` returns one chunk's summed value and, when `scale` (``gradient_factor /
    divisor``, times each row's weight) is given, its rows' gradient, stored into one buffer of
    `rows`' shape and dtype: what every fused loss here shares. `out` is the chunk's rows of that
    buffer when it is fp32 (the arithmetic's dtype): a chunk that computes its gradient there
    returns `out` itself and saves a full pass over the buffer (the copy).
    """
    grad = torch.empty_like(rows) if need_grad else None
    scale = gradient_factor / divisor if need_grad else None
    total = torch.zeros((), dtype=torch.float32, device=rows.device)
    for part in chunk_slices(rows.size(0), chunk_rows):
        w = None if weights is None else weights[part]
        out = grad[part] if grad is not None and grad.dtype == torch.float32 else None
        value, chunk_grad = chunk(part, w, row_scale(scale, w), out)
        total += value
        if chunk_grad is not out:
            store_rows(grad, part, chunk_grad)
    return total, grad


def scaled_gradient(ctx: Any, grad_output: Tensor) -> Tensor | None:
    """The stored ``dL/dstudent`` times the incoming gradient, in place.

    In place, so the backward pass adds no second ``[M, V]`` tensor.  A second
    backward through the same graph (``retain_graph=True``) is refused by
    autograd's version check on the saved buffer, so it cannot see a scaled one.
    """
    (grad,) = ctx.saved_tensors
    return None if grad is None else grad.mul_(grad_output)


def chunk_slices(n_rows: int, chunk_rows: int) -> list[slice]:
    """The contiguous row slices of the chunks."""
    return [slice(start, start + chunk_rows) for start in range(0, n_rows, chunk_rows)]


def floored_divisor(divisor: Divisor, student: Tensor) -> Tensor:
    """The divisor as a 0-dim fp32 tensor on `student`'s device, at least 1 (0 scored rows give 0, not NaN).

    A tensor so that a count kept on the device is never read on the host; an int
    becomes a fill kernel there, not a host-to-device copy.
    """
    if isinstance(divisor, Tensor):
        return divisor.detach().float().clamp_min(1.0)
    return torch.full((), float(max(int(divisor), 1)), device=student.device)


def row_scale(scale: Tensor | None, weights: Tensor | None) -> Tensor | None:
    """The gradient's factor for one chunk: 0-dim, or ``[rows, 1]`` with each row's weight in it."""
    if scale is None or weights is None:
        return scale
    return scale * weights.unsqueeze(1)


def needs_gradient(student: Tensor) -> bool:
    """Decided outside the Function: inside its forward, grad mode is always off."""
    return torch.is_grad_enabled() and student.requires_grad


def store_rows(grad: Tensor | None, part: slice, values: Tensor | None) -> None:
    if grad is not None and values is not None:
        grad[part] = values


def _check_rows(student: Tensor, teachers: Sequence[Tensor], weights: Tensor | None) -> None:
    if student.dim() != 2:
        raise ValueError(f"expected student rows of shape [rows, vocab], got {tuple(student.shape)}")
    for index, teacher in enumerate(teachers):
        if teacher.shape != student.shape:
            raise ValueError(
                f"teacher {index} rows have shape {tuple(teacher.shape)}, the student's {tuple(student.shape)}"
            )
    if weights is not None and (weights.shape != (student.size(0),) or not weights.is_floating_point()):
        raise ValueError(
            f"weights must be one float per row ({student.size(0)}), "
            f"got {weights.dtype} of shape {tuple(weights.shape)}"
        )
