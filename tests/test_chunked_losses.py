"""The chunked logit losses against plain autograd on random tensors (values and gradients).

The oracles below are written with stock torch ops, independently of
`babykd.losses`: the published ``KLDivLoss(batchmean)`` form for the reference
normalisation, explicit row selection for the token normalisation and
``F.cross_entropy(ignore_index=-100)`` for the CE.  Chunk sizes are forced
small so every case runs several chunks, the last one ragged.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

import babykd.losses.chunked as chunked
from babykd.losses import (
    chunked_cross_entropy,
    chunked_soft_target_kl,
    compile_chunk_kernels,
    cross_entropy_loss,
    kl_distillation_loss,
)

B, T, V = 3, 9, 37
TEMPERATURE = 2.0


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """4 rows per chunk: 27 rows -> 7 chunks, the last one with 3 rows."""
    monkeypatch.setattr(chunked, "CPU_CHUNK_ELEMENTS", 4 * V)


def random_batch(seed: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, list[Tensor], Tensor]:
    generator = torch.Generator().manual_seed(seed)
    student = (torch.randn(B, T, V, generator=generator) * 3).to(dtype).requires_grad_()
    teachers = [(torch.randn(B, T, V, generator=generator) * 3).to(dtype) for _ in range(2)]
    labels = torch.randint(0, V, (B, T), generator=generator)
    labels[0, 3] = -100
    labels[1, 5:] = -100  # right padding
    return student, teachers, labels


def plain_kl(student: Tensor, teachers: list[Tensor], labels: Tensor, combine: str, normalization: str) -> Tensor:
    """The materialising autograd form: every fp32 [rows, V] tensor kept for backward."""
    if normalization == "reference":
        rows = [x.reshape(-1, V).float() for x in (student, *teachers)]
        divisor = student.size(0)
    else:
        mask = labels[:, 1:] != -100
        rows = [x[:, :-1][mask].float() for x in (student, *teachers)]
        divisor = max(int(mask.sum()), 1)
    student_rows, teacher_rows = rows[0], torch.stack(rows[1:])
    if combine == "logits":
        log_p = F.log_softmax(teacher_rows.mean(0) / TEMPERATURE, dim=-1)
    else:
        log_p = F.softmax(teacher_rows / TEMPERATURE, dim=-1).mean(0).log()
    log_q = F.log_softmax(student_rows / TEMPERATURE, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum() * TEMPERATURE**2 / divisor


def value_and_grad(loss_fn, student: Tensor, weight: float = 1.0) -> tuple[float, Tensor]:
    loss = loss_fn()
    (grad,) = torch.autograd.grad(weight * loss, student)
    return float(loss.detach()), grad


@pytest.mark.parametrize("combine", ["logits", "probs"])
@pytest.mark.parametrize("normalization", ["token", "reference"])
def test_kl_value_and_gradient_match_plain_autograd(combine: str, normalization: str) -> None:
    student, teachers, labels = random_batch(0)
    ours = value_and_grad(
        lambda: kl_distillation_loss(
            student, teachers, labels, temperature=TEMPERATURE, combine=combine, normalization=normalization
        ),
        student, weight=0.3,
    )
    plain = value_and_grad(lambda: plain_kl(student, teachers, labels, combine, normalization), student, weight=0.3)
    assert ours[0] == pytest.approx(plain[0], rel=1e-5)
    torch.testing.assert_close(ours[1], plain[1], rtol=1e-5, atol=1e-7)
    if normalization == "token":  # the unscored positions (last column, padding, -100 targets) get no gradient
        assert torch.all(ours[1][:, -1] == 0) and torch.all(ours[1][1, 4:] == 0) and torch.all(ours[1][0, 2] == 0)


def test_reference_normalisation_is_the_published_kldivloss_batchmean() -> None:
    student, teachers, labels = random_batch(1)
    ours = value_and_grad(
        lambda: kl_distillation_loss(student, teachers, labels, temperature=TEMPERATURE, normalization="reference"),
        student,
    )
    published = value_and_grad(
        lambda: nn.KLDivLoss(reduction="batchmean")(
            F.log_softmax(student / TEMPERATURE, dim=-1),
            F.softmax(torch.stack(teachers).mean(0) / TEMPERATURE, dim=-1),
        ) * TEMPERATURE**2,
        student,
    )
    assert ours[0] == pytest.approx(published[0], rel=1e-5)
    torch.testing.assert_close(ours[1], published[1], rtol=1e-5, atol=1e-7)


def test_cross_entropy_matches_f_cross_entropy_with_ignore_index() -> None:
    student, _, labels = random_batch(2)
    ours = value_and_grad(lambda: cross_entropy_loss(student, labels), student, weight=0.7)
    plain = value_and_grad(
        lambda: F.cross_entropy(student[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100),
        student, weight=0.7,
    )
    assert ours[0] == pytest.approx(plain[0], rel=1e-6)
    torch.testing.assert_close(ours[1], plain[1], rtol=1e-5, atol=1e-8)


def test_bf16_logits_give_bf16_gradients_close_to_the_fp32_computation() -> None:
    student, teachers, labels = random_batch(3, torch.bfloat16)
    value, grad = value_and_grad(lambda: kl_distillation_loss(student, teachers, labels), student)
    plain_value, plain_grad = value_and_grad(lambda: plain_kl(student, teachers, labels, "logits", "token"), student)
    assert grad.dtype == torch.bfloat16
    assert value == pytest.approx(plain_value, rel=1e-5)  # same bf16 inputs, both upcast to fp32
    torch.testing.assert_close(grad.float(), plain_grad.float(), rtol=1e-2, atol=1e-4)


def test_inputs_are_not_modified() -> None:
    student, teachers, labels = random_batch(4)
    before = [x.detach().clone() for x in (student, *teachers)]
    for normalization in ("token", "reference"):
        kl_distillation_loss(student, teachers, labels, normalization=normalization).backward()
    cross_entropy_loss(student, labels).backward()
    for original, tensor in zip(before, (student, *teachers)):
        assert torch.equal(original, tensor.detach())


def test_nothing_scored_gives_zero_and_zero_gradient() -> None:
    student, teachers, _ = random_batch(5)
    labels = torch.full((B, T), -100)
    for loss in (kl_distillation_loss(student, teachers, labels), cross_entropy_loss(student, labels)):
        (grad,) = torch.autograd.grad(loss, student)
        assert float(loss.detach()) == 0.0 and torch.all(grad == 0)


def test_masked_teacher_vocabulary_stays_finite_and_matches() -> None:
    student, teachers, labels = random_batch(6)
    teachers = [t.clone() for t in teachers]
    for t in teachers:
        t[..., :5] = float("-inf")  # both teachers forbid the first 5 tokens: p = 0 there, log p = -inf
    value, grad = value_and_grad(lambda: kl_distillation_loss(student, teachers, labels, combine="probs"), student)
    assert torch.isfinite(grad).all()
    # Oracle: the KL sum runs over the tokens the teachers allow only (0·log 0 = 0 by convention).
    mask = labels[:, 1:] != -100
    log_q = F.log_softmax(student.detach()[:, :-1][mask] / TEMPERATURE, dim=-1)[:, 5:]
    p = F.softmax(torch.stack([t[:, :-1][mask][:, 5:] for t in teachers]) / TEMPERATURE, dim=-1).mean(0)
    expected = (p * (p.log() - log_q)).sum() * TEMPERATURE**2 / int(mask.sum())
    assert value == pytest.approx(float(expected), rel=1e-5)


def test_without_grad_mode_no_graph_is_built() -> None:
    student, teachers, labels = random_batch(7)
    with torch.no_grad():
        kl = kl_distillation_loss(student, teachers, labels)
        ce = cross_entropy_loss(student, labels)
    assert not kl.requires_grad and not ce.requires_grad
    expected = plain_kl(student.detach(), teachers, labels, "logits", "token")
    assert float(kl) == pytest.approx(float(expected), rel=1e-5)


class _Float32Outputs(TorchDispatchMode):
    """Records the number of elements of every fp32 tensor an op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, Tensor) and tensor.dtype == torch.float32:
                self.sizes.append(tensor.numel())
        return out


def test_bf16_path_never_materialises_a_float32_rows_by_vocab_tensor() -> None:
    student, teachers, labels = random_batch(8, torch.bfloat16)
    with _Float32Outputs() as recorder:
        loss = 0.5 * kl_distillation_loss(student, teachers, labels) + 0.5 * cross_entropy_loss(student, labels)
        loss.backward()
    assert recorder.sizes, "the recorder saw no fp32 op output"
    assert max(recorder.sizes) <= 4 * V  # one chunk of fp32 work, never [B*T, V]
    assert student.grad is not None and student.grad.dtype == torch.bfloat16


def test_second_backward_through_the_same_graph_is_refused_by_autograd() -> None:
    student, teachers, labels = random_batch(9)
    loss = kl_distillation_loss(student, teachers, labels)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_bad_arguments_name_the_problem() -> None:
    student = torch.randn(6, V)
    with pytest.raises(ValueError, match="one float per row"):
        chunked_soft_target_kl(student, [student], torch.tensor([0.0]), temperature=2.0, combine="logits", divisor=1)
    with pytest.raises(ValueError, match="teacher 0 rows have shape"):
        chunked_soft_target_kl(student, [student[:3]], None, temperature=2.0, combine="logits", divisor=1)
    with pytest.raises(ValueError, match="expected 6 targets"):
        chunked_cross_entropy(student, torch.tensor([1, 2, 3]), None, divisor=2)
    with pytest.raises(ValueError, match="do not match labels"):
        cross_entropy_loss(torch.randn(2, 5, V), torch.zeros(2, 4, dtype=torch.long))


def test_compiled_chunk_kernels_compute_the_same_values_and_gradients() -> None:
    """Traced and functionalised by torch.compile (aot_eager: the graph, without a C++ toolchain)."""
    eager = {}
    for compiled in (False, True):
        compile_chunk_kernels(compiled, backend="aot_eager")
        try:
            for seed in (10, 11):  # the second batch has other row counts: dynamic shapes, no failure
                student, teachers, labels = random_batch(seed, torch.bfloat16)
                labels[2, seed - 8] = -100
                for name, fn in (
                    ("kl", lambda: kl_distillation_loss(student, teachers, labels, combine="probs")),
                    ("ce", lambda: cross_entropy_loss(student, labels)),
                ):
                    value, grad = value_and_grad(fn, student, weight=0.5)
                    if compiled:
                        assert value == pytest.approx(eager[seed, name][0], rel=1e-6)
                        torch.testing.assert_close(grad, eager[seed, name][1], rtol=0, atol=0)
                    else:
                        eager[seed, name] = (value, grad)
        finally:
            compile_chunk_kernels(False)
