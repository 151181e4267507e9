#!/usr/bin/env bash
# Stop the local test cluster started by setup_local_slurm.sh (same BABYKD_SLURM_* variables).
# Kept as a separate script so "stop" is discoverable next to "setup".
exec bash "$(dirname "$0")/setup_local_slurm.sh" --stop
