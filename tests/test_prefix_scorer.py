"""The shared-prefix scorer gives the flat scorer's log-likelihoods, GPT-2 and Llama alike.

Groups are built from token ids directly: rows of different widths in one batch (padding),
candidates that share scored tokens (the prefix stops before the first scored target's input),
one group per batch (budget 40) and all in one (4096), a row as wide as GPT-2's position table.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from babykd.evaluation.prefix_scorer import prefix_scores, shared_length, worth_sharing
from babykd.evaluation.scorer import Request, loglikelihoods

VOCAB = 60
N_POSITIONS = 48


def tiny_model(kind: str) -> torch.nn.Module:
    """`gpt2`, `llama` (SDPA attention, a boolean mask) or `llama-eager` (an additive float mask)."""
    torch.manual_seed(0)
    if kind == "gpt2":
        config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=N_POSITIONS)
        return GPT2LMHeadModel(config).eval()
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=N_POSITIONS)
    if kind == "llama-eager":
        config._attn_implementation = "eager"
    return LlamaForCausalLM(config).eval()


def groups() -> list[list[Request]]:
    """Items of 2-5 candidates; prefix lengths 3-44; the last two share scored tokens or reach position 47."""
    rng = np.random.default_rng(0)
    out = []
    for prefix_len, n_candidates in [(12, 5), (3, 2), (30, 3), (7, 4), (21, 5)]:
        prefix = rng.integers(0, VOCAB, prefix_len).tolist()
        group = []
        for k in range(n_candidates):
            option = [k, *rng.integers(0, VOCAB, int(rng.integers(0, 6))).tolist()]  # distinct first token
            group.append(Request(tuple(prefix + option), len(option)))
        out.append(group)
    # 44 shared tokens, 43 of them the prefix: candidates' positions reach 46 of GPT-2's 48
    long_prefix = tuple(rng.integers(0, VOCAB, 44).tolist())
    out.append([Request(long_prefix + (0, 1, 2), 3), Request(long_prefix + (1,), 1)])
    shared_scored = [1, 2, 3]  # "the hat and ..." vs "the hat or ...": common tokens inside the scored part
    out.append([Request((5, 6, 7, 8, *shared_scored, 9), 4), Request((5, 6, 7, 8, *shared_scored, 10, 11), 5)])
    return out


def reference_scores(model: torch.nn.Module, requests: list[Request]) -> np.ndarray:
    """One request per float64 forward pass: the kind of reference the equivalence tests' tolerance is for."""
    model64 = copy.deepcopy(model).double()
    out = []
    with torch.no_grad():
        for r in requests:
            logprobs = torch.log_softmax(model64(torch.tensor([r.tokens])).logits[0], dim=-1)
            scored = range(len(r.tokens) - r.n_scored, len(r.tokens))
            out.append(sum(float(logprobs[i - 1, r.tokens[i]]) for i in scored))
    return np.array(out)


@pytest.mark.parametrize("kind", ["gpt2", "llama", "llama-eager"])
@pytest.mark.parametrize("batch_tokens", [40, 4096])
def test_prefix_scores_equal_the_flat_scores(kind, batch_tokens):
    model = tiny_model(kind)
    items = groups()
    requests = [r for g in items for r in g]
    reference = reference_scores(model, requests)
    flat = loglikelihoods(model, requests, batch_tokens=batch_tokens, progress=False)
    packed = prefix_scores(model, items, batch_tokens=batch_tokens, progress=False)
    assert [len(s) for s in packed] == [len(g) for g in items]
    np.testing.assert_allclose(np.concatenate(packed), reference, atol=1e-6, rtol=1e-7)
    np.testing.assert_allclose(flat, reference, atol=1e-6, rtol=1e-7)
    assert model.training is False


def test_shared_length_stops_before_the_first_scored_input():
    a, b = Request((5, 6, 7, 8, 1, 2, 3, 9), 4), Request((5, 6, 7, 8, 1, 2, 3, 10, 11), 5)
    assert shared_length([a, b]) == 3  # common prefix is 7 tokens, but b's first scored target (index 4) reads input 3
    assert worth_sharing([Request((1,) * 30 + (k,), 1) for k in (2, 3, 4)])  # 58 of 90 tokens saved
    assert not worth_sharing([Request((1, 2, 3, 4), 3), Request((1, 5, 6, 7), 3)])  # a BLiMP-like pair


def test_a_group_without_a_shared_prefix_is_refused():
    with pytest.raises(ValueError, match="share at least one unscored token"):
        prefix_scores(tiny_model("llama"), [[Request((1, 2), 1), Request((3, 4), 1)]], progress=False)
