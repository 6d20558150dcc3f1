"""The appliers' batch limits: the resource monitor sets them from memory pressure and backlog, the appliers read
them before every batch. One holder, shared by both, so neither reaches into the other."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_records: int
    max_bytes: int


class BatchLimits:
    """The limits in force now, within the configured maxima."""

    def __init__(self, maxima: Limits) -> None:
        self.maxima = maxima
        self._current = maxima

    @property
    def current(self) -> Limits:
        return self._current

    def set(self, limits: Limits) -> None:
        maxima = self.maxima
        self._current = Limits(
            max(1, min(limits.max_records, maxima.max_records)), max(1, min(limits.max_bytes, maxima.max_bytes))
        )
