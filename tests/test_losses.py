"""Loss terms against hand computations on tiny tensors, plus gradient flow and API checks.

Expected values are computed with plain Python loops and `math`, independently
of the torch expressions in `babykd.losses`.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from babykd.config import LossWeightsConfig

from babykd.losses import (
    PUBLISHED_LAYER_MAPS,
    AuxiliaryHeads,
    DistillationModules,
    HiddenStateProjections,
    auxiliary_classifier_loss,
    combine,
    contrastive_loss,
    cross_entropy_loss,
    hidden_state_loss,
    kl_distillation_loss,
    last_layer_maps,
    uniform_layer_map,
    validate_layer_map,
)

# B=2, T=4, V=5.  Row b=0 has an ignored target at t=2; row b=1 is right-padded after t=2.
STUDENT = [
    [[0.1, 1.2, -0.3, 0.8, 0.0], [1.5, -1.0, 0.2, 0.3, -0.4], [0.0, 0.0, 2.0, -1.0, 0.5], [0.7, 0.1, -0.2, 0.4, 1.1]],
    [[-0.5, 0.3, 0.9, 0.0, 1.4], [0.2, 2.1, -0.7, 0.6, 0.1], [1.0, -0.2, 0.3, 0.3, -1.2], [0.4, 0.4, 0.0, -0.6, 0.9]],
]
TEACHER_A = [
    [[1.0, 0.5, -1.0, 0.2, 0.0], [0.3, 0.3, 1.7, -0.5, 0.2], [-0.4, 1.1, 0.6, 0.0, 0.9], [0.2, -0.3, 1.3, 0.8, -0.1]],
    [[0.6, -0.8, 0.1, 1.9, 0.4], [1.2, 0.0, -0.3, 0.5, 0.7], [0.1, 0.9, -1.1, 0.4, 0.2], [-0.2, 1.6, 0.3, 0.0, 0.5]],
]
TEACHER_B = [
    [[-1.2, 2.0, 0.3, 0.1, 0.6], [0.9, -0.6, 0.4, 1.3, -0.2], [0.5, 0.2, -0.9, 1.4, 0.0], [1.1, 0.3, 0.2, -0.7, 0.4]],
    [[0.0, 0.7, 1.5, -0.4, -1.0], [-0.3, 0.8, 0.2, 1.1, 0.6], [1.7, -0.5, 0.4, 0.1, 0.3], [0.6, 0.0, -0.8, 1.2, 0.9]],
]
LABELS = [[3, 1, -100, 4], [2, 0, 1, -100]]
TEMPERATURE = 2.0


def tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def softmax(xs: list[float]) -> list[float]:
    top = max(xs)
    exps = [math.exp(x - top) for x in xs]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q) if pi > 0)


def tempered(row: list[float]) -> list[float]:
    return softmax([x / TEMPERATURE for x in row])


def scored(labels: list[list[int]]) -> list[tuple[int, int]]:
    """(b, t) logits positions whose next-token target is not -100."""
    return [(b, t) for b, row in enumerate(labels) for t in range(len(row) - 1) if row[t + 1] != -100]


def hand_kd(teacher_dist, positions: list[tuple[int, int]]) -> list[float]:
    """T²·KL(teacher ‖ student) at each position, the teacher distribution given per position."""
    return [TEMPERATURE**2 * kl(teacher_dist(b, t), tempered(STUDENT[b][t])) for b, t in positions]


def single_teacher(b: int, t: int) -> list[float]:
    return tempered(TEACHER_A[b][t])


def averaged_logits(b: int, t: int) -> list[float]:
    return tempered([(x + y) / 2 for x, y in zip(TEACHER_A[b][t], TEACHER_B[b][t])])


def averaged_probs(b: int, t: int) -> list[float]:
    return [(x + y) / 2 for x, y in zip(tempered(TEACHER_A[b][t]), tempered(TEACHER_B[b][t]))]


ALL_POSITIONS = [(b, t) for b in range(2) for t in range(4)]


def test_cross_entropy_skips_ignored_targets():
    positions = scored(LABELS)
    assert positions == [(0, 0), (0, 2), (1, 0), (1, 1)]
    expected = sum(-math.log(softmax(STUDENT[b][t])[LABELS[b][t + 1]]) for b, t in positions) / len(positions)
    loss = cross_entropy_loss(tensor(STUDENT), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_of_fully_ignored_batch_is_zero_not_nan():
    labels = torch.full((2, 4), -100)
    assert cross_entropy_loss(tensor(STUDENT), labels).item() == 0.0


def test_kl_token_mode_is_mean_over_scored_positions_with_t_squared():
    expected = hand_kd(single_teacher, scored(LABELS))
    loss = kl_distillation_loss(tensor(STUDENT), [tensor(TEACHER_A)], torch.tensor(LABELS), temperature=TEMPERATURE)
    assert loss.item() == pytest.approx(sum(expected) / len(expected), rel=1e-6)


def test_kl_reference_mode_sums_all_positions_and_divides_by_batch():
    expected = sum(hand_kd(single_teacher, ALL_POSITIONS)) / 2
    loss = kl_distillation_loss(
        tensor(STUDENT), [tensor(TEACHER_A)], torch.tensor(LABELS), temperature=TEMPERATURE, normalization="reference"
    )
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_kl_reference_matches_published_kldivloss_expression():
    student, teachers = tensor(STUDENT), [tensor(TEACHER_A), tensor(TEACHER_B)]
    published = nn.KLDivLoss(reduction="batchmean")(
        F.log_softmax(student / TEMPERATURE, dim=-1),
        F.softmax(torch.stack(teachers).mean(dim=0) / TEMPERATURE, dim=-1),
    ) * (TEMPERATURE**2)
    ours = kl_distillation_loss(student, teachers, torch.tensor(LABELS), normalization="reference")
    assert ours.item() == pytest.approx(published.item(), rel=1e-6)


def test_reference_to_token_conversion_without_masking():
    labels = torch.tensor([[3, 1, 0, 4], [2, 0, 1, 3]])
    per_position = {pos: value for pos, value in zip(ALL_POSITIONS, hand_kd(single_teacher, ALL_POSITIONS))}
    token = kl_distillation_loss(tensor(STUDENT), [tensor(TEACHER_A)], labels)
    reference = kl_distillation_loss(tensor(STUDENT), [tensor(TEACHER_A)], labels, normalization="reference")
    last_positions = (per_position[(0, 3)] + per_position[(1, 3)]) / 2
    assert reference.item() == pytest.approx(3 * token.item() + last_positions, rel=1e-6)


def test_teacher_combination_by_logits_and_by_probs():
    positions = scored(LABELS)
    args = (tensor(STUDENT), [tensor(TEACHER_A), tensor(TEACHER_B)], torch.tensor(LABELS))
    by_logits = kl_distillation_loss(*args, combine="logits").item()
    by_probs = kl_distillation_loss(*args, combine="probs").item()
    assert by_logits == pytest.approx(sum(hand_kd(averaged_logits, positions)) / len(positions), rel=1e-6)
    assert by_probs == pytest.approx(sum(hand_kd(averaged_probs, positions)) / len(positions), rel=1e-6)
    assert abs(by_logits - by_probs) > 1e-3


def test_ignored_position_does_not_enter_token_mode_but_enters_reference():
    labels = torch.tensor(LABELS)
    changed = tensor(STUDENT)
    changed[0, 1] += torch.tensor([3.0, -2.0, 0.0, 1.0, 5.0])  # position (0, 1) predicts the -100 at t=2
    for mode, should_change in (("token", False), ("reference", True)):
        before = kl_distillation_loss(tensor(STUDENT), [tensor(TEACHER_A)], labels, normalization=mode)
        after = kl_distillation_loss(changed, [tensor(TEACHER_A)], labels, normalization=mode)
        assert (abs(after.item() - before.item()) > 1e-3) == should_change, mode


def test_kl_upcasts_half_precision_logits():
    labels = torch.tensor(LABELS)
    full = kl_distillation_loss(tensor(STUDENT), [tensor(TEACHER_A)], labels)
    half = kl_distillation_loss(tensor(STUDENT).bfloat16(), [tensor(TEACHER_A).bfloat16()], labels)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(full.item(), rel=2e-2)


def test_teacher_masking_a_vocabulary_entry_gives_finite_kl():
    masked = [[row[:4] + [-math.inf] for row in sequence] for sequence in TEACHER_A]
    positions = scored(LABELS)
    expected = sum(hand_kd(lambda b, t: tempered(masked[b][t]), positions)) / len(positions)
    for mode in ("logits", "probs"):
        loss = kl_distillation_loss(tensor(STUDENT), [tensor(masked)], torch.tensor(LABELS), combine=mode)
        assert loss.item() == pytest.approx(expected, rel=1e-6), mode


def test_kl_rejects_teacher_with_other_vocabulary():
    with pytest.raises(ValueError, match="teacher 1 logits have shape"):
        kl_distillation_loss(tensor(STUDENT), [tensor(TEACHER_A), torch.zeros(2, 4, 6)], torch.tensor(LABELS))


# Hidden states: student width 2 with 3 hidden_states (2 layers); teacher 0 width 3 (student is
# projected up), teacher 1 width 1 (teacher is projected up).  Position (1, 2) is padding.
STUDENT_HIDDEN = [
    [[[0.5, -1.0], [1.0, 0.0], [0.2, 0.3]], [[-0.4, 0.8], [0.0, 1.5], [9.0, 9.0]]],
    [[[1.0, 1.0], [0.3, -0.2], [0.0, 0.7]], [[0.6, -0.1], [-1.1, 0.4], [9.0, 9.0]]],
    [[[0.2, 0.2], [-0.5, 0.9], [1.2, 0.1]], [[0.0, -0.3], [0.8, 0.8], [9.0, 9.0]]],
]
TEACHER0_HIDDEN = [  # 4 hidden_states (3 layers), width 3
    [[[0.4, -0.9, 0.1], [1.2, 0.1, -0.2], [0.0, 0.3, 0.5]], [[-0.2, 0.9, 0.0], [0.1, 1.4, 0.3], [5.0, 5.0, 5.0]]],
    [[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [5.0, 5.0, 5.0]]],
    [[[0.9, 1.1, -0.3], [0.2, -0.4, 0.6], [0.1, 0.5, 0.2]], [[0.7, 0.1, 0.4], [-0.9, 0.3, 0.0], [5.0, 5.0, 5.0]]],
    [[[0.0, 0.3, 0.2], [-0.6, 1.0, 0.1], [1.0, 0.0, -0.5]], [[0.2, -0.2, 0.3], [0.5, 0.9, -0.1], [5.0, 5.0, 5.0]]],
]
TEACHER1_HIDDEN = [  # 3 hidden_states (2 layers), width 1; the map pairs inner index 1 with student 1
    [[[0.3], [-0.2], [0.8]], [[1.0], [0.4], [7.0]]],
    [[[-0.5], [0.9], [0.1]], [[0.2], [0.0], [7.0]]],
    [[[0.1], [0.6], [-0.4]], [[0.5], [-0.3], [7.0]]],
]
ATTENTION_MASK = [[1, 1, 1], [1, 1, 0]]
HIDDEN_MAPS = [{0: 0, 3: 2}, {1: 1}]


def identity_projections(teacher_widths, layer_maps) -> HiddenStateProjections:
    names = ["wide", "narrow"][: len(teacher_widths)]
    projections = HiddenStateProjections(teacher_widths, 2, layer_maps, teacher_names=names)
    with torch.no_grad():
        for linear in projections.modules():
            if isinstance(linear, nn.Linear):
                nn.init.eye_(linear.weight)
                linear.bias.zero_()
    return projections


def padded(vector: list[float], width: int) -> list[float]:
    return vector + [0.0] * (width - len(vector))


def hand_mse(student_states, teacher_states, mask) -> float:
    """MSE over unmasked positions, the narrower side zero-padded (identity projection)."""
    width = max(len(student_states[0][0]), len(teacher_states[0][0]))
    squares, count = 0.0, 0
    for b, row in enumerate(mask):
        for t, keep in enumerate(row):
            if keep:
                s, h = padded(student_states[b][t], width), padded(teacher_states[b][t], width)
                squares += sum((x - y) ** 2 for x, y in zip(s, h))
                count += width
    return squares / count


def test_hidden_state_loss_with_known_map_and_identity_projections():
    first_pair = hand_mse(STUDENT_HIDDEN[0], TEACHER0_HIDDEN[0], ATTENTION_MASK)
    second_pair = hand_mse(STUDENT_HIDDEN[2], TEACHER0_HIDDEN[3], ATTENTION_MASK)
    teacher0 = (first_pair + second_pair) / 2
    teacher1 = hand_mse(STUDENT_HIDDEN[1], TEACHER1_HIDDEN[1], ATTENTION_MASK)
    loss = hidden_state_loss(
        [tensor(h) for h in STUDENT_HIDDEN],
        [[tensor(h) for h in TEACHER0_HIDDEN], [tensor(h) for h in TEACHER1_HIDDEN]],
        identity_projections([3, 1], HIDDEN_MAPS),
        attention_mask=torch.tensor(ATTENTION_MASK),
    )
    assert loss.item() == pytest.approx((teacher0 + teacher1) / 2, rel=1e-6)


def test_hidden_state_loss_trains_student_and_projections_not_teachers():
    student = [tensor(h).requires_grad_() for h in STUDENT_HIDDEN]
    teachers = [[tensor(h).requires_grad_() for h in states] for states in (TEACHER0_HIDDEN, TEACHER1_HIDDEN)]
    projections = HiddenStateProjections([3, 1], 2, HIDDEN_MAPS)
    hidden_state_loss(student, teachers, projections, attention_mask=torch.tensor(ATTENTION_MASK)).backward()
    for teacher_index, (t_layer, s_layer) in ((0, (0, 0)), (0, (3, 2)), (1, (1, 1))):
        weight = projections.projection(teacher_index, t_layer, s_layer).weight
        assert weight.grad is not None and weight.grad.abs().sum() > 0
    for layer in (0, 1, 2):
        assert student[layer].grad.abs().sum() > 0
        assert student[layer].grad[1, 2].abs().sum() == 0  # the padded position is not scored
    assert all(state.grad is None for states in teachers for state in states)


def test_hidden_weight_changes_student_gradient():
    torch.manual_seed(0)
    student = nn.Linear(2, 2)
    lm_head = torch.randn(2, 5)
    embeddings = tensor(STUDENT_HIDDEN[0])
    labels = torch.tensor([[1, 3, 0], [4, 2, -100]])
    projections = identity_projections([3], [{0: 0, 3: 1}])

    def student_gradient(hidden_weight: float) -> torch.Tensor:
        student.zero_grad()
        hidden = student(embeddings)
        terms = {
            "ce": cross_entropy_loss(hidden @ lm_head, labels),
            "hidden": hidden_state_loss([embeddings, hidden], [[tensor(h) for h in TEACHER0_HIDDEN]], projections),
        }
        combine(terms, LossWeightsConfig(ce=1.0, hidden=hidden_weight)).backward()
        return student.weight.grad.clone()

    assert not torch.allclose(student_gradient(0.0), student_gradient(0.5))


def test_hidden_state_loss_rejects_map_beyond_the_teacher():
    projections = HiddenStateProjections([1], 2, [{3: 1}], teacher_names=["GPT2-705M"])
    with pytest.raises(ValueError, match=r"'GPT2-705M'.*teacher layer 3"):
        hidden_state_loss([tensor(h) for h in STUDENT_HIDDEN], [[tensor(h) for h in TEACHER1_HIDDEN]], projections)


# Contrastive: 3 scored positions (B=2, T=2 with one padded), width 2 on both sides.
CONTRASTIVE_STUDENT = [[[1.0, 0.0], [0.6, 0.8]], [[0.0, -2.0], [5.0, 5.0]]]
CONTRASTIVE_TEACHER = [[[2.0, 0.2], [0.0, 1.0]], [[1.0, -1.0], [-3.0, 3.0]]]
CONTRASTIVE_MASK = [[1, 1], [1, 0]]


def cosine(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v)) / (math.hypot(*u) * math.hypot(*v))


def hand_info_nce(students: list[list[float]], teachers: list[list[float]], tau: float) -> float:
    total = 0.0
    for i, s in enumerate(students):
        logits = [cosine(s, t) / tau for t in teachers]
        total += -math.log(softmax(logits)[i])
    return total / len(students)


def test_contrastive_loss_by_hand():
    students = [CONTRASTIVE_STUDENT[0][0], CONTRASTIVE_STUDENT[0][1], CONTRASTIVE_STUDENT[1][0]]
    teachers = [CONTRASTIVE_TEACHER[0][0], CONTRASTIVE_TEACHER[0][1], CONTRASTIVE_TEACHER[1][0]]
    projections = identity_projections([2], last_layer_maps([1], 1))
    for tau in (2.0, 0.5):
        loss = contrastive_loss(
            tensor(CONTRASTIVE_STUDENT), [tensor(CONTRASTIVE_TEACHER)], projections, torch.tensor(CONTRASTIVE_MASK), tau
        )
        assert loss.item() == pytest.approx(hand_info_nce(students, teachers, tau), rel=1e-6)


def test_contrastive_subsampling_first_positions_and_seeded():
    projections = identity_projections([2], last_layer_maps([1], 1))
    student, teacher = tensor(CONTRASTIVE_STUDENT), [tensor(CONTRASTIVE_TEACHER)]
    first_two = contrastive_loss(student, teacher, projections, max_positions=2)
    expected = hand_info_nce(CONTRASTIVE_STUDENT[0], CONTRASTIVE_TEACHER[0], 2.0)
    assert first_two.item() == pytest.approx(expected, rel=1e-6)
    seeded = [
        contrastive_loss(student, teacher, projections, max_positions=2, generator=torch.Generator().manual_seed(seed))
        for seed in (7, 7)
    ]
    assert seeded[0].item() == seeded[1].item()


def test_contrastive_loss_trains_projection_and_needs_one_pair():
    projections = HiddenStateProjections([3], 2, last_layer_maps([1], 1))
    student = tensor(CONTRASTIVE_STUDENT).requires_grad_()
    teacher = torch.randn(2, 2, 3)
    contrastive_loss(student, [teacher], projections).backward()
    assert projections.projection(0, 1, 1).weight.grad.abs().sum() > 0
    assert student.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="exactly one layer pair"):
        contrastive_loss(student, [teacher], HiddenStateProjections([3], 2, [{0: 0, 1: 1}]))


# Auxiliary heads: width 2, V=5, heads on student layers 1 and 2 with known weights (no norm).
HEAD_WEIGHTS = {
    1: [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5], [0.0, 0.0]],
    2: [[0.3, -0.2], [0.0, 0.0], [0.5, 0.5], [2.0, 0.0], [-0.4, 1.0]],
}
AUX_LABELS = [[1, 3, 0], [4, 2, -100]]


def aux_heads_with(layers: list[int]) -> AuxiliaryHeads:
    heads = AuxiliaryHeads(2, 5, layers, norm=False)
    with torch.no_grad():
        for layer in layers:
            heads.heads[str(layer)][0].weight.copy_(tensor(HEAD_WEIGHTS[layer]))
    return heads


def hand_head_loss(layer: int) -> float:
    positions = scored(AUX_LABELS)
    total = 0.0
    for b, t in positions:
        hidden = STUDENT_HIDDEN[layer][b][t]
        head_logits = [sum(w * h for w, h in zip(row, hidden)) for row in HEAD_WEIGHTS[layer]]
        total += TEMPERATURE**2 * kl(tempered(TEACHER_A[b][t]), tempered(head_logits))
    return total / len(positions)


def test_auxiliary_heads_weighting_by_hand():
    losses = [hand_head_loss(1), hand_head_loss(2)]
    weights = [(1 / loss) / sum(1 / other for other in losses) for loss in losses]
    teacher = [tensor(TEACHER_A)[:, :3]]
    loss = auxiliary_classifier_loss(
        [tensor(h) for h in STUDENT_HIDDEN], aux_heads_with([1, 2]), teacher, torch.tensor(AUX_LABELS), TEMPERATURE
    )
    assert loss.item() == pytest.approx(sum(w * loss for w, loss in zip(weights, losses)), rel=1e-6)
    assert weights[losses.index(max(losses))] < 0.5  # the worse head weighs less


def test_auxiliary_weights_are_detached():
    """Head i's gradient is w_i times the gradient of its own loss, with w_i a constant."""
    hidden = [tensor(h) for h in STUDENT_HIDDEN]
    teacher, labels = [tensor(TEACHER_A)[:, :3]], torch.tensor(AUX_LABELS)
    both = aux_heads_with([1, 2])
    auxiliary_classifier_loss(hidden, both, teacher, labels).backward()
    losses = [hand_head_loss(1), hand_head_loss(2)]
    first_weight = (1 / losses[0]) / (1 / losses[0] + 1 / losses[1])
    alone = aux_heads_with([1])
    auxiliary_classifier_loss(hidden, alone, teacher, labels).backward()
    torch.testing.assert_close(both.heads["1"][0].weight.grad, first_weight * alone.heads["1"][0].weight.grad)


def test_uniform_layer_map_properties():
    for n_teacher, n_student in ((24, 16), (12, 16), (16, 16), (3, 1), (1, 5), (36, 6)):
        layer_map = uniform_layer_map(n_teacher, n_student)
        teachers, students = list(layer_map), list(layer_map.values())
        assert len(layer_map) == min(n_teacher, n_student) + 1
        assert layer_map[0] == 0 and layer_map[n_teacher] == n_student
        assert all(a < b for a, b in zip(teachers, teachers[1:]))
        assert all(a < b for a, b in zip(students, students[1:]))
        validate_layer_map(layer_map, n_teacher, n_student, "t")
    teacher_side = [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24]
    assert uniform_layer_map(24, 16) == dict(zip(teacher_side, range(17)))


def test_published_maps_fit_24_layer_teachers_and_16_layer_student():
    for name, layer_map in PUBLISHED_LAYER_MAPS.items():
        validate_layer_map(layer_map, 24, 16, name)


def test_validate_layer_map_names_teacher_and_bad_index():
    with pytest.raises(ValueError, match=r"'Llama-360M'.*teacher layer 25.*0\.\.24"):
        validate_layer_map({0: 0, 25: 16}, 24, 16, "Llama-360M")
    with pytest.raises(ValueError, match=r"'GPT2-705M'.*student layer 17.*0\.\.16"):
        validate_layer_map({3: 17}, 24, 16, "GPT2-705M")
    with pytest.raises(ValueError, match=r"'x'.*teacher layer -1"):
        validate_layer_map({-1: 0}, 24, 16, "x")
    with pytest.raises(ValueError, match="empty"):
        validate_layer_map({}, 24, 16, "x")


def test_layer_map_refuses_a_last_index_paired_with_an_inner_one():
    validate_layer_map({0: 0, 12: 8, 24: 16}, 24, 16, "ok")  # inner:inner and last:last
    with pytest.raises(ValueError, match=r"'Llama-360M'.*pair 24: 15 .*after the final norm.*24: 16"):
        validate_layer_map({0: 0, 24: 15}, 24, 16, "Llama-360M")
    with pytest.raises(ValueError, match=r"'GPT2-705M'.*pair 23: 16 .*last hidden_states index"):
        validate_layer_map({23: 16}, 24, 16, "GPT2-705M")


def test_hf_last_hidden_state_is_after_the_final_norm():
    """Why the check above exists: HF appends the normed last state, the inner ones are raw block outputs."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2)).eval()
    ids = torch.randint(0, 50, (1, 6))
    for model, blocks, final_norm in ((llama, llama.model.layers, llama.model.norm),
                                      (gpt2, gpt2.transformer.h, gpt2.transformer.ln_f)):
        raw: list[torch.Tensor] = []
        hook = blocks[-1].register_forward_hook(lambda _m, _i, out: raw.append(out[0] if isinstance(out, tuple) else out))
        with torch.no_grad():
            states = model(ids, output_hidden_states=True).hidden_states
        hook.remove()
        assert len(states) == 3
        torch.testing.assert_close(states[-1], final_norm(raw[0]))
        assert not torch.allclose(states[-1], raw[0])


def test_combine_sums_only_weighted_terms_and_requires_them():
    weights = LossWeightsConfig(ce=0.5, kl=0.5, aux=0.1)
    values = {"ce": 2.0, "kl": 4.0, "aux": 10.0, "hidden": float("nan")}
    terms = {name: torch.tensor(value) for name, value in values.items()}
    assert combine(terms, weights).item() == pytest.approx(0.5 * 2 + 0.5 * 4 + 0.1 * 10)
    with pytest.raises(ValueError, match=r"\['kl'\] have a positive weight but were not computed"):
        combine({"ce": torch.tensor(1.0), "aux": torch.tensor(1.0)}, weights)


def test_combine_accepts_any_object_with_the_term_weights():
    config_weights = SimpleNamespace(ce=0.5, kl=0.5, hidden=0.0, contrastive=0.1, aux=0.0)
    terms = {"ce": torch.tensor(2.0), "kl": torch.tensor(4.0), "contrastive": torch.tensor(3.0)}
    assert combine(terms, config_weights).item() == pytest.approx(0.5 * 2 + 0.5 * 4 + 0.1 * 3)
    with pytest.raises(ValueError, match="all loss weights are zero"):
        combine(terms, SimpleNamespace(ce=0.0, kl=0.0, hidden=0.0, contrastive=0.0, aux=0.0))
    with pytest.raises(ValueError, match=r"unknown loss term\(s\) \['mse'\]"):
        combine({**terms, "mse": torch.tensor(1.0)}, config_weights)


def test_distillation_modules_register_parameters_for_optimizer_and_checkpoint():
    projections = HiddenStateProjections([8, 2], 4, [{0: 0, 6: 4}, uniform_layer_map(3, 4)])
    contrastive = HiddenStateProjections([8, 2], 4, last_layer_maps([6, 3], 4))
    modules = DistillationModules({"projections": projections, "contrastive_projections": contrastive,
                                   "aux_heads": AuxiliaryHeads(4, 5, [1, 2])})
    expected = (2 * (4 * 8 + 8) + 4 * (2 * 4 + 4)) + (4 * 8 + 8) + (2 * 4 + 4) + 2 * (4 + 4 + 4 * 5)
    optimizer = torch.optim.SGD(modules.parameters(), lr=0.1)
    assert sum(p.numel() for group in optimizer.param_groups for p in group["params"]) == expected
    state = modules.state_dict()
    assert "projections.per_teacher.0.t6_s4.weight" in state and "aux_heads.heads.2.1.weight" in state
    restored = DistillationModules({
        "projections": HiddenStateProjections([8, 2], 4, [{0: 0, 6: 4}, uniform_layer_map(3, 4)]),
        "contrastive_projections": HiddenStateProjections([8, 2], 4, last_layer_maps([6, 3], 4)),
        "aux_heads": AuxiliaryHeads(4, 5, [1, 2]),
    })
    restored.load_state_dict(state)
    assert all(torch.equal(state[key], value) for key, value in restored.state_dict().items())
    assert list(DistillationModules().parameters()) == []
