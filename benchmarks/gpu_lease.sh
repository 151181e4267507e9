#!/usr/bin/env bash
# The GPU lease kit's one entry point (see benchmarks/gpu_lease.py and benchmarks/README.md, "GPU lease").
#   benchmarks/gpu_lease.sh --pack [DIR]          here: copy the kit's data from ../shared into DIR (lease-pack/)
#   benchmarks/gpu_lease.sh OUT_DIR [--smoke ...]  on the GPU machine: all stages -> OUT_DIR/{results.jsonl,summary.md}
#   benchmarks/gpu_lease.sh --reproduce OUT_DIR [--seeds N]   the reproduction -> OUT_DIR/RESULTS.md (~8 min: not in the 15-min lease)
# Uses the machine's own python3 (or $BABYKD_PYTHON); the project is imported from this working tree.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${BABYKD_PYTHON:-python3}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
case "${1:-}" in
  ""|-h|--help) exec "$PY" "$REPO/benchmarks/gpu_lease.py" --help ;;
  --pack) shift; exec "$PY" "$REPO/benchmarks/gpu_lease.py" pack "$@" ;;
  --reproduce) shift; exec "$PY" "$REPO/benchmarks/gpu_lease.py" reproduce "$@" ;;
  *) exec "$PY" "$REPO/benchmarks/gpu_lease.py" run "$@" ;;
esac
