"""Start-up of `python -m babykd.evaluate`: scoring imports neither plotting nor the Trainer callback."""

from __future__ import annotations

import subprocess
import sys


def test_the_evaluate_command_imports_no_plotting_and_no_trainer_callback():
    probe = ("import sys, babykd.evaluate, babykd.evaluation.suite; "
             "print(sorted(m for m in ('matplotlib', 'babykd.evaluation.callback') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
