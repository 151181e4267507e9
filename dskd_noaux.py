#!/usr/bin/env python
"""Deeply-Supervised KD without auxiliary classifiers (CE + a*KL + b*hidden-state MSE).

Defaults to the PalenkaLlama1-58M-strict-L0.1-H0.5 recipe; any distillation
config with a hidden-state weight works: `python dskd_noaux.py [CONFIG] [--set ...]`.
"""

from babykd.cli import train_main

if __name__ == "__main__":
    train_main(
        None,
        "Deeply-supervised KD (no auxiliary classifiers).",
        default_config="config/runs/distill/PalenkaLlama1-58M-strict-L0.1-H0.5.yaml",
        require_distillation=True,
    )
