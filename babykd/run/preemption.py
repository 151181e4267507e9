"""Save-and-exit on SIGTERM / SIGUSR1, the signals SLURM sends before a time limit or preemption.

The signal handler only sets a flag; the callback turns it into "save a
checkpoint now and stop" at the next optimizer-step boundary, where the state is
consistent. The entry point then exits with :data:`PREEMPTED_EXIT_CODE` so a
batch script can `scontrol requeue` the job, and the requeued job continues
with `--resume` from the checkpoint just written.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from babykd.run.host_collective import host_all_reduce

logger = logging.getLogger(__name__)

#: Exit status of a run that saved a checkpoint and stopped because it was asked to.
PREEMPTED_EXIT_CODE = 99
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class PreemptionCallback(TrainerCallback):
    """Checkpoint and stop at the next step after SIGTERM/SIGUSR1."""

    def __init__(self) -> None:
        self.received: int | None = None
        #: Another process of a data-parallel run got the signal (this one must stop with it).
        self.peer_preempted = False
        self._previous: dict[int, Any] = {}

    def install(self) -> "PreemptionCallback":
        for sig in HANDLED_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        logger.warning("received %s: will save a checkpoint and stop after this step", signal.Signals(signum).name)
        self.received = signum

    @property
    def preempted(self) -> bool:
        return self.received is not None or self.peer_preempted

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        if args.world_size > 1:
            # Signals reach the processes at different steps; all must stop at the same one,
            # or the one still training waits forever in its next all-reduce. Reduced on the
            # host: a device flag read back with .item() would sync the GPU every step.
            (flag,) = host_all_reduce([int(self.preempted)], op=torch.distributed.ReduceOp.MAX)
            self.peer_preempted = bool(flag) and self.received is None
        if self.preempted:
            control.should_save = True
            control.should_training_stop = True
        return control
