"""All-reduce of host values (word counts, the preemption flag) without touching the accelerator.

These values are Python ints on every process. Reducing them as a device tensor
and reading the result back (``.item()``) would make the host wait for the
device to finish all the work queued so far: a host-device sync in every step.
Reduced on a CPU (gloo) process group beside the training one, they cost a
small network round trip and leave the device's queue alone.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist

#: (the default group it was made for, the host group): a new default group gets a new host group.
_cached: tuple[dist.ProcessGroup, dist.ProcessGroup | None] | None = None


def host_group() -> dist.ProcessGroup | None:
    """A gloo group over all processes (None: the default group, when it is gloo already).

    Created once per default group, lazily, by every process at the same call (a collective).
    """
    global _cached
    world = dist.distributed_c10d._get_default_group()
    if _cached is None or _cached[0] is not world:
        _cached = (world, None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo"))
    return _cached[1]


def host_all_reduce(values: Sequence[int], op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> list[int]:
    """`values` reduced elementwise over all processes, on the host."""
    tensor = torch.tensor(list(values), dtype=torch.int64)
    dist.all_reduce(tensor, op=op, group=host_group())
    return [int(v) for v in tensor.tolist()]
