"""The unit every scorer works on: the token ids of one choice and how many of the last ones count.

A module of its own so that both the scorers and the encoded-request cache (`request_cache`),
which `scorer` uses, can import it without a cycle.
"""

from __future__ import annotations

from typing import NamedTuple


class Request(NamedTuple):
    """One choice to score: the token ids fed to the model, of which the last `n_scored` count."""

    tokens: tuple[int, ...]
    n_scored: int
