"""babykd: knowledge-distillation pretraining for the BabyLM strict-small setting.

All logic lives in this package; `train.py`, `distill.py` and `dskd_noaux.py`
at the repository root are thin entry points over it.

Importing it sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already
sets a policy. Why: with OpenMP's default spin-waiting, two CPU threads on a
2-core machine shared with ONE other busy process wait at every parallel
region's barrier for a thread the kernel has descheduled: a training step of the
tests' tiny Llama took 2-3 s instead of 0.05-0.16 s, while on a quiet machine the
two policies are equally fast (benchmarks/bench_cpu_contention.py). libgomp reads the
variable when torch loads, so this must run before torch is imported: every
entry point imports this package first. GPU training is unaffected.

It also sets ``THP_MEM_ALLOC_ENABLE=1`` (unless set): PyTorch's CPU allocator then
backs allocations of 2 MB and more with transparent huge pages (where the kernel's
THP mode is ``madvise`` or ``always``). Why: a step's vocabulary-sized buffers (the
logits, each loss's fp32 gradient: 65 MB at 32 x 128 x 4,000) are fresh memory every
step, and touching them page by page costs more than the arithmetic: the CE plus the
cached KL's forward and backward at those shapes took 0.144 s with 4 KB pages and
0.066 s with huge pages (one thread, the same process). c10 reads the variable at its
first allocation, so it too is set before torch is imported. Set it to 0 to opt out.
"""

import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"

#: The repository checkout this package lives in (relative config paths resolve here).
REPO_ROOT = Path(__file__).resolve().parent.parent
