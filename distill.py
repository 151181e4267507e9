#!/usr/bin/env python
"""Distil a student from frozen teachers: `python distill.py CONFIG [--set k=v ...] [--resume]`.

The method (ensemble KD, DSKD, contrastive, auxiliary classifiers) is the
composition of loss terms named in the config's `distillation.weights`.
"""

from babykd.cli import train_main

if __name__ == "__main__":
    train_main(None, "Distil a student from teacher checkpoints.", require_distillation=True)
