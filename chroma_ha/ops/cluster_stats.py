"""The whole cluster's statistics, from the store: every gateway publishes its own counters there, and any gateway
shows the totals with each gateway's share beside it (in `/wal/stats` and the dashboard).

Invariant: the totals are sums of what the gateways published (each counts since it started); a gateway silent for
longer than `max_age` is left out, and one silent for a day is forgotten. A store that cannot answer leaves this
gateway's own figures in place of the cluster's, said so in `scope`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from ..cluster.stats import ApplierStats, WriteStats
from ..errors import StoreError
from ..store import GatewayStats, LogStore

log = logging.getLogger(__name__)

FORGET_AFTER_S = 86400.0
MIN_MAX_AGE_S = 30.0
COUNTED = ("appended_entries", "appended_bytes", "applied_entries", "applied_bytes", "deletes_converted", "retries")


def own_counters(writes: WriteStats, appliers: Mapping[str, ApplierStats], started_at: float) -> dict[str, Any]:
    """What one gateway publishes: its counters since it started, in total and per instance."""
    return {
        "started_at": started_at,
        "appended_entries": writes.appended_entries,
        "appended_bytes": writes.appended_bytes,
        "deletes_converted": writes.deletes_converted,
        "applied_entries": sum(s.applied_entries for s in appliers.values()),
        "applied_bytes": sum(s.applied_bytes for s in appliers.values()),
        "retries": sum(s.retries for s in appliers.values()),
        "instances": {i: {"applied_entries": s.applied_entries, "retries": s.retries} for i, s in appliers.items()},
    }


def _share(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


def cluster_document(rows: list[GatewayStats], me: str) -> dict[str, Any]:
    """Totals over the gateways, and each gateway's figures with its share of appends and applies. Pure."""
    totals = {name: sum(int(r.stats.get(name, 0)) for r in rows) for name in COUNTED}
    gateways = {}
    for r in rows:
        figures = {name: int(r.stats.get(name, 0)) for name in COUNTED}
        gateways[r.gateway] = {
            **figures,
            "share": {
                "appended": _share(figures["appended_entries"], totals["appended_entries"]),
                "applied": _share(figures["applied_entries"], totals["applied_entries"]),
            },
            "this_gateway": r.gateway == me,
            "started_at": r.stats.get("started_at"),
            "age_seconds": round(r.age_seconds, 3),
        }
    return {"gateway_count": len(rows), "totals": totals, "gateways": gateways}


class ClusterStats:
    """Publishes this gateway's counters every `interval` seconds, and reads everyone's."""

    def __init__(
        self,
        store: LogStore,
        gateway_id: str,
        writes: WriteStats,
        appliers: Mapping[str, ApplierStats],
        started_at: float,
        interval: float,
    ) -> None:
        self._store = store
        self._gateway = gateway_id
        self._writes = writes
        self._appliers = appliers
        self._started_at = started_at
        self.interval = interval
        self.max_age = max(MIN_MAX_AGE_S, 6 * interval)

    def own(self) -> dict[str, Any]:
        return own_counters(self._writes, self._appliers, self._started_at)

    async def publish(self) -> None:
        await self._store.publish_gateway_stats(self._gateway, self.own(), FORGET_AFTER_S)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.publish()
            except StoreError as exc:
                log.warning("could not publish this gateway's counters: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def document(self) -> dict[str, Any]:
        """The cluster's document; this gateway's own figures (fresh) replace what it last published."""
        try:
            rows = [r for r in await self._store.gateway_stats(self.max_age) if r.gateway != self._gateway]
            scope = "every gateway of the store"
        except StoreError as exc:
            rows, scope = [], f"this gateway only (the store did not answer: {exc})"
        rows.append(GatewayStats(self._gateway, time.time(), 0.0, self.own()))
        rows.sort(key=lambda r: r.gateway)
        return {"scope": scope, **cluster_document(rows, self._gateway)}
