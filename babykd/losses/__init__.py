"""Loss terms for knowledge-distillation pretraining.

All terms take HF-style unshifted tensors (logits ``[B, T, V]``, labels
``[B, T]`` with -100 at ignored positions, hidden_states tuples of
``[B, T, width]``) and return a scalar; weights are applied by the trainer
through :func:`combine` (weights: `babykd.config.LossWeightsConfig`). Each named
term is one module of :mod:`babykd.losses.terms` (what it needs, its config
fields, its trainable module); the functions here are what they compute.
The vocabulary-sized logit terms run through the chunked, fused
implementations of :mod:`babykd.losses.chunked` (same values and gradients,
no fp32 ``[N, V]`` tensors kept for the backward pass).
"""

from babykd.losses.auxiliary import AuxiliaryHeads, auxiliary_classifier_loss
from babykd.losses.chunked import chunked_cross_entropy, chunked_soft_target_kl, compile_chunk_kernels
from babykd.losses.combine import combine
from babykd.losses.hidden import HiddenStateProjections, contrastive_loss, hidden_state_loss
from babykd.losses.layer_maps import (
    PUBLISHED_LAYER_MAPS,
    last_layer_maps,
    uniform_layer_map,
    validate_layer_map,
)
from babykd.losses.logit import (
    combined_teacher_log_probs,
    cross_entropy_loss,
    kl_distillation_loss,
    soft_target_kl_sum,
)
from babykd.losses.modules import DistillationModules
from babykd.losses.positions import IGNORE_INDEX, ScoredPositions, position_rows, scored_positions
from babykd.losses.shares import TERM_SHARES_FILE, TermShareLog, read_term_shares, term_gradient_norms
from babykd.losses.sparse import sparse_kl_distillation_loss, top_k_targets
from babykd.losses.terms import REGISTRY, TERM_NAMES, LossTerm

__all__ = [
    "AuxiliaryHeads",
    "DistillationModules",
    "HiddenStateProjections",
    "IGNORE_INDEX",
    "LossTerm",
    "PUBLISHED_LAYER_MAPS",
    "REGISTRY",
    "ScoredPositions",
    "TERM_SHARES_FILE",
    "TermShareLog",
    "TERM_NAMES",
    "auxiliary_classifier_loss",
    "chunked_cross_entropy",
    "chunked_soft_target_kl",
    "combine",
    "compile_chunk_kernels",
    "combined_teacher_log_probs",
    "contrastive_loss",
    "cross_entropy_loss",
    "hidden_state_loss",
    "kl_distillation_loss",
    "last_layer_maps",
    "position_rows",
    "scored_positions",
    "read_term_shares",
    "soft_target_kl_sum",
    "sparse_kl_distillation_loss",
    "term_gradient_norms",
    "top_k_targets",
    "uniform_layer_map",
    "validate_layer_map",
]
