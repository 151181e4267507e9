"""Host-value all-reduce: a CPU (gloo) group beside the training group, made once, reducing Python ints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.distributed as dist

from babykd.run import host_collective


@pytest.fixture
def single_process_group(tmp_path: Path):
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_beside_a_device_backend_a_gloo_group_is_made_once(single_process_group, monkeypatch) -> None:
    monkeypatch.setattr(dist, "get_backend", lambda *a, **k: "nccl")  # as in a CUDA run
    group = host_collective.host_group()
    assert isinstance(group, dist.ProcessGroup) and host_collective.host_group() is group
    assert host_collective.host_all_reduce([3, 4]) == [3, 4]
    assert host_collective.host_all_reduce([1], op=dist.ReduceOp.MAX) == [1]


def test_on_a_gloo_run_the_default_group_serves(single_process_group) -> None:
    """Also: a new default group (here, after the previous test's) is not served the old host group."""
    assert host_collective.host_group() is None
    assert host_collective.host_all_reduce([5]) == [5]
