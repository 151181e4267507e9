"""Model factory: parameter counts match the names; checkpoints reload with the Auto classes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from babykd import REPO_ROOT
from babykd.config import load_model_config
from babykd.models import build_model, count_parameters

NAMED = [p for p in sorted((REPO_ROOT / "config" / "models").glob("*.yaml")) if re.search(r"-\d+M$", p.stem)]


@pytest.mark.parametrize("path", NAMED, ids=lambda p: p.stem)
def test_parameter_count_matches_name_within_3_percent(path: Path) -> None:
    cfg = load_model_config(path)
    assert cfg.vocab_size == 16000
    with torch.device("meta"):  # shapes only: no memory for the 705M model
        model = build_model(cfg)
    expected = float(re.search(r"-(\d+)M$", path.stem).group(1)) * 1e6
    actual = count_parameters(model)
    assert abs(actual - expected) / expected <= 0.03, f"{path.stem}: {actual:,} parameters"


def test_architectures_and_attention() -> None:
    gpt = build_model(load_model_config(REPO_ROOT / "config/models/tiny-gpt2.yaml"))
    llama = build_model(load_model_config(REPO_ROOT / "config/models/tiny-llama.yaml"))
    assert type(gpt).__name__ == "GPT2LMHeadModel" and type(llama).__name__ == "LlamaForCausalLM"
    assert gpt.config._attn_implementation == "sdpa" and llama.config._attn_implementation == "sdpa"
    assert (gpt.config.pad_token_id, gpt.config.bos_token_id, gpt.config.eos_token_id) == (0, 1, 2)
    # GPT-2 ties input and output embeddings; tied weights are counted once
    assert count_parameters(gpt) < sum(p.numel() for p in gpt.state_dict().values())


def test_saved_model_reloads_with_auto_class(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(load_model_config(REPO_ROOT / "config/models/tiny-llama.yaml"))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.tensor([[1, 5, 9, 12]])
    torch.testing.assert_close(model(ids).logits, reloaded(ids).logits)
