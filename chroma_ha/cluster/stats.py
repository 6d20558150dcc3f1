"""Counters of this gateway's work since it started: each applier owns its `ApplierStats`, the write path its
`WriteStats`. Operations (metrics, `/wal/stats`, the monitor's rates) only read them."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

RECENT_SAMPLES = 2048  # recent batch sizes and apply lags kept for /wal/stats and /metrics


@dataclass
class ApplierStats:
    applied_entries: int = 0
    applied_batches: int = 0
    retries: int = 0
    rejections: int = 0
    last_batch_size: int = 0
    last_error: str = ""
    applied_bytes: int = 0
    # recent batch sizes, and seconds from an entry's append to its commit here (one per applied entry)
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_SAMPLES))
    lags: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_SAMPLES))

    def batch_applied(self, entries: int, body_bytes: int, lags: list[float], rejections: int) -> None:
        self.applied_entries += entries
        self.applied_batches += 1
        self.last_batch_size = entries
        self.batch_sizes.append(entries)
        self.applied_bytes += body_bytes
        self.lags.extend(lags)
        self.rejections += rejections

    def failed(self, error: str) -> None:
        self.retries += 1
        self.last_error = error


@dataclass
class WriteStats:
    appended_entries: int = 0
    appended_bytes: int = 0
    deletes_converted: int = 0  # deletes logged with a resolved document-level form
