"""Host-device synchronisations inside a training step, counted on the CPU so CI guards them without a GPU.

On a GPU every op that reads a device value on the host (``.item()``, ``nonzero``, a
boolean index whose output size depends on the data) stalls the host until the device
has caught up, so the next kernels cannot be queued while the current ones run. The CPU
has no such stall, but the same aten calls happen there: a dispatch-mode counter sees
them. The step is the real one, built by `run_training` on the tiny configs; steps that
log or save are allowed their reads (they report numbers), every other step must make none.
The offline-KD path (teacher cache) is counted in tests/test_teacher_cache.py, on the run it trains anyway.
"""

from __future__ import annotations

import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import TrainerCallback

from babykd.data.dataset import WORDS_KEY
from test_distillation import RECIPES, recipe_config
from test_training import LLAMA

aten = torch.ops.aten
#: Ops that read a device value on the host, always.
SYNCING = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
           aten.nonzero_static.default}
#: Ops that sync when one of their indices is a boolean mask (the output size depends on the data).
BOOL_INDEXED = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}
#: The step counted: between the end of step 2 and the end of step 3 (logging runs at steps 1 and 5).
COUNTED_STEP = 3


class SyncCounter(TorchDispatchMode):
    """Counts the syncing aten calls made while active, by op name."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.active = False

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if self.active and (func in SYNCING or (func in BOOL_INDEXED and _has_bool_index(args))):
            if not _on_host_by_design():
                self.counts[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


def _on_host_by_design() -> bool:
    """Reads that are host reads on a GPU too, or happen only on the CPU.

    The data loader collates host tensors (in worker processes when there are
    workers); the CPU AdamW reads its step counter on the host, where on a GPU
    `training_arguments` picks the fused AdamW that keeps it on the device (the
    `gpu` test checks that step under `torch.cuda.set_sync_debug_mode("error")`).
    """
    return any(part in frame.filename for frame in traceback.extract_stack()
               for part in ("torch/optim/", "torch/utils/data/"))


def _has_bool_index(args: Any) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


class CountStep(TrainerCallback):
    """Switches the counter on for exactly the window of one optimizer step that neither logs nor saves.

    Also keeps a batch as the run's own data loader collates it (what the model is given).
    """

    def __init__(self, counter: SyncCounter, step: int) -> None:
        self.counter, self.step = counter, step
        self.batch: dict[str, Any] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        loader = kwargs["train_dataloader"]
        self.batch = loader.collate_fn([loader.dataset[i] for i in range(2)])

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.counter.active = state.global_step == self.step - 1


def syncs_in_one_step(config: Any) -> tuple[Counter[str], Any]:
    """The syncing calls of one step of `config`'s run, and the run's result.

    Also checks that the batch it trains on has no mask and its word count is a host int.
    """
    from babykd.training import run_training

    counter = SyncCounter()
    window = CountStep(counter, COUNTED_STEP)
    with counter:
        result = run_training(config, callbacks=[window])
    assert "input_ids" in window.batch and "attention_mask" not in window.batch
    assert isinstance(window.batch.get(WORDS_KEY), int)  # a host value: the ledger reads nothing from the device
    return counter.counts, result


STEPS = ("training.max_steps=4", "training.eval_steps=1000", "training.save_steps=1000")


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_a_distillation_step_reads_nothing_from_the_device(tiny_config, tiny_teachers, recipe: Path) -> None:
    # The three steps that measure the terms' gradient shares read them on the host, as a logging step does.
    config = recipe_config(tiny_config, recipe, f"syncs-{recipe.stem}", tiny_teachers, *STEPS,
                           "distillation.log_term_shares=false")
    counts, _ = syncs_in_one_step(config)
    print(recipe.stem, dict(counts))
    assert not counts, f"{recipe.stem}: host-device syncs in a training step: {dict(counts)}"


def test_a_pretraining_step_reads_nothing_from_the_device(tiny_config) -> None:
    counts, _ = syncs_in_one_step(tiny_config(LLAMA, "syncs-pretrain", *STEPS))
    print("pretrain", dict(counts))
    assert not counts, f"pretraining: host-device syncs in a training step: {dict(counts)}"

