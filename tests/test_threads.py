"""CPU threads wait passively at OpenMP barriers, so one busy neighbour on a 2-core machine does not
make every training step wait for a descheduled thread (benchmarks/bench_cpu_contention.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from babykd import REPO_ROOT

#: Records OMP_WAIT_POLICY at the moment torch is first imported (libgomp reads it then), then imports the module.
SPY = """
import os, sys
seen = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
sys.meta_path.insert(0, Spy())
import {module}
print(seen)
"""


@pytest.mark.parametrize(("module", "user_value", "expected"), [
    ("train", None, "PASSIVE"),  # every entry point imports babykd before torch
    ("babykd, torch", "ACTIVE", "ACTIVE"),  # a policy the user set is kept
])
def test_passive_openmp_wait_policy_is_set_before_torch_loads(
    module: str, user_value: str | None, expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if user_value:
        env["OMP_WAIT_POLICY"] = user_value
    done = subprocess.run([sys.executable, "-c", SPY.format(module=module)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip().splitlines()[-1] == f"[{expected!r}]"

