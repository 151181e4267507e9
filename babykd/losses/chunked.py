"""Chunked, fused logit losses: value and gradient in one pass, never a full fp32 ``[N, V]`` tensor.

The plain autograd form of a vocabulary-sized loss keeps several fp32
``[N, V]`` tensors alive from the forward to the backward pass (the upcast
logits, the log-softmax, the teacher log-probabilities) and walks them again in
the backward pass.  At the published shapes (N = 32·128 rows, V = 16000) each
of those is 262 MB.  Here the rows are processed in chunks of a few MB: each
chunk's fp32 work tensors live only inside the loop, and the gradient with
respect to the student logits is computed right there (it has a closed form),
then stored once in the logits' own dtype (bf16 under mixed precision) until
the backward pass scales it by the incoming gradient.  The arithmetic per row
is the same as the autograd form's (same fp32 upcast, same teacher combination,
same clamping), so values and gradients agree to fp32 rounding.

Rows are addressed by an optional index into a flattened ``[M, V]`` view, so
the scored rows of a ``[B, T, V]`` tensor are never gathered into a copy.

The per-chunk arithmetic is a chain of ~20 elementwise passes in eager mode;
:func:`compile_chunk_kernels` fuses each chunk's work into a few kernels with
``torch.compile`` (worth it on a GPU, where those passes are memory-bound).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from babykd.losses.teacher_targets import combined_teacher_log_probs

#: fp32 elements per chunk on CPU / on an accelerator.  Small chunks stay in a CPU's
#: caches; on a GPU larger chunks amortise the per-kernel launch cost.
CPU_CHUNK_ELEMENTS = 1 << 20
DEVICE_CHUNK_ELEMENTS = 1 << 24


def default_chunk_rows(student: Tensor) -> int:
    """Rows per chunk for `student` ``[M, V]``: a fixed element budget, at least one row."""
    budget = CPU_CHUNK_ELEMENTS if student.device.type == "cpu" else DEVICE_CHUNK_ELEMENTS
    return max(1, budget // max(1, student.size(-1)))


def chunked_soft_target_kl(
    student: Tensor,
    teachers: Sequence[Tensor],
    rows: Tensor | None,
    *,
    temperature: float,
    combine: str,
    divisor: int,
    chunk_rows: int | None = None,
) -> Tensor:
    """``T² · Σ_rows KL(p_teacher ‖ p_student) / divisor`` over the selected rows of ``[M, V]`` tensors.

    `student` and each of `teachers` are ``[M, V]`` (any float dtype; the
    arithmetic is fp32); `rows` holds the row indices to sum over (None: all
    M rows).  The teachers are combined per `combine` exactly as
    :func:`babykd.losses.teacher_targets.combined_teacher_log_probs` does and get no
    gradient.  Returns an fp32 scalar attached to `student`'s graph.
    """
    _check_rows(student, teachers, rows)
    chunk = chunk_rows or default_chunk_rows(student)
    return _SoftTargetKL.apply(
        student, rows, _needs_gradient(student), float(temperature), combine, max(int(divisor), 1), chunk, *teachers
    )


def chunked_cross_entropy(
    student: Tensor, targets: Tensor, rows: Tensor | None, *, divisor: int, chunk_rows: int | None = None
) -> Tensor:
    """``Σ_rows -log softmax(student)[target] / divisor`` over the selected rows of `student` ``[M, V]``.

    `targets` ``[N]`` holds the class of each selected row (N = M when `rows`
    is None).  Returns an fp32 scalar attached to `student`'s graph.
    """
    _check_rows(student, (), rows)
    count = student.size(0) if rows is None else rows.numel()
    if targets.shape != (count,):
        raise ValueError(f"expected {count} targets (one per selected row), got shape {tuple(targets.shape)}")
    chunk = chunk_rows or default_chunk_rows(student)
    return _CrossEntropy.apply(student, rows, _needs_gradient(student), targets, max(int(divisor), 1), chunk)


# ----------------------------------------------------------------------------- per-chunk arithmetic


def kl_chunk(
    student_rows: Tensor, teacher_rows: list[Tensor], temperature: float, combine: str, scale: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """One chunk: ``Σ p·(log p − log q)`` and, when `scale` is given, ``scale·(q·Σp − p)`` in the student's dtype.

    q = softmax(s/T), p = the combined teachers.  The row gradient of
    ``T²·KL / divisor`` is ``(T / divisor)·(q·Σp − p)`` (Σp = 1 up to rounding
    and clamping; it is kept so the gradient is that of the value actually
    computed).  `scale` is a 0-dim fp32 tensor, so a new divisor does not make
    a compiled kernel recompile; it is applied in fp32, before the one rounding
    to the student's dtype, as autograd would.
    """
    teacher_log_probs = combined_teacher_log_probs(teacher_rows, temperature, combine)  # type: ignore[arg-type]
    # copy=True: for fp32 logits .float() would be a view, and div_ would scale the caller's tensor.
    log_q = torch.log_softmax(student_rows.to(torch.float32, copy=True).div_(temperature), dim=-1)
    p = teacher_log_probs.exp()
    # The pointwise form of F.kl_div(log_target=True); reuses the teacher buffer.
    total = teacher_log_probs.sub_(log_q).mul_(p).sum()
    if scale is None:
        return total, None
    grad = log_q.exp_().mul_(p.sum(dim=-1, keepdim=True)).sub_(p).mul_(scale)
    return total, grad.to(student_rows.dtype)


def ce_chunk(student_rows: Tensor, targets: Tensor, scale: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """One chunk: ``Σ −log softmax(s)[target]`` and, when `scale` is given, ``scale·(softmax(s) − onehot(target))``."""
    log_probs = torch.log_softmax(student_rows.float(), dim=-1)
    targets = targets.unsqueeze(1)
    total = -log_probs.gather(1, targets).sum()
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
        ctx: Any, student: Tensor, rows: Tensor | None, need_grad: bool, temperature: float, combine: str,
        divisor: int, chunk_rows: int, *teachers: Tensor,
    ) -> Tensor:
        grad = _gradient_buffer(student, rows, need_grad)
        scale = _scale(temperature / divisor, student, need_grad)
        total = torch.zeros((), dtype=torch.float32, device=student.device)
        for _, select in _chunks(student.size(0), rows, chunk_rows):
            value, chunk_grad = _kernels.kl(select(student), [select(t) for t in teachers], temperature, combine, scale)
            total += value
            _store(grad, select, chunk_grad)
        ctx.save_for_backward(grad)
        return total * (temperature**2 / divisor)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        n_other_inputs = len(ctx.needs_input_grad) - 1
        return (_scaled_gradient(ctx, grad_output), *([None] * n_other_inputs))


class _CrossEntropy(torch.autograd.Function):
    """Hard-target CE; per row ``dL/ds = (softmax(s) − onehot(target)) / divisor``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, student: Tensor, rows: Tensor | None, need_grad: bool, targets: Tensor, divisor: int, chunk_rows: int
    ) -> Tensor:
        grad = _gradient_buffer(student, rows, need_grad)
        scale = _scale(1.0 / divisor, student, need_grad)
        total = torch.zeros((), dtype=torch.float32, device=student.device)
        for start, select in _chunks(student.size(0), rows, chunk_rows):
            value, chunk_grad = _kernels.ce(select(student), targets[start : start + chunk_rows], scale)
            total += value
            _store(grad, select, chunk_grad)
        ctx.save_for_backward(grad)
        return total / divisor

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        return _scaled_gradient(ctx, grad_output), None, None, None, None, None


# ----------------------------------------------------------------------------- helpers


def _scaled_gradient(ctx: Any, grad_output: Tensor) -> Tensor | None:
    """The stored ``dL/dstudent`` times the incoming gradient, in place.

    In place, so the backward pass adds no second ``[M, V]`` tensor.  A second
    backward through the same graph (``retain_graph=True``) is refused by
    autograd's version check on the saved buffer, so it cannot see a scaled one.
    """
    (grad,) = ctx.saved_tensors
    return None if grad is None else grad.mul_(grad_output)


class _RowSelector:
    """One chunk's rows: a slice of the ``[M, V]`` tensors, or an index into them."""

    def __init__(self, index: slice | Tensor) -> None:
        self.index = index

    def __call__(self, tensor: Tensor) -> Tensor:
        if isinstance(self.index, slice):
            return tensor[self.index]
        return tensor.index_select(0, self.index)


def _chunks(n_rows: int, rows: Tensor | None, chunk_rows: int) -> list[tuple[int, _RowSelector]]:
    """(offset among the selected rows, selector) of each chunk."""
    total = n_rows if rows is None else rows.numel()
    return [
        (start, _RowSelector(slice(start, start + chunk_rows) if rows is None else rows[start : start + chunk_rows]))
        for start in range(0, total, chunk_rows)
    ]


def _scale(value: float, student: Tensor, need_grad: bool) -> Tensor | None:
    """The gradient's constant factor as a 0-dim fp32 tensor (a fill kernel, no host-device copy)."""
    return torch.full((), value, dtype=torch.float32, device=student.device) if need_grad else None


def _needs_gradient(student: Tensor) -> bool:
    """Decided outside the Function: inside its forward, grad mode is always off."""
    return torch.is_grad_enabled() and student.requires_grad


def _gradient_buffer(student: Tensor, rows: Tensor | None, needed: bool) -> Tensor | None:
    """Where the chunks write ``dL/dstudent``; rows that are not selected keep a zero gradient."""
    if not needed:
        return None
    if rows is None:
        return torch.empty_like(student)
    return torch.zeros_like(student)


def _store(grad: Tensor | None, select: _RowSelector, values: Tensor | None) -> None:
    if grad is None or values is None:
        return
    if isinstance(select.index, slice):
        grad[select.index] = values
    else:
        grad.index_copy_(0, select.index, values)


def _check_rows(student: Tensor, teachers: Sequence[Tensor], rows: Tensor | None) -> None:
    if student.dim() != 2:
        raise ValueError(f"expected student rows of shape [rows, vocab], got {tuple(student.shape)}")
    for index, teacher in enumerate(teachers):
        if teacher.shape != student.shape:
            raise ValueError(
                f"teacher {index} rows have shape {tuple(teacher.shape)}, the student's {tuple(student.shape)}"
            )
    if rows is not None and (rows.dim() != 1 or rows.dtype != torch.long):
        raise ValueError(f"rows must be a 1-D int64 index tensor, got {rows.dtype} of shape {tuple(rows.shape)}")
