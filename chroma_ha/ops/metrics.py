"""Metrics: Prometheus series in a registry the gateway owns, request timing, rolling rates and percentiles.

The request path only calls `Metrics.observe_request` (plain counters, made into series at scrape time). Everything
else (log head, cursors, lag, resources) is set from a `Sample` by the resource monitor and again at each scrape.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ..cluster.stats import ApplierStats, WriteStats
from ..store import CommitStats

if TYPE_CHECKING:
    from .pressure import Sample

PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
RATE_WINDOWS_S = (60, 300, 900)
PERCENTILES = (50, 90, 99)


def percentiles(values: Iterable[float], points: Sequence[int] = PERCENTILES) -> dict[str, float]:
    """Nearest-rank percentiles of `values` (plus max), as {"p50": ..., "max": ...}; empty input gives {}."""
    ordered = sorted(values)
    if not ordered:
        return {}
    result = {f"p{p}": ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] for p in points}
    result["max"] = ordered[-1]
    return result


class RateTracker:
    """Rates of a cumulative counter over trailing windows, from (time, total) snapshots kept 15 minutes."""

    def __init__(self, keep_seconds: float = max(RATE_WINDOWS_S) + 60, resolution: float = 1.0) -> None:
        self._snapshots: deque[tuple[float, float]] = deque()
        self._keep = keep_seconds
        self._resolution = resolution

    def update(self, total: float, now: float) -> None:
        if self._snapshots and now - self._snapshots[-1][0] < self._resolution and len(self._snapshots) > 1:
            self._snapshots[-1] = (self._snapshots[-1][0], total)
        else:
            self._snapshots.append((now, total))
        while self._snapshots and self._snapshots[0][0] < now - self._keep:
            self._snapshots.popleft()

    def rate(self, window: float) -> float:
        """Per second over the last `window` seconds, from the newest snapshot at or before its start. A history
        younger than the window counts as nothing before it, so the first seconds do not read as a burst."""
        if len(self._snapshots) < 2:
            return 0.0
        end_t, end = self._snapshots[-1]
        start_t, start = self._snapshots[0]
        for t, total in self._snapshots:
            if t > end_t - window:
                break
            start_t, start = t, total
        elapsed = window if start_t > end_t - window else end_t - start_t
        return 0.0 if elapsed <= 0 else max(0.0, end - start) / elapsed

    def rates(self) -> dict[str, float]:
        return {f"{int(w // 60)}m": round(self.rate(w), 3) for w in RATE_WINDOWS_S}


class AlertCounts(Protocol):
    sent: int
    failed: int
    suppressed: int


class _Counters(Collector):
    """Cumulative applier, write-path and alert counters, read at scrape time from the objects that own them."""

    def __init__(
        self, stats: Mapping[str, ApplierStats], writes: WriteStats, alerts: AlertCounts, commits: CommitStats
    ):
        self._stats = stats
        self._writes = writes
        self._alerts = alerts
        self._commits = commits

    def _totals(self) -> dict[str, float]:
        writes, alerts = self._writes, self._alerts
        return {
            "log_appended_entries": float(writes.appended_entries),
            "log_appended_bytes": float(writes.appended_bytes),
            # entries per commit: rate(chroma_ha_log_committed_entries) / rate(chroma_ha_log_commits)
            "log_commits": float(self._commits.commits),
            "log_committed_entries": float(self._commits.entries),
            "deletes_converted": float(writes.deletes_converted),
            "alerts_sent": float(alerts.sent),
            "alerts_failed": float(alerts.failed),
            "alerts_suppressed": float(alerts.suppressed),
        }

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        per_instance = {
            "applied_entries": "Log entries applied to the instance",
            "applied_batches": "Chroma calls made by the instance's applier",
            "applied_bytes": "Bytes of request bodies applied to the instance",
            "retries": "Transient failures retried by the instance's applier",
            "rejections": "Entries the instance rejected (4xx for the payload)",
        }
        for name, documentation in per_instance.items():
            family = CounterMetricFamily(f"chroma_ha_applier_{name}", documentation, labels=["instance"])
            for instance, s in stats.items():
                family.add_metric([instance], float(getattr(s, name)))
            yield family
        for name, value in self._totals().items():
            yield CounterMetricFamily(f"chroma_ha_{name}", name.replace("_", " "), value=value)


class _RequestCounts(Collector):
    """Client requests, noted on the request path as plain tuples and folded into counts and per-bucket timings at
    scrape time (or every `FOLD_EVERY` requests, to bound memory when nothing scrapes). A prometheus_client counter
    and histogram would take three locks per request, and even folding each request as it comes costs a proxied
    query more than noting it. The event loop is the only writer and the scrape runs on it too."""

    FOLD_EVERY = 4096
    _BOUNDS = [*(floatToGoString(b) for b in REQUEST_BUCKETS), "+Inf"]

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        self.timings: dict[tuple[str, str], list[float]] = {}  # per bucket (not cumulative), then the sum
        self._unfolded: list[tuple[str, str, int, float]] = []

    def observe(self, route_class: str, instance: str, status: int, seconds: float) -> None:
        unfolded = self._unfolded
        unfolded.append((route_class, instance, status, seconds))
        if len(unfolded) >= self.FOLD_EVERY:
            self._fold()

    def _fold(self) -> None:
        unfolded, self._unfolded = self._unfolded, []
        for route_class, instance, status, seconds in unfolded:
            key = (route_class, instance, status)
            self.counts[key] = self.counts.get(key, 0) + 1
            timing = self.timings.get(key[:2])
            if timing is None:
                timing = self.timings[key[:2]] = [0.0] * (len(self._BOUNDS) + 1)
            timing[bisect.bisect_left(REQUEST_BUCKETS, seconds)] += 1
            timing[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        self._fold()
        requests = CounterMetricFamily(
            "chroma_ha_requests",
            "Client requests by route class, answering instance and status",
            labels=["route_class", "instance", "status"],
        )
        for (route_class, instance, status), count in self.counts.items():
            requests.add_metric([route_class, instance, str(status)], count)
        yield requests
        durations = HistogramMetricFamily(
            "chroma_ha_request_duration_seconds",
            "Time the gateway took to answer, by route class and instance",
            labels=["route_class", "instance"],
        )
        for labels, timing in self.timings.items():
            cumulative = list(zip(self._BOUNDS, itertools.accumulate(timing[:-1]), strict=True))
            durations.add_metric(list(labels), cumulative, sum_value=timing[-1])
        yield durations


class Metrics:
    def __init__(
        self,
        applier_stats: Mapping[str, ApplierStats],
        writes: WriteStats,
        alerts: AlertCounts,
        commits: CommitStats | None = None,
    ) -> None:
        """`commits`: the store's append transactions (none counted when not given)."""
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self._requests = _RequestCounts()
        r.register(self._requests)
        r.register(_Counters(applier_stats, writes, alerts, commits or CommitStats()))
        self._applier_stats = applier_stats
        # What the request path calls, once per request: (route class, answering instance, status, seconds).
        self.observe_request: Callable[[str, str, int, float], None] = self._requests.observe
        self.head = Gauge("chroma_ha_log_head_seq", "Highest seq in the log", registry=r)
        self.oldest = Gauge("chroma_ha_log_oldest_seq", "Oldest seq kept in the log", registry=r)
        self.backlog_total = Gauge("chroma_ha_log_backlog_entries", "Entries not yet applied everywhere", registry=r)
        self.cursor = Gauge("chroma_ha_instance_cursor_seq", "Last seq applied", ["instance"], registry=r)
        self.backlog = Gauge("chroma_ha_instance_backlog_entries", "Entries waiting", ["instance"], registry=r)
        self.lag = Gauge("chroma_ha_instance_lag_seconds", "Age of the oldest entry waiting", ["instance"], registry=r)
        self.up = Gauge("chroma_ha_instance_up", "1 when the instance is up", ["instance"], registry=r)
        self.heartbeat = Gauge(
            "chroma_ha_instance_heartbeat_seconds",
            "Heartbeat round trip measured by the monitor",
            ["instance"],
            registry=r,
        )
        self.divergences = Gauge("chroma_ha_divergences", "Unresolved divergences", registry=r)
        self.store_up = Gauge("chroma_ha_store_up", "1 when the log store answered the last sample", registry=r)
        self.batch = Histogram(
            "chroma_ha_applier_batch_entries",
            "Entries per Chroma call",
            ["instance"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.apply_lag = Histogram(
            "chroma_ha_apply_lag_seconds",
            "Time from an entry's append to its commit on the instance",
            ["instance"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.batch_limit = Gauge("chroma_ha_batch_limit_records", "Current adaptive batch limit", registry=r)
        resource = "Resource figures sampled with psutil"
        self.resources = {
            name: Gauge(f"chroma_ha_{name}", f"{resource}: {name.replace('_', ' ')}", registry=r)
            for name in (
                "process_cpu_percent",
                "process_memory_bytes",
                "host_cpu_percent",
                "host_memory_percent",
                "host_memory_available_bytes",
                "host_memory_total_bytes",
            )
        }
        ProcessCollector(registry=r)
        self._seen: dict[str, tuple[int, int]] = {}
        self._shown: set[str] = set()  # the instances the per-instance gauges have series for

    def feed_appliers(self) -> None:
        """Observe the batch sizes and apply lags the appliers recorded since the last call."""
        for instance, s in self._applier_stats.items():
            seen_batches, seen_entries = self._seen.get(instance, (0, 0))
            new_batches = min(s.applied_batches - seen_batches, len(s.batch_sizes))
            new_entries = min(s.applied_entries - seen_entries, len(s.lags))
            self._seen[instance] = (s.applied_batches, s.applied_entries)
            if new_batches > 0:
                batch = self.batch.labels(instance)
                for size in list(s.batch_sizes)[-new_batches:]:
                    batch.observe(size)
            if new_entries > 0:
                lag = self.apply_lag.labels(instance)
                for seconds in list(s.lags)[-new_entries:]:
                    lag.observe(seconds)

    def update(self, sample: Sample) -> None:
        self.head.set(sample.head)
        self.oldest.set(sample.oldest)
        self.backlog_total.set(sample.backlog)
        self.divergences.set(sample.divergences)
        for gone in self._shown - set(sample.instances):  # a removed instance: its series end with it
            for gauge in (self.cursor, self.backlog, self.lag, self.up, self.heartbeat):
                gauge.remove(gone)
        self._shown = set(sample.instances)
        for instance, i in sample.instances.items():
            self.cursor.labels(instance).set(i.cursor)
            self.backlog.labels(instance).set(i.pending)
            self.lag.labels(instance).set(i.lag_seconds)
            self.up.labels(instance).set(1 if i.up else 0)
            self.heartbeat.labels(instance).set(i.heartbeat_seconds if i.heartbeat_seconds is not None else math.nan)
        for name, gauge in self.resources.items():
            gauge.set(getattr(sample.resources, name))

    def store_answered(self, answered: bool) -> None:
        self.store_up.set(1 if answered else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
