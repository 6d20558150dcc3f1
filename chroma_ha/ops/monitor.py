"""The resource monitor: every few seconds, sample the gateway process and host (psutil), the instances' heartbeat
latency, and the log's backlog and lag. Each sample feeds the metrics, the dashboard's hour of history, the alerts,
the appliers' batch size, and the pure pressure decisions (ops/pressure.py) that turn sustained pressure into stored
upgrade recommendations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psutil

from ..cluster.health import HealthMonitor
from ..cluster.limits import BatchLimits
from ..cluster.membership import Members
from ..cluster.progress import Progress
from ..cluster.stats import ApplierStats, WriteStats
from ..errors import InstanceError, StoreError
from ..store import Divergence, LogStore
from ..upstream.paths import HEARTBEAT
from ..upstream.transport import Transport
from .alerts import Alerts, backlog_alert, divergence_alert, lag_alert, recommendation_alert, store_alert
from .metrics import Metrics, RateTracker
from .pressure import (
    InstanceSample,
    Pressure,
    PressureTracker,
    ResourceSample,
    Sample,
    Thresholds,
    batch_limits,
)

log = logging.getLogger(__name__)

Sampler = Callable[[], ResourceSample]


class PsutilSampler:
    """CPU (since the previous call) and memory of this process and of the host."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)
        psutil.cpu_percent(None)

    def __call__(self) -> ResourceSample:
        memory = psutil.virtual_memory()
        return ResourceSample(
            process_cpu_percent=self._process.cpu_percent(None),
            process_memory_bytes=self._process.memory_info().rss,
            host_cpu_percent=psutil.cpu_percent(None),
            host_memory_percent=memory.percent,
            host_memory_available_bytes=memory.available,
            host_memory_total_bytes=memory.total,
        )


@dataclass(frozen=True)
class Position:
    cursor: int
    pending: int
    lag_seconds: float


async def log_positions(store: LogStore, cursors: Mapping[str, int], now: float) -> tuple[int, dict[str, Position]]:
    """The log head and, per instance, how many entries wait and how old the oldest of them is."""
    head = await store.head()
    created: dict[int, float | None] = {}
    positions = {}
    for instance, cursor in cursors.items():
        pending = max(0, head - cursor)
        lag = 0.0
        if pending:
            if cursor not in created:
                oldest = await store.read_keys(cursor, 1)
                created[cursor] = oldest[0].created_at if oldest else None
            at = created[cursor]
            lag = max(0.0, now - at) if at is not None else 0.0
        positions[instance] = Position(cursor, pending, round(lag, 3))
    return head, positions


class ResourceMonitor:
    def __init__(
        self,
        *,
        members: Members,
        interval: float,
        ping_timeout: float,
        thresholds: Thresholds,
        store: LogStore,
        client: Transport,
        health: HealthMonitor,
        progress: Progress,
        applier_stats: Mapping[str, ApplierStats],
        write_stats: WriteStats,
        alerts: Alerts,
        metrics: Metrics,
        limits: BatchLimits,
        sampler: Sampler | None = None,
    ) -> None:
        self._members = members
        self._interval = interval
        self._ping_timeout = ping_timeout
        self.thresholds = thresholds
        self._store = store
        self._client = client
        self._health = health
        self._progress = progress
        self._applier_stats = applier_stats
        self._write_stats = write_stats
        self._alerts = alerts
        self._metrics = metrics
        self._limits = limits
        self._sampler = sampler or PsutilSampler()
        self.tracker = PressureTracker(thresholds)
        self.appended = RateTracker()
        self.commits = RateTracker()  # the store's append transactions (group commit: fewer than entries)
        self.applied = RateTracker()
        self.applied_by_instance: dict[str, RateTracker] = {}
        self.latest: Sample | None = None
        self._heartbeats: dict[str, float] = {}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)

    def update_rates(self, now: float) -> None:
        self.appended.update(self._write_stats.appended_entries, now)
        self.commits.update(self._store.commit_stats.commits, now)
        total = 0
        for instance, stats in self._applier_stats.items():
            total += stats.applied_entries
            self.applied_by_instance.setdefault(instance, RateTracker()).update(stats.applied_entries, now)
        self.applied.update(total, now)

    async def measure(self, now: float, *, ping: bool = True) -> tuple[Sample, str, list[Divergence]]:
        """A sample of now, with the store's problem ("" when none) and the unresolved divergences. Without
        `ping`, the heartbeat latencies of the last sample are reused (for scrapes)."""
        resources = self._sampler()
        self.update_rates(now)
        if ping:
            self._heartbeats = await self._ping_instances()
        heartbeats = self._heartbeats
        problem, divergences = "", []
        head, oldest = 0, 0
        positions: dict[str, Position] = {}
        try:
            head, positions = await log_positions(self._store, self._progress.cursors, now)
            oldest = await self._store.oldest_seq()
            divergences = await self._store.divergences()
        except StoreError as exc:
            problem = str(exc) or type(exc).__name__
        instances = {
            i: InstanceSample(
                up=self._health.is_up(i),
                cursor=self._progress.cursors.get(i, 0),
                pending=positions[i].pending if i in positions else 0,
                lag_seconds=positions[i].lag_seconds if i in positions else 0.0,
                heartbeat_seconds=heartbeats.get(i),
            )
            for i in self._members.urls
        }
        sample = Sample(
            at=now,
            resources=resources,
            instances=instances,
            head=head,
            oldest=oldest,
            divergences=len(divergences),
            appended_per_second=self.appended.rate(60),
            applied_per_second=self.applied.rate(60),
        )
        self._metrics.update(sample)
        self._metrics.store_answered(not problem)
        self._metrics.feed_appliers()
        return sample, problem, divergences

    async def tick(self, now: float | None = None) -> Sample:
        """Take one sample and act on it."""
        now = time.time() if now is None else now
        sample, problem, divergences = await self.measure(now)
        self.latest = sample
        self._raise_alerts(sample, problem, divergences)
        started, cleared = self.tracker.add(sample)
        for pressure in started:
            await self._recommend(pressure)
        for kind in cleared:
            log.info("pressure %s cleared", kind)
        self._limits.set(
            batch_limits(
                self._limits.maxima,
                memory_percent=sample.resources.host_memory_percent,
                memory_threshold=self.thresholds.memory_percent,
                backlog=sample.backlog,
            )
        )
        self._metrics.batch_limit.set(self._limits.current.max_records)
        return sample

    async def _ping_instances(self) -> dict[str, float]:
        """Round trip of one heartbeat per instance; instances that do not answer are left out."""

        async def ping(instance: str) -> float | None:
            started = time.perf_counter()
            try:
                answer = await self._client.request(instance, "GET", HEARTBEAT, timeout=self._ping_timeout)
            except InstanceError:
                return None
            return time.perf_counter() - started if answer.ok else None

        instances = self._members.urls
        timings = await asyncio.gather(*(ping(i) for i in instances))
        return {i: t for i, t in zip(instances, timings, strict=True) if t is not None}

    def _raise_alerts(self, sample: Sample, store_problem: str, divergences: list[Divergence]) -> None:
        alerts, t = self._alerts, self.thresholds
        alerts.report(store_alert(store_problem), bool(store_problem))
        if store_problem:
            return  # positions and divergences are unknown, not cleared
        for instance, i in sample.instances.items():
            alerts.report(lag_alert(instance, i.lag_seconds, t.lag_seconds), i.up and i.lag_seconds > t.lag_seconds)
            alerts.report(backlog_alert(instance, i.pending, t.backlog_entries), i.pending > t.backlog_entries)
            seqs = sorted(d.seq for d in divergences if d.instance == instance)
            detail = f"{len(seqs)} entries diverged, the first at seq {seqs[0]}." if seqs else ""
            alerts.report(divergence_alert(instance, detail), bool(seqs))

    async def _recommend(self, pressure: Pressure) -> None:
        log.warning("upgrade recommended: %s", pressure.reason)
        try:
            await self._store.add_recommendation(pressure.kind, pressure.reason, pressure.details)
        except StoreError:
            log.exception("could not store the recommendation %s", pressure.kind)
        self._alerts.event(recommendation_alert(pressure.kind, pressure.reason, pressure.details))
