"""Sample text from a trained checkpoint: the quickest look at what a model has learned.

Usage::

    python -m babykd.generate MODEL_DIR --prompt "the dog" \\
        [--temperature 0.8 --top-k 50 --top-p 0.95 --max-new-tokens 60 --num-samples 3 --seed 0]

Works with any directory that ``AutoModelForCausalLM``/``AutoTokenizer`` load
(the tokenizer may live elsewhere: ``--tokenizer DIR``). Temperature 0 is
greedy decoding, which has a single result.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase


def validate_sampling(*, temperature: float, top_k: int, top_p: float, max_new_tokens: int,
                      num_samples: int) -> None:
    """Raise ValueError naming the first bad sampling argument."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = no top-k filtering), got {top_k}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")


def _prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[int]:
    """The prompt's token ids; an empty prompt starts from the document-start token."""
    ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    if ids:
        return ids
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if start is None:
        raise ValueError("the prompt is empty and the tokenizer has no BOS or EOS token to start from")
    return [start]


def sample_continuations(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str, *,
                         temperature: float = 0.8, top_k: int = 50, top_p: float = 0.95,
                         max_new_tokens: int = 60, num_samples: int = 3, seed: int = 0) -> list[str]:
    """Continuations of `prompt` (the new text only, special tokens dropped).

    Sampling is seeded without disturbing the caller's global torch RNG; the
    same seed, model and arguments give the same texts. Greedy decoding
    (temperature 0) returns one continuation whatever `num_samples` says.
    """
    validate_sampling(temperature=temperature, top_k=top_k, top_p=top_p,
                      max_new_tokens=max_new_tokens, num_samples=num_samples)
    input_ids = torch.tensor([_prompt_ids(tokenizer, prompt)], device=model.device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    options = dict(max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
    if temperature == 0:
        options.update(do_sample=False, num_return_sequences=1)
    else:
        options.update(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p,
                       num_return_sequences=num_samples)
    cuda = [model.device.index or 0] if model.device.type == "cuda" else []
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=cuda), torch.inference_mode():
            torch.manual_seed(seed)
            output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), **options)
    finally:
        model.train(was_training)
    new_tokens = output[:, input_ids.shape[1]:]
    return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


def load_model(model_dir: Path, tokenizer_dir: Path | None = None, device: str | None = None):
    """(model, tokenizer) from checkpoint directories, with errors that name the path."""
    for path, what in ((model_dir, "model"), (tokenizer_dir or model_dir, "tokenizer")):
        if not Path(path).is_dir():
            raise FileNotFoundError(f"{path}: {what} directory not found")
    if not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: not a model checkpoint (no config.json)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(device)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or model_dir)
    return model, tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m babykd.generate",
                                     description="Print sampled continuations of a prompt from a checkpoint.")
    parser.add_argument("model_dir", type=Path, help="checkpoint directory (config.json + weights)")
    parser.add_argument("--prompt", default="", help="text to continue (default: start a new document)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer directory (default: MODEL_DIR)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy decoding")
    parser.add_argument("--top-k", type=int, default=50, help="0 = no top-k filtering")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-new-tokens", type=int, default=60)
    parser.add_argument("--num-samples", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    args = parser.parse_args(argv)
    sampling = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                    max_new_tokens=args.max_new_tokens, num_samples=args.num_samples)
    try:
        validate_sampling(**sampling)
        model, tokenizer = load_model(args.model_dir, args.tokenizer, args.device)
        texts = sample_continuations(model, tokenizer, args.prompt, seed=args.seed, **sampling)
    except (ValueError, OSError) as err:
        parser.exit(2, f"error: {err}\n")
    for i, text in enumerate(texts, 1):
        print(f"--- sample {i}/{len(texts)} ---")
        print(args.prompt + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
