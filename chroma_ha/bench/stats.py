"""Summaries of samples. Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated between the closest ranks, as numpy's default."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ms(seconds: float) -> float:
    return seconds * 1000.0


def percentile_ms(samples: Sequence[float], q: float) -> float:
    """The q-th percentile of samples in seconds, in milliseconds; NaN (null in JSON) when there are none."""
    return ms(percentile(samples, q)) if samples else math.nan
