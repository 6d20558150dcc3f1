"""A read-only view of the cluster, for the admin documents and the dashboard."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..cluster.health import HealthMonitor
from ..cluster.limits import BatchLimits
from ..cluster.membership import Members
from ..cluster.progress import Progress
from ..cluster.stats import ApplierStats, WriteStats
from ..settings import Settings
from ..store import LogStore


class ApplierView(Protocol):
    @property
    def state(self) -> str: ...


@dataclass(frozen=True)
class ClusterView:
    """What the admin documents and the dashboard read, and nothing they could change."""

    settings: Settings
    store: LogStore
    members: Members
    health: HealthMonitor
    progress: Progress
    appliers: Mapping[str, ApplierView]
    applier_stats: Mapping[str, ApplierStats]
    bootstrap_status: Callable[[], dict[str, Any]]
    limits: BatchLimits
    write_stats: WriteStats
    started_at: float
    retention_status: Callable[[], dict[str, Any]] = field(default=lambda: {})
    archive_status: Callable[[], dict[str, Any] | None] = field(default=lambda: None)  # None: not archiving
    # how many times reads asked the store for the log's head (a shared store, this gateway not its sole appender)
    freshness_questions: Callable[[], int] = field(default=lambda: 0)

    def applying(self) -> bool:
        return any(a.state == "applying" for a in self.appliers.values())
