"""The one model factory: GPT-2 or Llama causal LMs (stock HF classes) from a `ModelConfig`.

Stock classes keep every checkpoint loadable with `AutoModelForCausalLM`,
by us, by the official evaluation pipeline and by anyone else.
"""

from __future__ import annotations

import logging

from transformers import GPT2Config, LlamaConfig, PretrainedConfig, PreTrainedModel
from transformers import GPT2LMHeadModel, LlamaForCausalLM

from babykd.config import ModelConfig

#: Special-token ids fixed by the project's tokenizer (`<pad>`, `<s>`, `</s>`).
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
#: Tokens (start token included) of the longest input of the BabyLM 2025 zero-shot suite: an entity-tracking
#: item (full set; fast set 411) with the demo's 2,000-token tokenizer. A 16,000-token tokenizer of the
#: substitute corpus makes 276 (fast 255): the smaller the vocabulary, the longer the inputs.
SUITE_LONGEST_INPUT = 430

logger = logging.getLogger(__name__)


def hf_config(cfg: ModelConfig) -> PretrainedConfig:
    """Translate our architecture description into the HF config of the stock class.

    SDPA attention is requested explicitly: it is exact (not an approximation)
    and the fast path on both CPU and GPU.
    """
    common = dict(
        vocab_size=cfg.vocab_size,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )
    if cfg.architecture == "gpt2":
        config: PretrainedConfig = GPT2Config(
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_embd=cfg.d_model,
            n_inner=cfg.d_ff,
            n_positions=cfg.max_position_embeddings,
            resid_pdrop=cfg.dropout,
            embd_pdrop=cfg.dropout,
            attn_pdrop=cfg.dropout,
            layer_norm_epsilon=cfg.norm_eps,
            tie_word_embeddings=True if cfg.tie_word_embeddings is None else cfg.tie_word_embeddings,
            **common,
        )
    else:
        config = LlamaConfig(
            num_hidden_layers=cfg.n_layer,
            num_attention_heads=cfg.n_head,
            num_key_value_heads=cfg.n_kv_head or cfg.n_head,
            hidden_size=cfg.d_model,
            intermediate_size=cfg.d_ff,
            max_position_embeddings=cfg.max_position_embeddings,
            attention_dropout=cfg.dropout,
            rms_norm_eps=cfg.norm_eps,
            rope_theta=cfg.rope_theta,
            tie_word_embeddings=False if cfg.tie_word_embeddings is None else cfg.tie_word_embeddings,
            **common,
        )
    config._attn_implementation = "sdpa"
    return config


def build_model(cfg: ModelConfig) -> PreTrainedModel:
    """A freshly initialised model (HF's own init; seeded by the caller's RNG state).

    Warns when the model cannot take the evaluation suite's longest input: better at the start of
    training than as a failed task at evaluation (or at submission) time.
    """
    config = hf_config(cfg)
    limit = position_limit(config)
    if limit is not None and limit < SUITE_LONGEST_INPUT:
        logger.warning(
            "model %s: its %d positions cannot hold the BabyLM 2025 suite's longest input (%d tokens, entity "
            "tracking); set model.max_position_embeddings >= that, or this task will not be scored",
            cfg.name, limit, SUITE_LONGEST_INPUT,
        )
    model_cls = GPT2LMHeadModel if cfg.architecture == "gpt2" else LlamaForCausalLM
    return model_cls(config)


def count_parameters(model: PreTrainedModel, trainable_only: bool = False) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    seen: dict[int, int] = {}
    for param in model.parameters():
        if trainable_only and not param.requires_grad:
            continue
        seen[id(param)] = param.numel()
    return sum(seen.values())


def model_layers_and_width(config: PretrainedConfig) -> tuple[int, int]:
    """(number of transformer blocks, hidden width) of any HF causal-LM config."""
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer")
    width = getattr(config, "hidden_size", None) or getattr(config, "n_embd")
    return int(layers), int(width)


def max_positions(config: PretrainedConfig) -> int | None:
    """The longest sequence a model accepts (None when unbounded, e.g. pure RoPE without a limit)."""
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def position_limit(config: PretrainedConfig) -> int | None:
    """The longest input a model can run at all: the size of a learned position table (GPT-2's).

    None for rotary models (Llama): they run inputs of any length, although positions past
    training are untrained (see README, evaluation).
    """
    if any(key.startswith(("rope", "rotary")) for key in config.to_dict()):
        return None
    return max_positions(config)
