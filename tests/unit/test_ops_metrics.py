"""Rolling rates, percentiles, and the Prometheus registry the gateway owns."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from chroma_ha.cluster.stats import ApplierStats, WriteStats
from chroma_ha.ops.metrics import Metrics, RateTracker, _RequestCounts, percentiles
from chroma_ha.ops.pressure import InstanceSample, ResourceSample, Sample


def values(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_percentiles_by_nearest_rank() -> None:
    assert percentiles([]) == {}
    assert percentiles(range(1, 101)) == {"p50": 50, "p90": 90, "p99": 99, "max": 100}
    assert percentiles([7.0]) == {"p50": 7.0, "p90": 7.0, "p99": 7.0, "max": 7.0}


def test_rates_over_trailing_windows() -> None:
    rates = RateTracker()
    for t in range(0, 901):
        rates.update(t * 2 if t <= 600 else 1200, float(t))  # 2/s for ten minutes, then nothing
    assert rates.rate(60) == 0.0
    assert abs(rates.rate(900) - 1200 / 900) < 0.01
    assert abs(rates.rate(600) - 2 * 300 / 600) < 0.01
    assert set(rates.rates()) == {"1m", "5m", "15m"}


def test_a_young_tracker_counts_nothing_before_its_first_snapshot() -> None:
    rates = RateTracker()
    assert rates.rate(60) == 0.0
    rates.update(0, 100.0)
    rates.update(30, 110.0)
    assert rates.rate(60) == 0.5  # 30 entries in the last minute
    assert rates.rate(5) == 3.0


class Alerts:
    sent = 0
    failed = 0
    suppressed = 0


def metrics_of(stats: dict[str, ApplierStats] | None = None, writes: WriteStats | None = None) -> Metrics:
    return Metrics(stats or {}, writes or WriteStats(), Alerts())


def test_the_registry_is_the_gateways_own_and_parses() -> None:
    metrics = metrics_of()
    metrics.observe_request("read", "http://a:1", 200, 0.002)
    metrics.observe_request("read", "http://a:1", 200, 0.004)
    metrics.observe_request("write", "log", 201, 0.01)
    metrics.update(
        Sample(
            at=1.0,
            resources=ResourceSample(host_memory_percent=42.0),
            head=10,
            instances={
                "http://a:1": InstanceSample(up=True, cursor=10),
                "http://b:2": InstanceSample(up=False, cursor=4, pending=6),
            },
        )
    )
    found = values(metrics)
    reads = ("chroma_ha_requests_total", (("instance", "http://a:1"), ("route_class", "read"), ("status", "200")))
    assert found[reads] == 2
    assert found[("chroma_ha_request_duration_seconds_count", (("instance", "log"), ("route_class", "write")))] == 1
    read = (("instance", "http://a:1"), ("route_class", "read"))

    def bucket(le: str) -> float:
        return found[("chroma_ha_request_duration_seconds_bucket", tuple(sorted((*read, ("le", le)))))]

    # cumulative buckets, each `le` inclusive: 2 ms falls in 0.0025, 4 ms in 0.005
    assert (bucket("0.001"), bucket("0.0025"), bucket("0.005"), bucket("10.0"), bucket("+Inf")) == (0, 1, 2, 2, 2)
    assert abs(found[("chroma_ha_request_duration_seconds_sum", read)] - 0.006) < 1e-12
    metrics.observe_request("read", "http://a:1", 200, 0.0025)  # on a bound: in that bucket
    metrics.observe_request("read", "http://a:1", 200, 99.0)  # past the last bound: +Inf only
    found = values(metrics)
    assert (bucket("0.0025"), bucket("30.0"), bucket("+Inf")) == (2, 3, 4)
    assert found[("chroma_ha_log_head_seq", ())] == 10
    assert found[("chroma_ha_instance_up", (("instance", "http://b:2"),))] == 0
    assert found[("chroma_ha_instance_backlog_entries", (("instance", "http://b:2"),))] == 6
    assert found[("chroma_ha_host_memory_percent", ())] == 42.0
    assert ("process_resident_memory_bytes", ()) in found
    assert REGISTRY.get_sample_value("chroma_ha_log_head_seq") is None


def test_applier_counters_and_new_batches_are_read_from_the_stats() -> None:
    stats = ApplierStats(applied_entries=3, applied_batches=2, retries=5)
    stats.batch_sizes.extend([1, 2])
    stats.lags.extend([0.01, 0.02, 0.03])
    metrics = metrics_of({"http://a:1": stats}, WriteStats(appended_entries=3))
    metrics.feed_appliers()
    metrics.feed_appliers()  # nothing new: nothing observed twice
    found = values(metrics)
    a = (("instance", "http://a:1"),)
    assert found[("chroma_ha_applier_retries_total", a)] == 5
    assert found[("chroma_ha_log_appended_entries_total", ())] == 3
    assert found[("chroma_ha_applier_batch_entries_count", a)] == 2
    assert found[("chroma_ha_applier_batch_entries_sum", a)] == 3
    assert found[("chroma_ha_apply_lag_seconds_count", a)] == 3


def test_requests_noted_across_a_fold_are_each_counted_once() -> None:
    metrics = metrics_of()
    noted = _RequestCounts.FOLD_EVERY + 5  # one fold on the way (bounding memory when nothing scrapes), then more
    for n in range(noted):
        metrics.observe_request("read", "http://a:1", 200 if n % 2 else 404, 0.002)
    found = values(metrics)
    labels = (("instance", "http://a:1"), ("route_class", "read"))
    assert found[("chroma_ha_requests_total", (*labels, ("status", "200")))] == noted // 2
    assert found[("chroma_ha_requests_total", (*labels, ("status", "404")))] == noted - noted // 2
    assert found[("chroma_ha_request_duration_seconds_count", labels)] == noted
    again = values(metrics)  # a second scrape adds nothing
    assert {k: v for k, v in again.items() if k[0].startswith("chroma_ha_request")} == {
        k: v for k, v in found.items() if k[0].startswith("chroma_ha_request")
    }
