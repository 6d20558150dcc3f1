"""Sustained pressure becomes a recommendation, a short spike does not; batch sizes follow memory and backlog."""

from __future__ import annotations

from chroma_ha.cluster.limits import Limits
from chroma_ha.ops.pressure import (
    InstanceSample,
    PressureTracker,
    ResourceSample,
    Sample,
    Thresholds,
    assess,
    batch_limits,
    sustained,
)

T = Thresholds(window=300, cpu_percent=85, memory_percent=85, lag_seconds=60, backlog_entries=1000, down_ratio=0.5)
A = "http://a:1"


def sample(at: float, *, memory: float = 40, cpu: float = 10, pending: int = 0, lag: float = 0.0, up: bool = True):
    return Sample(
        at=at,
        resources=ResourceSample(host_memory_percent=memory, host_cpu_percent=cpu, process_cpu_percent=cpu),
        instances={A: InstanceSample(up=up, pending=pending, lag_seconds=lag)},
    )


def every(seconds: float, until: float, **kw: object) -> list[Sample]:
    return [sample(float(t), **kw) for t in range(0, int(until) + 1, int(seconds))]  # type: ignore[arg-type]


def kinds(samples: list[Sample], now: float) -> list[str]:
    return [p.kind for p in assess(samples, T, now)]


def test_memory_over_the_threshold_for_the_whole_window_is_sustained() -> None:
    samples = every(5, 600, memory=92)
    assert kinds(samples, 600) == ["memory"]
    [pressure] = assess(samples, T, 600)
    assert "memory" in pressure.reason and "92%" in pressure.reason


def test_a_short_spike_is_not_sustained() -> None:
    samples = every(5, 600)
    spiked = [sample(s.at, memory=95, cpu=99) if 500 <= s.at <= 530 else s for s in samples]
    assert kinds(spiked, 600) == []


def test_too_little_history_is_not_judged() -> None:
    assert kinds(every(5, 60, memory=99, cpu=99), 60) == []
    assert not sustained(every(5, 60, memory=99), 300, 60, lambda s: True)


def test_cpu_of_the_gateway_process_alone_counts() -> None:
    samples = [
        Sample(at=float(t), resources=ResourceSample(host_cpu_percent=30, process_cpu_percent=97))
        for t in range(0, 301, 5)
    ]
    assert kinds(samples, 300) == ["cpu"]


def test_a_backlog_that_grows_without_draining() -> None:
    growing = [sample(float(t), pending=100 + t) for t in range(0, 301, 5)]
    assert "backlog" in kinds(growing, 300)
    draining_once = [sample(s.at, pending=0) if s.at == 150 else s for s in growing]
    assert "backlog" not in kinds(draining_once, 300)
    steady = [sample(float(t), pending=100) for t in range(0, 301, 5)]
    assert "backlog" not in kinds(steady, 300)


def test_lag_of_an_up_instance_over_the_threshold() -> None:
    assert kinds(every(5, 300, lag=120.0), 300) == [f"lag:{A}"]
    assert kinds(every(5, 300, lag=30.0), 300) == []


def test_an_instance_often_down() -> None:
    flapping = [sample(float(t), up=(t // 5) % 3 == 0, lag=500.0) for t in range(0, 301, 5)]
    assert kinds(flapping, 300) == [f"instance:{A}"]  # its lag is its being down, not a slow machine
    rarely = [sample(float(t), up=t != 100) for t in range(0, 301, 5)]
    assert kinds(rarely, 300) == []


def test_the_tracker_reports_a_pressure_once_and_again_after_it_cleared() -> None:
    tracker = PressureTracker(T)
    reported = []
    for t in range(0, 1201, 5):
        memory = 95 if t < 600 or t >= 900 else 50
        started, cleared = tracker.add(sample(float(t), memory=memory))
        reported.extend((t, p.kind) for p in started)
        if cleared:
            reported.append((t, "cleared"))
    assert [kind for _, kind in reported] == ["memory", "cleared", "memory"]
    first, _, again = (t for t, _ in reported)
    assert first == 300 and again == 900 + 300


def test_batches_shrink_under_memory_pressure_and_grow_with_a_long_backlog() -> None:
    maxima = Limits(2000, 16 * 2**20)
    normal = batch_limits(maxima, memory_percent=40, memory_threshold=85, backlog=10)
    pressed = batch_limits(maxima, memory_percent=90, memory_threshold=85, backlog=50_000)
    long = batch_limits(maxima, memory_percent=40, memory_threshold=85, backlog=50_000)
    assert pressed.max_records < normal.max_records < long.max_records == maxima.max_records
    assert pressed.max_bytes < normal.max_bytes < long.max_bytes == maxima.max_bytes
    assert batch_limits(Limits(1, 1), memory_percent=99, memory_threshold=85, backlog=0) == Limits(1, 1)
