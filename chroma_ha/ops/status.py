"""The documents of the admin API (health, status, the log's state and statistics, recommendations), built from a
read-only view of the cluster. The HTTP layer serves them; the CLI and the tests can read them without HTTP.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .. import __version__
from ..cluster.limits import BatchLimits
from ..errors import StoreError
from ..store import CommitStats
from .alerts import Alerts
from .cluster_stats import ClusterStats
from .dashboard import NOSNIFF, dashboard_data, dashboard_page, page_headers
from .log_documents import divergences_document, entries_around
from .metrics import PROMETHEUS_CONTENT_TYPE, Metrics, percentiles
from .monitor import ResourceMonitor, log_positions
from .openapi import admin_openapi
from .pressure import Sample
from .view import ClusterView

DIVERGENCES_SHOWN = 100
STORE_PROBE_S = 1.0  # how long /health waits for the store: less than a load balancer's check timeout


def _limits(limits: BatchLimits) -> dict[str, int]:
    current = limits.current
    return {"max_records": current.max_records, "max_bytes": current.max_bytes}


class AdminDocuments:
    def __init__(
        self, view: ClusterView, monitor: ResourceMonitor, alerts: Alerts, metrics: Metrics, cluster: ClusterStats
    ) -> None:
        self.view = view
        self.monitor = monitor
        self.alerts = alerts
        self._metrics = metrics
        self.cluster = cluster

    async def health(self, *, full: bool = False) -> tuple[dict[str, Any], int]:
        """Is the gateway serving, what is up, and which of reads and writes it can take: reads while an instance is
        up, writes while the store answers and an instance is up (or, with `ack=log`, without one). 200 while it
        takes either, so that a load balancer keeps it in rotation; 503 when it takes neither.

        Instances are named by their URL only in the `full` document (for an admin); anyone else, a load balancer
        say, sees them by their index in the list of instances, from 0: a URL tells where the data lives.

        Only active members count for reads: a joining one is shown, as catching up, but serves none."""
        view = self.view
        instances = view.members.urls
        label = (lambda i: i) if full else {i: str(n) for n, i in enumerate(instances)}.__getitem__
        up = [i for i in view.health.up_instances() if i in view.members.serving]
        reasons = []
        try:
            head = await asyncio.wait_for(view.store.head(), STORE_PROBE_S)
            store_ok = True
        except (StoreError, TimeoutError) as exc:
            head, store_ok = 0, False
            reasons.append(f"store unreachable: {str(exc) or f'no answer within {STORE_PROBE_S:g}s'}")
        reads = bool(up)
        writes = store_ok and (reads or view.settings.consistency.ack == "log")
        if not up:
            reasons.append("no instance is up" + (": accepting writes, serving no reads" if writes else ""))
        lagging = [i for i in up if head - view.progress.cursors.get(i, 0) > 0]
        down = [i for i in instances if not view.health.is_up(i)]
        if up:
            reasons.extend(f"instance {label(i)} is down" for i in down)
            reasons.extend(
                f"instance {label(i)} is {view.members.state(i)}" for i in instances if i not in down and i not in up
            )
            reasons.extend(f"instance {label(i)} has not applied the whole log yet" for i in lagging)
        if not (reads or writes):
            status = "unhealthy"
        elif reasons:
            status = "degraded"
        else:
            status = "healthy"
        document = {
            "status": status,
            "reads": "available" if reads else "unavailable",
            "writes": "available" if writes else "unavailable",
            "healthy_instances": f"{len(up)}/{len(instances)}",
            "store": "ok" if store_ok else "unreachable",
            "instances": {label(i): {"up": view.health.is_up(i), "member": view.members.state(i)} for i in instances},
            "reasons": reasons,
        }
        return document, 200 if reads or writes else 503

    async def status(self) -> dict[str, Any]:
        view = self.view
        health, _ = await self.health(full=True)
        now = time.time()
        head, positions = await log_positions(view.store, view.progress.cursors, now)
        latest = self.monitor.latest
        instances = {}
        for instance in view.members.urls:
            applier = view.appliers.get(instance)
            state, position = view.health.state_of(instance), positions[instance]
            heartbeat = (
                latest.instances[instance].heartbeat_seconds if latest and instance in latest.instances else None
            )
            instances[instance] = {
                "member": view.members.state(instance),
                "state": applier.state if applier is not None else "stopped",
                "up": state.up,
                "success_rate": round(state.success_rate, 4),
                "requests": state.requests,
                "failures": state.failures,
                "consecutive_failures": state.consecutive_failures,
                "outstanding": state.outstanding,
                "last_check": state.last_check,
                "last_error": state.last_error,
                "state_since": state.changed_at,
                "cursor": position.cursor,
                "pending": position.pending,
                "lag_seconds": position.lag_seconds,
                "heartbeat_ms": round(heartbeat * 1000, 2) if heartbeat is not None else None,
            }
        return {
            "version": __version__,
            "gateway_id": view.settings.gateway_id,
            "uptime_seconds": round(now - view.started_at, 1),
            "status": health["status"],
            "healthy_instances": health["healthy_instances"],
            "reasons": health["reasons"],
            "log": {"head": head, "oldest": await view.store.oldest_seq()},
            "batch_limits": _limits(view.limits),
            "instances": instances,
            "alerts_firing": self.alerts.firing_titles(),
            "settings": view.settings.redacted(),
        }

    async def wal_status(self) -> dict[str, Any]:
        view, store = self.view, self.view.store
        head, positions = await log_positions(store, view.progress.cursors, time.time())
        instances = {}
        for instance in view.members.urls:
            applier, position = view.appliers.get(instance), positions[instance]
            instances[instance] = {
                "member": view.members.state(instance),
                "cursor": position.cursor,
                "pending": position.pending,
                "lag_seconds": position.lag_seconds,
                "state": applier.state if applier is not None else "stopped",
                "up": view.health.is_up(instance),
            }
        divergences = await store.divergences()
        return {
            "head": head,
            "oldest": await store.oldest_seq(),
            "pending": max((p.pending for p in positions.values()), default=0),
            "oldest_pending_age_seconds": max((p.lag_seconds for p in positions.values()), default=0.0),
            "state": "applying" if view.applying() else "idle",
            "instances": instances,
            "divergence_count": len(divergences),
            "divergences": [
                {
                    "seq": d.seq,
                    "instance": d.instance,
                    "status": d.status,
                    "expected_status": d.expected_status,
                    "created_at": d.created_at,
                }
                for d in divergences[:DIVERGENCES_SHOWN]
            ],
            "bootstrap": view.bootstrap_status(),  # per instance: state, source, start_seq, records
            "retention": view.retention_status(),  # instances released from holding back pruning
            "archive": view.archive_status(),  # continuous archiving: its folder and the last seq archived
        }

    async def wal_stats(self) -> dict[str, Any]:
        view, monitor = self.view, self.monitor
        monitor.update_rates(time.time())
        stats = view.applier_stats
        by_instance = {
            i: {
                "applied_entries": s.applied_entries,
                "applied_batches": s.applied_batches,
                "applied_bytes": s.applied_bytes,
                "applied_per_second": monitor.applied_by_instance[i].rates()
                if i in monitor.applied_by_instance
                else {},
                "batch_sizes": percentiles(s.batch_sizes),
                "last_batch_size": s.last_batch_size,
                "retries": s.retries,
                "rejections": s.rejections,
                "lag_seconds": {k: round(v, 4) for k, v in percentiles(s.lags).items()},
            }
            for i, s in stats.items()
        }
        lags = percentiles([x for s in stats.values() for x in s.lags])
        return {
            "scope": "this gateway, since it started",
            "appended": {
                "entries": view.write_stats.appended_entries,
                "bytes": view.write_stats.appended_bytes,
                "per_second": monitor.appended.rates(),
            },
            "commits": _commits(view.store.commit_stats, monitor.commits.rates()),
            "applied": {
                "entries": sum(s.applied_entries for s in stats.values()),
                "bytes": sum(s.applied_bytes for s in stats.values()),
                "per_second": monitor.applied.rates(),
            },
            "batch_sizes": percentiles([n for s in stats.values() for n in s.batch_sizes]),
            "batch_limits": _limits(view.limits),
            "deletes_converted": view.write_stats.deletes_converted,
            "freshness_questions": view.freshness_questions(),
            "retries": sum(s.retries for s in stats.values()),
            "rejections": sum(s.rejections for s in stats.values()),
            "lag_seconds": {k: round(v, 4) for k, v in lags.items()},
            "instances": by_instance,
            "cluster": await self.cluster.document(),
        }

    async def wal_entries(self, seq: int, before: int, after: int) -> dict[str, Any]:
        return await entries_around(self.view.store, seq, before, after)

    async def wal_divergences(self, instance: str, include_resolved: bool) -> dict[str, Any]:
        return await divergences_document(self.view.store, instance, include_resolved)

    async def metrics(self, *, as_json: bool) -> tuple[bytes | dict[str, Any], str]:
        """Prometheus text (the body and its content type), or the latest resource figures as a document."""
        sample, _, _ = await self.monitor.measure(time.time(), ping=False)
        if as_json:
            return resources_document(sample), "application/json"
        return self._metrics.render(), PROMETHEUS_CONTENT_TYPE

    async def recommendations(self) -> dict[str, Any]:
        active = self.monitor.tracker.active
        stored = await self.view.store.recommendations()
        latest_of_kind: dict[str, int] = {}
        for r in stored:
            latest_of_kind.setdefault(r.kind, r.id)
        return {
            "current": [{"kind": p.kind, "reason": p.reason, "details": p.details} for p in active.values()],
            "recommendations": [
                {
                    "id": r.id,
                    "created_at": r.created_at,
                    "kind": r.kind,
                    "reason": r.reason,
                    "details": r.details,
                    "current": r.kind in active and latest_of_kind[r.kind] == r.id,
                }
                for r in stored
            ],
        }

    @staticmethod
    def openapi() -> dict[str, Any]:
        return admin_openapi(__version__)

    @staticmethod
    def dashboard_page() -> bytes:
        return dashboard_page()

    @staticmethod
    def dashboard_headers(page: bytes) -> list[tuple[bytes, bytes]]:
        """Headers of the page (its Content-Security-Policy first) and, with the page, of its data."""
        return page_headers(page)

    @staticmethod
    def data_headers() -> list[tuple[bytes, bytes]]:
        return [NOSNIFF]

    async def dashboard_data(self) -> dict[str, Any]:
        data = await dashboard_data(self.view, self.monitor, self.alerts)
        data["cluster"] = await self.cluster.document()
        return data


def resources_document(sample: Sample) -> dict[str, Any]:
    r = sample.resources
    return {
        "at": sample.at,
        "process": {"cpu_percent": r.process_cpu_percent, "memory_bytes": r.process_memory_bytes},
        "host": {
            "cpu_percent": r.host_cpu_percent,
            "memory_percent": r.host_memory_percent,
            "memory_available_bytes": r.host_memory_available_bytes,
            "memory_total_bytes": r.host_memory_total_bytes,
        },
        "instances": {i: {"up": s.up, "heartbeat_seconds": s.heartbeat_seconds} for i, s in sample.instances.items()},
    }


def _commits(stats: CommitStats, per_second: dict[str, float]) -> dict[str, Any]:
    """The store's append transactions: with group commit, one carries the entries of many concurrent writes."""
    return {
        "count": stats.commits,
        "entries": stats.entries,
        "per_second": per_second,
        "entries_per_commit": round(stats.entries / stats.commits, 3) if stats.commits else 0.0,
        "entries_per_commit_recent": percentiles(stats.sizes),
    }
