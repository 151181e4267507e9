"""The (Super)GLUE tasks of the BabyLM 2025 suite: which fields make the input, labels, per-task settings.

Taken from the official pipeline (``evaluation_pipeline/finetune/dataset.py``
and ``eval_finetuning.sh``):

* each example is a pair (A, B) passed to the tokenizer as a text pair; A and
  B join their fields with single spaces unless a template is given (MultiRC:
  ``Question: {question} Answer: {answer}``; WSC: ``Does "{span2}" refer to
  "{span1}" in this passage?``, with the passage as B);
* MNLI has 3 labels and reports accuracy only; every other task has 2 and
  reports accuracy, F1 and MCC;
* the epoch kept is the best on the validation set by accuracy, or by F1 for
  MRPC and QQP; BoolQ and MultiRC train with batch 16, the rest with 32; WSC
  trains for 30 epochs instead of 10;
* training reads ``<task>.train.jsonl``; validation, model selection and the
  submitted predictions all use ``<task>.valid.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from babykd.evaluation.suite_data import SuiteData
from babykd.evaluation.tasks import TaskDataError

GLUE_DIR = "full_eval/glue_filtered"


@dataclass(frozen=True)
class GlueTask:
    name: str
    a_fields: tuple[str, ...]
    b_fields: tuple[str, ...]
    a_template: str | None = None
    num_labels: int = 2
    small_batch: bool = False  # BoolQ and MultiRC: the pipeline's BIG_BSZ (16)
    long_training: bool = False  # WSC: the pipeline's WSC_EPOCHS (30)
    metrics: tuple[str, ...] = ("accuracy", "f1", "mcc")
    metric_for_valid: str = "accuracy"
    #: Predictions the official collate step asserts of the task (its released validation set's lines).
    valid_items: int = field(kw_only=True)

    def file(self, split: str) -> str:
        return f"{GLUE_DIR}/{self.name}.{split}.jsonl"

    def example(self, row: dict) -> tuple[str, str]:
        """The (A, B) text pair of one JSON line."""
        a = [row[f] for f in self.a_fields]
        text_a = self.a_template.format(*a) if self.a_template else " ".join(a)
        return text_a, " ".join(row[f] for f in self.b_fields)


#: In the order the official ``eval_finetuning.sh`` runs them.
GLUE_TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        GlueTask("boolq", ("question",), ("passage",), small_batch=True, valid_items=1635),
        GlueTask("multirc", ("question", "answer"), ("paragraph",), "Question: {} Answer: {}", small_batch=True,
                 valid_items=2424),
        GlueTask("rte", ("sentence1",), ("sentence2",), valid_items=139),
        GlueTask("wsc", ("span2_text", "span1_text"), ("text",), 'Does "{}" refer to "{}" in this passage?',
                 long_training=True, valid_items=52),
        GlueTask("mrpc", ("sentence1",), ("sentence2",), metric_for_valid="f1", valid_items=204),
        GlueTask("qqp", ("question1",), ("question2",), metric_for_valid="f1", valid_items=20215),
        GlueTask("mnli", ("premise",), ("hypothesis",), num_labels=3, metrics=("accuracy",), valid_items=4908),
    )
}


@dataclass(frozen=True)
class GlueSplit:
    """One split's text pairs and labels, with where they came from."""

    pairs: tuple[tuple[str, str], ...]
    labels: np.ndarray
    path: str
    sha256: str

    def __len__(self) -> int:
        return len(self.pairs)


def load_split(suite: SuiteData, task: GlueTask, split: str, max_examples: int | None = None) -> GlueSplit:
    """Read `<task>.<split>.jsonl` (a missing file is `MissingEvalData` naming it); the first `max_examples` only if given."""
    raw = suite.read_bytes(task.file(split))
    where = suite.describe(task.file(split))
    pairs, labels = [], []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pair, label = task.example(row), int(row["label"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise TaskDataError(f"{where}:{number}: not a {task.name} example ({type(exc).__name__}: {exc})") from None
        if not 0 <= label < task.num_labels:
            raise TaskDataError(f"{where}:{number}: label {label} outside 0..{task.num_labels - 1}")
        pairs.append(pair)
        labels.append(label)
        if max_examples is not None and len(pairs) == max_examples:
            break
    if not pairs:
        raise TaskDataError(f"{where}: no examples")
    return GlueSplit(tuple(pairs), np.array(labels, dtype=np.int64), where, hashlib.sha256(raw).hexdigest())
