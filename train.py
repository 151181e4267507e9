#!/usr/bin/env python
"""Pretrain a teacher or baseline from a run config: `python train.py CONFIG [--set k=v ...] [--resume]`."""

from babykd.cli import train_main

if __name__ == "__main__":
    train_main(None, "Pretrain a causal LM (GPT-2 or Llama) on the BabyLM corpus.")
