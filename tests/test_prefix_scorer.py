"""The shared-prefix (trie) scorer gives the flat scorer's log-likelihoods, GPT-2 and Llama alike.

Requests are built from token ids directly: contexts shared by several items (one scenario's
entity-tracking items), options of different lengths (padding: rows of different widths in one
batch), candidates that share scored tokens, one request the prefix of another, duplicates, equal
inputs with different last tokens (a minimal pair differing at its end), a request with nothing
scored, and one reaching GPT-2's last position. Budgets: one row per batch and a row per request
(1, 40) or all in one batch (4096).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from babykd.evaluation.prefix_scorer import (
    PackingCost, common_prefix_length, pack_rows, packed_flops, packed_loglikelihoods,
)
from babykd.evaluation.scorer import Request, logits_at, loglikelihoods

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


def requests() -> list[Request]:
    """Items of 2-5 candidates on contexts of 3-44 tokens, two items per context, and the edge cases above."""
    rng = np.random.default_rng(0)
    out = []
    for prefix_len, n_candidates in [(12, 5), (3, 2), (30, 3), (7, 4), (21, 5)]:
        context = rng.integers(0, VOCAB, prefix_len).tolist()
        for question in (rng.integers(0, VOCAB, 2).tolist(), rng.integers(0, VOCAB, 3).tolist()):
            for k in range(n_candidates):
                option = [k, *rng.integers(0, VOCAB, int(rng.integers(0, 6))).tolist()]
                out.append(Request(tuple(context + question + option), len(option)))
    long_prefix = tuple(rng.integers(0, VOCAB, 44).tolist())  # positions up to 46 of GPT-2's 48
    out += [Request(long_prefix + (0, 1, 2), 3), Request(long_prefix + (1,), 1)]
    shared_scored = (1, 2, 3)  # "the hat and ..." vs "the hat or ...": common tokens inside the scored part
    out += [Request((5, 6, 7, 8, *shared_scored, 9), 4), Request((5, 6, 7, 8, *shared_scored, 10, 11), 5)]
    out += [Request((5, 6, 7), 2), Request((5, 6, 7, 8), 3)]  # the first's input is a prefix of the second's
    out += [Request((9, 8, 7, 6), 2), Request((9, 8, 7, 5), 2), Request((9, 8, 7, 6), 2)]  # differ at the end; a duplicate
    out += [Request((4, 4), 0), Request((3,), 0)]  # nothing scored: 0
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
@pytest.mark.parametrize("batch_tokens", [1, 40, 4096])
def test_packed_scores_equal_the_flat_and_the_reference_scores(kind, batch_tokens):
    model = tiny_model(kind)
    items = requests()
    reference = reference_scores(model, items)
    scorable = [r for r in items if r.n_scored]
    flat = loglikelihoods(model, scorable, batch_tokens=batch_tokens, progress=False)
    packed = packed_loglikelihoods(model, items, batch_tokens=batch_tokens, progress=False)
    np.testing.assert_allclose(packed, reference, atol=1e-6, rtol=1e-7)
    np.testing.assert_allclose(flat, reference[[i for i, r in enumerate(items) if r.n_scored]], atol=1e-6, rtol=1e-7)
    assert packed[-2:].tolist() == [0.0, 0.0]
    assert packed[-5] == packed[-3]  # a duplicate scores exactly the same: a tie stays a tie
    assert model.training is False


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_packing_changes_no_score_beyond_float_rounding_at_any_budget(dtype):
    """Rows of one request each (budget 1) against everything in few rows, in the same precision."""
    model = tiny_model("llama")
    one_each = packed_loglikelihoods(model, requests(), batch_tokens=1, dtype=dtype, progress=False)
    shared = packed_loglikelihoods(model, requests(), batch_tokens=4096, dtype=dtype, progress=False)
    np.testing.assert_allclose(shared, one_each, atol=1e-5 if dtype == "fp32" else 0.5, rtol=1e-6 if dtype == "fp32" else 2e-2)


def test_rows_are_depth_first_tries_with_subtree_ends():
    cost = PackingCost(per_token=1e6, per_pair=1.0, per_logit=0.0)  # sharing always pays
    a, b, c = Request((1, 2, 3, 4), 2), Request((1, 2, 5, 6), 1), Request((1, 2, 3, 7, 8), 1)
    (row,) = pack_rows([a, b, c], cost, max_width=100)
    # sorted inputs: (1,2,3) (1,2,3,7) (1,2,5): nodes 1 2 3 | 7 | 5
    assert row.tokens == [1, 2, 3, 7, 5] and row.depths == [0, 1, 2, 3, 2]
    assert row.ends == [5, 5, 4, 4, 5]  # node 3's subtree is columns 2-3; node 5 sits beside it
    # a's targets 3, 4 are read at the nodes of 2 and 3; c's 8 at 7's; b's 6 at 5's
    assert sorted(zip(row.owners, row.columns, row.targets)) == [(0, 1, 3), (0, 2, 4), (1, 4, 6), (2, 3, 8)]


def test_unrelated_requests_get_rows_of_their_own():
    """Sharing one token (a BOS) does not pay for a quadratic attention over both sentences."""
    model = tiny_model("llama")
    pair = [Request((1, *range(10, 30)), 20), Request((1, *range(30, 50)), 20)]
    assert len(pack_rows(pair, PackingCost.of(model), max_width=4096)) == 2
    options = [Request((1, *range(10, 30), k, 9), 2) for k in range(5)]  # 21 shared input nodes, 1 each
    assert len(pack_rows(options, PackingCost.of(model), max_width=4096)) == 1
    assert len(pack_rows(options, PackingCost.of(model), max_width=23)) == 3  # the width cap: 21 nodes, 2 options a row


def test_common_prefix_length():
    assert common_prefix_length((1, 2, 3), (1, 2, 4, 5)) == 2
    assert common_prefix_length((1, 2), (1, 2, 3)) == 2
    assert common_prefix_length((), (1,)) == 0 and common_prefix_length((2,), (1,)) == 0


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_logits_at_is_the_full_logits_gathered(kind):
    model = tiny_model(kind)
    ids = torch.randint(0, VOCAB, (3, 7))
    with torch.no_grad():
        full = model(input_ids=ids).logits
        index = torch.tensor([0, 5, 9, 20])
        with logits_at(model, index):
            some = model(input_ids=ids).logits
    assert some.shape == (1, 4, VOCAB)
    torch.testing.assert_close(some[0], full.reshape(-1, VOCAB)[index], atol=1e-5, rtol=1e-5)
    assert not model.get_output_embeddings()._forward_pre_hooks  # removed afterwards


def test_packed_flops_count_the_layers_attention_and_logits():
    model = tiny_model("llama")
    cost = PackingCost.of(model)
    body = sum(p.numel() for p in model.model.parameters()) - model.model.embed_tokens.weight.numel()
    assert cost.per_token == 2 * body and cost.per_pair == 4 * 32 * 2 and cost.per_logit == 2 * 32 * VOCAB
    one = [Request((1, 2, 3), 2)]
    assert packed_flops(model, one, batch_tokens=64) == cost.row(2) + 2 * cost.per_logit


def test_a_forward_that_bypasses_the_gather_is_refused():
    """If the head's hook never runs (a model compiled before it was added), no logits are read at wrong rows."""
    model = tiny_model("llama")
    model.get_output_embeddings = lambda: torch.nn.Linear(32, VOCAB)  # a head the forward never calls
    with pytest.raises(RuntimeError, match="without the position gather"):
        packed_loglikelihoods(model, requests(), progress=False)
