"""Run and model configuration: typed dataclasses loaded from YAML, validated on load.

Configs are data. Every run config composes a model config (a path to a file in
``config/models/`` or an inline mapping) with data, training, output and
optionally distillation and evaluation settings. Loading checks every key and
type and names the file and the dotted key in the error, so a typo like
``trainig.lr`` fails before any compute is spent.

Paths: relative paths written in a YAML file resolve against the repository
root (so the configs work from any working directory); relative paths given on
the command line with ``--set`` resolve against the working directory, as a
shell user expects. ``~`` and ``$VARS`` are expanded in both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from babykd import REPO_ROOT
from babykd.errors import ConfigError
from babykd.losses.terms import REGISTRY as LOSS_TERMS, TEACHER_HIDDEN, TEACHER_LOGITS, weighted_terms


#: What `output.name` may be: one path component (see OutputConfig).
RUN_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _path_field(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A dataclass field holding a filesystem path (resolved on load)."""
    metadata = {"path": True}
    if default is dataclasses.MISSING:
        return field(metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


@dataclass
class ModelConfig:
    """Architecture of a GPT-2 or Llama causal LM (HF classes).

    `d_ff` is the feed-forward width (GPT-2's `n_inner`, Llama's
    `intermediate_size`); `name` should carry the parameter count, which a test
    checks against the built model at vocab 16000.
    """

    name: str
    architecture: Literal["gpt2", "llama"]
    n_layer: int
    n_head: int
    d_model: int
    d_ff: int
    vocab_size: int = 16000
    max_position_embeddings: int = 256
    n_kv_head: int | None = None
    tie_word_embeddings: bool | None = None
    dropout: float = 0.0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def validate(self, where: str) -> None:
        for key in ("n_layer", "n_head", "d_model", "d_ff", "vocab_size", "max_position_embeddings"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{where}: model.{key} must be positive, got {getattr(self, key)}")
        if self.d_model % self.n_head:
            raise ConfigError(
                f"{where}: model.d_model ({self.d_model}) must be divisible by model.n_head ({self.n_head})"
            )
        if self.n_kv_head is not None and (self.n_kv_head <= 0 or self.n_head % self.n_kv_head):
            raise ConfigError(
                f"{where}: model.n_kv_head ({self.n_kv_head}) must be a positive divisor of model.n_head ({self.n_head})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{where}: model.dropout must be in [0, 1), got {self.dropout}")
        for key in ("rope_theta", "norm_eps"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{where}: model.{key} must be positive, got {getattr(self, key)}")


@dataclass
class DataConfig:
    """Where the corpus is and how it becomes fixed-length token chunks.

    `tokenizer_dir` and `cache_dir` default to folders under the output root
    named by corpus and vocabulary, so teachers and students trained on the
    same corpus share one tokenizer (distillation requires it).
    """

    corpus: str = _path_field()
    tokenizer_dir: str | None = _path_field(None)
    cache_dir: str | None = _path_field(None)
    vocab_size: int = 16000
    min_frequency: int = 2
    seq_length: int = 128
    document_boundaries: Literal["eos", "none"] = "eos"
    random_offset: bool = False
    eval_chunks: int = 256
    #: For a `datasets` corpus (``hf://datasets/OWNER/NAME`` or a parquet folder): the text column, and
    #: the column naming each row's BabyLM source (its cleaner is applied; null: plain cleaning).
    text_column: str = "text"
    source_column: str | None = "source"
    #: For a plain-text corpus: one document per line, ``<s> ... </s>`` documents, or ``auto``
    #: (tagged when a file starts with ``<s>``).
    doc_format: Literal["auto", "lines", "tagged"] = "auto"

    def validate(self, where: str) -> None:
        if self.seq_length < 2:
            raise ConfigError(f"{where}: data.seq_length must be at least 2, got {self.seq_length}")
        if self.vocab_size < 259:
            raise ConfigError(f"{where}: data.vocab_size must be at least 259 (256 bytes + 3 specials)")
        if self.min_frequency < 1 or self.eval_chunks < 1:
            raise ConfigError(f"{where}: data.min_frequency and data.eval_chunks must be >= 1")


@dataclass
class TrainingConfig:
    """Optimisation settings. `batch_size` is the GLOBAL batch in sequences.

    The per-device micro-batch and gradient accumulation are derived from the
    number of processes (see :func:`derive_batch_layout`), so a recipe means
    the same on 1 or 8 GPUs.
    """

    lr: float
    batch_size: int
    epochs: float = 1.0
    max_steps: int = -1
    per_device_batch_size: int | None = None
    warmup_steps: int = 0
    scheduler: Literal["cosine", "linear", "constant_with_warmup", "constant"] = "cosine"
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float | None = 1.0  #: 0 or null: no clipping
    seed: int = 0
    logging_steps: int = 50
    eval_steps: int | None = None
    save_steps: int = 500
    save_total_limit: int | None = 2  #: null: keep every checkpoint
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    torch_compile: bool = False
    dataloader_workers: int = 0
    progress_bar: bool = True
    #: Save the student at these words seen (``<run>/revisions/chck_*``): a list, or ``babylm``
    #: for the track's official schedule (1M ... 10M, 20M ... 100M for strict-small).
    checkpoint_words: list[int] | Literal["babylm"] | None = None

    def validate(self, where: str) -> None:
        if self.lr <= 0:
            raise ConfigError(f"{where}: training.lr must be positive, got {self.lr}")
        if self.batch_size <= 0:
            raise ConfigError(f"{where}: training.batch_size must be positive, got {self.batch_size}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ConfigError(f"{where}: set training.epochs > 0 or training.max_steps > 0")
        if self.per_device_batch_size is not None and self.per_device_batch_size <= 0:
            raise ConfigError(f"{where}: training.per_device_batch_size must be positive")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ConfigError(f"{where}: training.warmup_steps and training.weight_decay must be >= 0")
        if isinstance(self.checkpoint_words, list) and not all(m > 0 for m in self.checkpoint_words):
            raise ConfigError(f"{where}: training.checkpoint_words must be positive word counts, got {self.checkpoint_words}")
        for key in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"{where}: training.{key} must be in [0, 1), got {getattr(self, key)}")
        if self.adam_epsilon <= 0:
            raise ConfigError(f"{where}: training.adam_epsilon must be positive, got {self.adam_epsilon}")
        if self.max_grad_norm is not None and self.max_grad_norm < 0:
            raise ConfigError(
                f"{where}: training.max_grad_norm must be >= 0 or null (no clipping), got {self.max_grad_norm}"
            )
        # 0 steps would silently mean "never" to the Trainer: no log, no checkpoint to resume from.
        _at_least_one(where, "training", logging_steps=self.logging_steps, save_steps=self.save_steps,
                      eval_steps=self.eval_steps, save_total_limit=self.save_total_limit)
        if self.dataloader_workers < 0:
            raise ConfigError(f"{where}: training.dataloader_workers must be >= 0, got {self.dataloader_workers}")


def _weights_class() -> type:
    """One float field per registered loss term (its default weight): the keys of ``distillation.weights``."""
    fields = [(term.name, float, field(default=term.default_weight)) for term in LOSS_TERMS.values()]
    cls = dataclasses.make_dataclass("LossWeightsConfig", fields)
    cls.__module__, cls.__doc__ = __name__, "Weights of the named loss terms (`babykd.losses.terms`)."
    return cls


LossWeightsConfig = _weights_class()


@dataclass
class DistillationSettings:
    """Teachers and the settings every logit term shares; each term's own fields are added from its module.

    `kl_normalization: reference` reproduces the published code's
    `KLDivLoss(reduction="batchmean")` over [batch, seq, vocab], whose KL term
    is ~seq_length times the per-token value; configs that reproduce a
    published recipe use it so their weights mean what they meant there.
    """

    teachers: list[str] = _path_field()
    weights: LossWeightsConfig = field(default_factory=LossWeightsConfig)  # type: ignore[valid-type]
    temperature: float = 2.0
    combine: Literal["logits", "probs"] = "logits"
    kl_normalization: Literal["token", "reference"] = "token"
    #: Offline KD: compute the teachers' top-k soft targets once and reuse them every epoch
    #: (None: teachers run at every step). Logit terms only; see babykd.teacher_cache.
    teacher_cache_top_k: int | None = None
    #: Offline KD without loss: cache what each teacher's output head reads and recompute the logits at
    #: every step (exact up to float16 rounding, 2·Σ d_model bytes a position; see babykd.teacher_cache).
    teacher_cache_head_inputs: bool = False
    teacher_cache_dir: str | None = _path_field(None)  #: default: <data cache dir>/teachers
    #: Each weighted term's share of the student's gradient at the first, middle and last step,
    #: logged and kept in <run>/term_shares.json (babykd.losses.shares): does a term reach the update?
    log_term_shares: bool = True

    def validate(self, where: str) -> None:
        if not self.teachers:
            raise ConfigError(f"{where}: distillation.teachers must list at least one teacher checkpoint")
        weights = dataclasses.asdict(self.weights)
        negative = [k for k, v in weights.items() if v < 0]
        if negative:
            raise ConfigError(f"{where}: distillation.weights.{negative[0]} must be >= 0")
        if not any(weights.values()):
            raise ConfigError(f"{where}: distillation.weights are all zero: nothing to train on")
        if self.temperature <= 0:
            raise ConfigError(f"{where}: distillation.temperature must be positive")
        for term in LOSS_TERMS.values():
            if term.validate is not None:
                term.validate(self, where)
        if self.uses_teacher_cache:
            self._validate_cache(where)

    @property
    def uses_teacher_cache(self) -> bool:
        """Whether the teachers' soft targets come from a cache built once (either representation)."""
        return self.teacher_cache_top_k is not None or self.teacher_cache_head_inputs

    def _validate_cache(self, where: str) -> None:
        """The cache holds soft targets only: every weighted term must be satisfied by them."""
        if self.teacher_cache_top_k is not None and self.teacher_cache_head_inputs:
            raise ConfigError(f"{where}: distillation.teacher_cache_top_k and teacher_cache_head_inputs are two "
                              "representations of one cache: set one of them")
        if self.teacher_cache_top_k is not None and self.teacher_cache_top_k < 1:
            raise ConfigError(f"{where}: distillation.teacher_cache_top_k must be >= 1 (or null: no cache)")
        key = "teacher_cache_head_inputs" if self.teacher_cache_head_inputs else "teacher_cache_top_k"
        # A head-input cache gives back the teachers' logits; neither gives their hidden states.
        unavailable = {TEACHER_HIDDEN} if self.teacher_cache_head_inputs else {TEACHER_LOGITS, TEACHER_HIDDEN}
        for term in weighted_terms(self.weights):
            live = term.needs_for(self) & unavailable
            if live:
                raise ConfigError(
                    f"{where}: distillation.{key} caches soft targets only, but "
                    f"distillation.weights.{term.name} > 0 needs the {' and '.join(sorted(live))} at every step"
                )


def _distillation_class() -> type:
    """`DistillationSettings` plus the config fields each loss term declares (flat keys under ``distillation``)."""
    options = [spec for term in LOSS_TERMS.values() for spec in term.options]
    clash = sorted({name for name, _, _ in options} & {f.name for f in dataclasses.fields(DistillationSettings)})
    if clash:
        raise RuntimeError(f"loss-term config fields {clash} shadow distillation settings")
    cls = dataclasses.make_dataclass("DistillationConfig", options, bases=(DistillationSettings,))
    cls.__module__ = __name__
    cls.__doc__ = (f"{(DistillationSettings.__doc__ or '').rstrip()}\n\n    Term fields: "
                   + "; ".join(f"{name} ({spec.metadata['doc']})" for name, _, spec in options) + ".")
    return cls


DistillationConfig = _distillation_class()


def _at_least_one(where: str, section: str, **values: int | None) -> None:
    """Each of `values` (unset: None) must be >= 1."""
    for key, value in values.items():
        if value is not None and value < 1:
            raise ConfigError(f"{where}: {section}.{key} must be >= 1, got {value}")


@dataclass
class EvaluationConfig:
    """Zero-shot minimal-pair scoring during training (a fast subset)."""

    tasks: list[str] = field(default_factory=lambda: ["blimp_filtered"])
    data_dir: str | None = _path_field(None)
    every_n_steps: int | None = None
    each_epoch: bool = True
    max_items_per_subtask: int | None = 200

    def validate(self, where: str) -> None:
        from babykd.evaluation.tasks import TASK_FOLDERS  # the evaluation package imports torch

        for index, task in enumerate(self.tasks):
            if task not in TASK_FOLDERS and not Path(task).is_dir():
                raise ConfigError(
                    f"{where}: evaluation.tasks[{index}]: unknown task {task!r}: not one of "
                    f"{', '.join(TASK_FOLDERS)} and not a directory of JSONL files"
                )
        _at_least_one(where, "evaluation", every_n_steps=self.every_n_steps,
                      max_items_per_subtask=self.max_items_per_subtask)


@dataclass
class RulesConfig:
    """Which BabyLM track a run belongs to (see `babykd.rules`): its words-seen cap and checkpoint schedule.

    ``track: null`` takes the track from the training corpus's size; ``none`` lifts every cap.
    """

    track: Literal["strict-small", "strict", "none"] | None = None


@dataclass
class OutputConfig:
    """Where a run writes: `<root>/<name>/` (named by the run, never by a timestamp).

    The name is one path component of safe characters: an empty name would write the run
    into the output root itself, and ``..`` or ``/`` would write it elsewhere.
    """

    name: str
    root: str = _path_field(str(REPO_ROOT / "models"))

    def validate(self, where: str) -> None:
        if not RUN_NAME.fullmatch(self.name) or self.name in (".", ".."):
            raise ConfigError(
                f"{where}: output.name must be one folder name of letters, digits, '.', '_' and '-', got {self.name!r}"
            )

    @property
    def run_dir(self) -> Path:
        return Path(self.root) / self.name


@dataclass
class RunConfig:
    """One training run: a model, data, optimisation, output, and optional teachers."""

    model: ModelConfig
    data: DataConfig
    training: TrainingConfig
    output: OutputConfig
    distillation: DistillationConfig | None = None
    evaluation: EvaluationConfig | None = None
    rules: RulesConfig = field(default_factory=RulesConfig)
    source: str = field(default="<dict>", metadata={"internal": True})

    def validate(self) -> None:
        for part in (self.model, self.data, self.training, self.distillation, self.evaluation, self.output):
            if part is not None:
                part.validate(self.source)
        if self.data.seq_length > self.model.max_position_embeddings:
            raise ConfigError(
                f"{self.source}: data.seq_length ({self.data.seq_length}) exceeds "
                f"model.max_position_embeddings ({self.model.max_position_embeddings})"
            )
        cached = self.distillation is not None and self.distillation.uses_teacher_cache
        if cached and self.data.random_offset:
            raise ConfigError(
                f"{self.source}: data.random_offset must be false with a teacher cache "
                "(distillation.teacher_cache_top_k / teacher_cache_head_inputs: cached targets belong to fixed chunks)"
            )
        if self.data.vocab_size != self.model.vocab_size:
            raise ConfigError(
                f"{self.source}: data.vocab_size ({self.data.vocab_size}) differs from "
                f"model.vocab_size ({self.model.vocab_size})"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, as written next to every checkpoint (resolved paths)."""
        out = dataclasses.asdict(self)
        out.pop("source")
        return out


# ----------------------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check `value` against the annotation `tp`, converting where YAML is loose (int -> float)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # `X | None`: X's own error ("unknown key ... did you mean") says what is wrong
            return _coerce(value, options[0], key, where)
        for option in options:
            try:
                return _coerce(value, option, key, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {key} must be {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {key} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, Sequence):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping, got {value!r}")
        return {
            _coerce(k, args[0], f"{key} key", where): _coerce(v, args[1], f"{key}.{k}", where)
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping of {tp.__name__} settings, got {value!r}")
        return _build(tp, value, key, where)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string; users mean a number
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        if not math.isfinite(value):  # .inf/.nan pass every "> 0" check and train an all-NaN model
            raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if tp is str:
        # An int reads back as written; a float would not (1e3 -> "1000.0", 1.50 -> "1.5"): quote it.
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be a string, got {value!r} (quote it)")
        return str(value)
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def _build(cls: type, data: Mapping[str, Any], prefix: str, where: str) -> Any:
    """Instantiate dataclass `cls` from `data`, rejecting unknown keys and missing required ones."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{_join(prefix, close[0])}'?)" if close else ""
            raise ConfigError(
                f"{where}: unknown key '{_join(prefix, key)}'{hint}; expected one of {sorted(fields)}"
            )
    kwargs = {}
    for name, f in fields.items():
        dotted = _join(prefix, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing required key '{dotted}' ({_type_name(hints[name])})")
            continue
        kwargs[name] = _coerce(data[name], hints[name], dotted, where)
    return cls(**kwargs)


def dataclass_from_mapping(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """Validate `data` against dataclass `cls` (unknown/missing keys, types); errors name `where`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    return _build(cls, data, "", where)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


# ----------------------------------------------------------------------------- paths


def _resolve_path(value: str, base: Path) -> str:
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value):  # a URL such as hf://datasets/OWNER/NAME
        return value
    expanded = os.path.expanduser(os.path.expandvars(value))
    path = Path(expanded)
    return str(path if path.is_absolute() else (base / path).resolve())


def _path_keys(cls: type, prefix: str = "") -> set[str]:
    """Dotted keys of every path-valued field below dataclass `cls`."""
    keys: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        dotted = _join(prefix, f.name)
        if f.metadata.get("path"):
            keys.add(dotted)
        inner = [a for a in (typing.get_args(hints[f.name]) or (hints[f.name],)) if dataclasses.is_dataclass(a)]
        for sub in inner:
            keys |= _path_keys(sub, dotted)
    return keys


_RUN_PATH_KEYS = _path_keys(RunConfig)


def _resolve_paths(raw: dict[str, Any], base: Path, only: set[str] | None = None) -> None:
    """Resolve the path-valued keys of the raw run dict in place against `base`."""
    for dotted in _RUN_PATH_KEYS if only is None else only & _RUN_PATH_KEYS:
        *parents, leaf = dotted.split(".")
        node: Any = raw
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or node.get(leaf) is None:
            continue
        value = node[leaf]
        if isinstance(value, list):
            node[leaf] = [_resolve_path(v, base) if isinstance(v, str) else v for v in value]
        elif isinstance(value, str):
            node[leaf] = _resolve_path(value, base)


# ----------------------------------------------------------------------------- loading


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_model_config(path: str | os.PathLike) -> ModelConfig:
    """Load and validate one architecture file from ``config/models/``."""
    model = _build(ModelConfig, read_yaml(path), "", str(path))
    model.validate(str(path))
    return model


#: Sections that may be given as a path to a YAML file holding just that section.
_SECTIONS = ("model", "data", "training", "distillation", "evaluation", "rules")


def _inline_sections(raw: dict[str, Any], where: str, base: Path) -> None:
    """Replace `section: path.yaml` references by the file's mapping (so `--set model.x=` still works)."""
    for section in _SECTIONS:
        value = raw.get(section)
        if isinstance(value, str):
            section_path = Path(_resolve_path(value, base))
            try:
                raw[section] = read_yaml(section_path)
            except ConfigError as error:
                raise ConfigError(f"{where}: {section}: {error}") from error


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """Parse ``key.sub=value`` strings; values are YAML scalars/lists (``1e-4``, ``true``, ``[1,2]``)."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. training.lr=1e-4")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {pair!r}: value is not valid YAML: {error}") from error
        # "1e-4" stays the string YAML reads: a number setting takes it as one, a name keeps it as written.
        overrides[key.strip()] = value
    return overrides


def _apply_override(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{part}' is not a section")
        node = child
    node[leaf] = value


def load_run_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> RunConfig:
    """Load a run config, apply ``--set`` overrides, resolve paths and validate everything.

    Raises:
        ConfigError: naming the file and dotted key of the first problem found.
    """
    where = str(path)
    raw = read_yaml(path)
    parsed = parse_overrides(overrides)
    # A whole section swapped on the command line (`--set model=my.yaml`) is a path relative to cwd.
    for section in _SECTIONS:
        if isinstance(parsed.get(section), str):
            raw[section] = _resolve_path(parsed.pop(section), Path.cwd())
    _inline_sections(raw, where, REPO_ROOT)
    _resolve_paths(raw, REPO_ROOT)
    for dotted, value in parsed.items():
        _apply_override(raw, dotted, value)
    _resolve_paths(raw, Path.cwd(), only=set(parsed))
    config = _build(RunConfig, raw, "", where)
    config.source = where
    config.validate()
    return config


def run_config_from_dict(raw: Mapping[str, Any], where: str = "<dict>") -> RunConfig:
    """Build a validated run config from an in-memory mapping (paths relative to the working directory)."""
    data = yaml.safe_load(yaml.safe_dump(dict(raw)))  # deep copy as plain data
    _inline_sections(data, where, Path.cwd())
    _resolve_paths(data, Path.cwd())
    config = _build(RunConfig, data, "", where)
    config.source = where
    config.validate()
    return config


def plain_config(config: RunConfig) -> dict[str, Any]:
    """`config` as its saved ``run_config.yaml`` reads back (int dict keys, lists), to compare with a saved one."""
    return yaml.safe_load(yaml.safe_dump(config.to_dict(), sort_keys=False))


def saved_run_config(path: str | os.PathLike) -> dict[str, Any]:
    """A saved ``run_config.yaml`` as plain data, keys added to the config since filled in with their defaults.

    Why the defaults: a run started by an older version, resumed by this one, has not changed
    its config because a new setting appeared. A saved config this version cannot read (a key
    since removed) is returned as saved, so that a comparison lists the difference.
    """
    saved = read_yaml(path)
    try:
        return plain_config(_build(RunConfig, saved, "", str(path)))
    except ConfigError:
        return saved


def config_differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """The dotted keys at which two plain-data configs differ (a key missing on one side differs); [] if equal."""
    if isinstance(saved, dict) and isinstance(current, dict):
        keys = list(saved) + [key for key in current if key not in saved]
        return [
            found for key in keys
            for found in config_differences(saved.get(key), current.get(key), _join(prefix, key))
        ]
    return [] if saved == current else [prefix or "<root>"]


@dataclass(frozen=True)
class BatchLayout:
    """How a global batch is split: micro-batch per device x devices x accumulation steps."""

    per_device: int
    accumulation: int
    world_size: int


def derive_batch_layout(training: TrainingConfig, world_size: int | None = None) -> BatchLayout:
    """Split the global batch over `world_size` processes (default: $WORLD_SIZE or 1).

    The micro-batch is the largest divisor of the per-process share that does
    not exceed `per_device_batch_size`, so the effective batch is exactly the
    configured global batch.
    """
    world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    if training.batch_size % world:
        raise ConfigError(
            f"training.batch_size ({training.batch_size}) is not divisible by the number of processes ({world})"
        )
    share = training.batch_size // world
    cap = min(training.per_device_batch_size or share, share)
    per_device = max(d for d in range(1, cap + 1) if share % d == 0)
    return BatchLayout(per_device=per_device, accumulation=share // per_device, world_size=world)
