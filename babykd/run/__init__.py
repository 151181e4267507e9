"""Run infrastructure: what keeps a training or evaluation job's folder safe, resumable and explained.

One job per module, none of them about models or losses:
``atomic`` (whole-file writes that never leave half a file), ``lock`` (one flock per folder or
file), ``start`` (fresh start, resume or refusal), ``preemption`` (a signal becomes a checkpoint
and an exit code SLURM requeues), ``provenance`` (what produced a run: code, data, config,
versions), ``lineage`` (the words the teachers saw), ``divergence`` (a NaN stops the run, with
why), ``words_seen`` (the challenge's word ledger), ``checkpoints`` (complete checkpoints and
their rotation), ``host_collective`` (a host value agreed across processes).
"""
