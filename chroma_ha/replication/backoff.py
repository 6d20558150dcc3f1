"""Capped exponential backoff with full jitter. Pure."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base: float, cap: float, rand: random.Random | None = None) -> float:
    """The wait before retry number `attempt` (1-based): uniform in [0, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(cap, base * (2 ** max(0, min(attempt - 1, 30))))
    return (rand or random).uniform(ceiling / 2, ceiling)
