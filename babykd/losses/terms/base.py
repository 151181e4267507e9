"""What a loss term is: its name, the inputs it reads, its config fields, its module and its function.

A term module builds one `LossTerm` and calls it ``TERM``. The trainer reads `needs_for` to decide
which forwards a step runs (student hidden states, teacher logits or hidden states, the cache's
targets), runs each forward once, hands every term the same `StepTensors`, and sums the results
through `babykd.losses.combine`. Terms stay pure: no weights, no logging, no optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from torch import Tensor, nn

#: The inputs a term may need, besides the student's logits and the labels (always there).
STUDENT_HIDDEN = "student hidden states"
TEACHER_LOGITS = "teacher logits"
TEACHER_HIDDEN = "teacher hidden states"
CACHED_TARGETS = "cached teacher targets"


@dataclass
class StepTensors:
    """One training micro-batch's tensors, as every term reads them (None: not asked for by any term).

    Teacher tensors are detached constants; the student's keep their graph.
    """

    student_logits: Tensor
    labels: Tensor
    attention_mask: Tensor | None = None
    student_hidden: Sequence[Tensor] | None = None
    teacher_logits: Sequence[Tensor] | None = None
    teacher_hidden: Sequence[Sequence[Tensor]] | None = None
    cached_ids: Tensor | None = None
    cached_log_probs: Tensor | None = None
    #: The run's `DistillationConfig` (None when pretraining: only terms that need no settings run).
    distillation: Any = None


@dataclass(frozen=True)
class ModuleContext:
    """What a term's trainable module is sized from: the models' shapes and the run's settings."""

    distillation: Any  # the run's DistillationConfig
    student_layers: int
    student_width: int
    vocab_size: int
    teacher_layers: tuple[int, ...]
    teacher_widths: tuple[int, ...]
    teacher_names: tuple[str, ...]


#: One config field a term owns under ``distillation``: (name, annotation, dataclasses.field(default=...)).
Option = tuple[str, Any, Any]


def option(name: str, annotation: Any, default: Any, doc: str) -> Option:
    """A config field of a term with an immutable `default` and the one line `doc` its readers see."""
    if isinstance(default, (list, dict, set)):
        raise TypeError(f"option {name}: a mutable default would be shared by every config; use None")
    return name, annotation, field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class LossTerm:
    """One named loss term; `name` is also its key under ``distillation.weights``."""

    name: str
    #: The term's unweighted value for one step: (tensors, its own trainable module or None) -> scalar.
    compute: Callable[[StepTensors, nn.Module | None], Tensor]
    #: The inputs it reads (constants from above): a set, or, when they depend on the settings, a function
    #: of the DistillationConfig (None when pretraining) returning it; read it through `needs_for`.
    needs: frozenset[str] | Callable[[Any], frozenset[str]] = frozenset()
    #: Position in the weighted sum (float addition is not associative: the sum's order is fixed).
    order: int = 100
    #: Fields it owns under ``distillation`` (see `option`); flat keys, so recipes read as before.
    options: tuple[Option, ...] = ()
    #: Checks of its fields, run on every distillation config (a check that only matters when the term
    #: is weighted looks at its weight itself): (DistillationConfig, where) -> None or ConfigError.
    validate: Callable[[Any, str], None] | None = None
    #: Its trainable module (projections, heads), built once per run and checkpointed with the student.
    build_module: Callable[[ModuleContext], nn.Module] | None = None
    #: The module's name in the checkpoint's distillation_modules.safetensors (its state-dict prefix).
    module_key: str | None = None
    #: Computed and logged at weight 0 too (the student's CE: comparable across every run).
    always_logged: bool = False
    default_weight: float = 0.0

    def needs_for(self, cfg: Any) -> frozenset[str]:
        """The inputs it reads under distillation settings `cfg` (None when pretraining)."""
        return self.needs(cfg) if callable(self.needs) else self.needs
