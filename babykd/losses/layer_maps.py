"""Teacher-layer → student-layer maps for hidden-state distillation.

Indices are positions in HF ``output_hidden_states`` tuples: index 0 is the
embedding output, index i (1..n_layers-1) the raw output of transformer block i,
and index n_layers (``hidden_states[-1]``) the output of the LAST block AFTER the
model's final norm (HF Llama and GPT-2 both apply ``norm`` / ``ln_f`` before
appending it). A model with n layers has valid indices 0..n inclusive.

So the last index lives on a different scale from every other one: inner
block outputs of a pre-norm transformer grow with depth, the last is
normalised. A pair matching a last index with an inner one asks an MSE to
equate a normalised state with an un-normalised one, which is why
:func:`validate_layer_map` refuses it (last:last and inner:inner are fine).
"""

from __future__ import annotations

from typing import Mapping, Sequence

#: The maps of the published DSKD code for a 16-layer student.  They stop at
#: teacher index 23 and student index 15, i.e. they never use the final block
#: (index 24 / 16 under the hidden_states convention) — kept verbatim.
PUBLISHED_LAYER_MAPS: Mapping[str, Mapping[int, int]] = {
    "Llama-360M": {0: 0, 3: 1, 6: 3, 9: 5, 12: 7, 15: 9, 18: 11, 21: 13, 23: 15},
    "GPT2-705M": {0: 0, 3: 2, 6: 4, 9: 6, 12: 8, 15: 10, 18: 12, 21: 14, 23: 15},
}


def uniform_layer_map(n_teacher_layers: int, n_student_layers: int) -> dict[int, int]:
    """An evenly spaced map used when a teacher has no explicit one.

    Rule: with ``m = min(n_teacher_layers, n_student_layers)`` there are m + 1
    pairs, ``k = 0..m``, mapping teacher index ``round(k·n_teacher/m)`` to student
    index ``round(k·n_student/m)`` (halves rounded up).  So 0:0 (embeddings) and
    last:last are always included, both sides are strictly increasing, and the
    deeper model's layers are sampled evenly while every layer of the shallower
    one is used exactly once.
    """
    for name, count in (("n_teacher_layers", n_teacher_layers), ("n_student_layers", n_student_layers)):
        if count < 1:
            raise ValueError(f"{name} must be >= 1, got {count}")
    pairs = min(n_teacher_layers, n_student_layers)
    return {
        _round_half_up(k * n_teacher_layers, pairs): _round_half_up(k * n_student_layers, pairs)
        for k in range(pairs + 1)
    }


def last_layer_maps(n_teacher_layers: Sequence[int], n_student_layers: int) -> list[dict[int, int]]:
    """One ``{last: last}`` map per teacher: the single pair the contrastive term projects."""
    return [{n: n_student_layers} for n in n_teacher_layers]


def validate_layer_map(
    layer_map: Mapping[int, int], n_teacher_layers: int, n_student_layers: int, teacher_name: str
) -> None:
    """Raise ValueError naming `teacher_name` and the bad index if `layer_map` does not fit the models."""
    if not layer_map:
        raise ValueError(f"layer map for teacher {teacher_name!r} is empty")
    for teacher_layer, student_layer in layer_map.items():
        for side, index, n_layers in (
            ("teacher", teacher_layer, n_teacher_layers),
            ("student", student_layer, n_student_layers),
        ):
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= n_layers:
                raise ValueError(
                    f"layer map for teacher {teacher_name!r}: {side} layer {index!r} (in pair "
                    f"{teacher_layer!r}: {student_layer!r}) is out of range: the {side} has {n_layers} "
                    f"layers, so valid hidden_states indices are the integers 0..{n_layers}"
                )
        if (teacher_layer == n_teacher_layers) != (student_layer == n_student_layers):
            raise ValueError(
                f"layer map for teacher {teacher_name!r}: pair {teacher_layer}: {student_layer} matches a last "
                f"hidden_states index (after the final norm) with an inner one (a raw block output); map "
                f"last to last ({n_teacher_layers}: {n_student_layers}) or inner to inner"
            )


def _round_half_up(numerator: int, denominator: int) -> int:
    """``round(numerator / denominator)`` with halves up, in exact integer arithmetic."""
    return (2 * numerator + denominator) // (2 * denominator)
