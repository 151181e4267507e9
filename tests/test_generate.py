"""Sampling continuations from a checkpoint: a tiny random Llama and a tokenizer trained here."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from babykd.generate import load_model, main, sample_continuations

TEXTS = ["the dog runs to the park .", "the dogs run to the park .", "is the cat hungry ?",
         "once upon a time , there was a little fox named Pip .", "Pip said hello to the bird ."] * 20
PROMPT = "the dog"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A saved 2-layer Llama (hidden 32) with a byte-level BPE tokenizer (<pad>=0, <s>=1, </s>=2)."""
    directory = tmp_path_factory.mktemp("tiny") / "model"
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(TEXTS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>",
                                        eos_token="</s>")
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def loaded(checkpoint):
    return load_model(checkpoint, device="cpu")


def test_samples_are_counted_seeded_and_strings(loaded):
    model, tokenizer = loaded
    first = sample_continuations(model, tokenizer, PROMPT, num_samples=3, max_new_tokens=8, seed=1)
    again = sample_continuations(model, tokenizer, PROMPT, num_samples=3, max_new_tokens=8, seed=1)
    other = sample_continuations(model, tokenizer, PROMPT, num_samples=3, max_new_tokens=8, seed=2)
    assert len(first) == 3 and all(isinstance(t, str) for t in first)
    assert first == again and first != other
    assert len(set(first)) > 1, "different samples of one call should differ"


def test_greedy_is_one_deterministic_sample_and_empty_prompt_works(loaded):
    model, tokenizer = loaded
    greedy = sample_continuations(model, tokenizer, PROMPT, temperature=0, num_samples=3,
                                  max_new_tokens=6, seed=1)
    assert len(greedy) == 1
    assert greedy == sample_continuations(model, tokenizer, PROMPT, temperature=0, max_new_tokens=6, seed=9)
    assert len(sample_continuations(model, tokenizer, "", num_samples=2, max_new_tokens=4)) == 2


def test_sampling_leaves_the_global_rng_alone(loaded):
    model, tokenizer = loaded
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    sample_continuations(model, tokenizer, PROMPT, num_samples=2, max_new_tokens=4, seed=5)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("bad, message", [
    (dict(temperature=-0.1), "temperature"), (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(top_k=-1), "top_k"),
    (dict(max_new_tokens=0), "max_new_tokens"), (dict(num_samples=0), "num_samples"),
])
def test_bad_sampling_arguments_are_rejected(loaded, bad, message):
    model, tokenizer = loaded
    with pytest.raises(ValueError, match=message):
        sample_continuations(model, tokenizer, PROMPT, **bad)


def test_cli_prints_the_same_samples_as_the_function(checkpoint, loaded):
    run = subprocess.run([sys.executable, "-m", "babykd.generate", str(checkpoint), "--prompt", PROMPT,
                          "--num-samples", "2", "--max-new-tokens", "5", "--seed", "4", "--device", "cpu"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    model, tokenizer = loaded
    texts = sample_continuations(model, tokenizer, PROMPT, num_samples=2, max_new_tokens=5, seed=4)
    expected = "".join(f"--- sample {i}/2 ---\n{PROMPT}{t}\n" for i, t in enumerate(texts, 1))
    assert run.stdout == expected


@pytest.mark.parametrize("args, message", [
    (["--temperature", "-1"], "temperature must be"), (["--top-p", "0"], "top_p must be"),
    (["--top-k", "-3"], "top_k must be"),
])
def test_cli_rejects_bad_arguments(checkpoint, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main([str(checkpoint), "--prompt", PROMPT, *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_cli_missing_or_wrong_model_dir(tmp_path, capsys):
    for directory, message in ((tmp_path / "nope", "model directory not found"),
                               (tmp_path, "not a model checkpoint (no config.json)")):
        with pytest.raises(SystemExit) as exit_info:
            main([str(directory), "--prompt", PROMPT])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert str(directory) in err and message in err
