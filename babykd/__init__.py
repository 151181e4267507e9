"""babykd: knowledge-distillation pretraining for the BabyLM strict-small setting.

All logic lives in this package; `train.py`, `distill.py` and `dskd_noaux.py`
at the repository root are thin entry points over it.
"""

from pathlib import Path

__version__ = "0.1.0"

#: The repository checkout this package lives in (relative config paths resolve here).
REPO_ROOT = Path(__file__).resolve().parent.parent
