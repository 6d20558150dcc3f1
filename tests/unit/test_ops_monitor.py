"""The monitor over a real gateway object and SQLite store, with an injected resource sampler and a clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chroma_ha.app import Gateway
from chroma_ha.cluster.membership import ACTIVE, Members
from chroma_ha.errors import SettingsError
from chroma_ha.local_cluster import free_port
from chroma_ha.ops.monitor import PsutilSampler, ResourceMonitor
from chroma_ha.ops.pressure import ResourceSample, Thresholds
from chroma_ha.settings import HealthSettings, MonitorSettings, Settings
from chroma_ha.store import Member, Roster

WINDOW = 60.0
INTERVAL = 5.0


class FakeSampler:
    def __init__(self) -> None:
        self.memory = 40.0

    def __call__(self) -> ResourceSample:
        return ResourceSample(host_memory_percent=self.memory, host_cpu_percent=5.0, process_cpu_percent=5.0)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = Settings(
        instances=(f"http://127.0.0.1:{free_port()}",),
        store=f"sqlite:///{tmp_path / 'wal.db'}",
        monitor=MonitorSettings(pressure_window=WINDOW),
        health=HealthSettings(timeout=0.2),
    )
    gw = Gateway(settings)
    await gw.store.open()
    yield gw
    await gw.client.close()
    await gw.store.close()


def monitor_of(gw: Gateway, sampler: FakeSampler) -> ResourceMonitor:
    """The gateway's monitor, with the sampler in place of psutil."""
    s = gw.settings
    for url in s.instances:
        gw.health.watch(url)  # as the gateway's start does for its members
    return ResourceMonitor(
        members=Members(Roster(1, tuple(Member(url, ACTIVE, 0.0) for url in s.instances))),
        interval=s.monitor.interval,
        ping_timeout=s.health.timeout,
        thresholds=Thresholds.from_settings(s.monitor),
        store=gw.store,
        client=gw.client,
        health=gw.health,
        progress=gw.progress,
        applier_stats=gw.applier_stats,
        write_stats=gw.write_stats,
        alerts=gw.alerts,
        metrics=gw.metrics,
        limits=gw.limits,
        sampler=sampler,
    )


async def run(monitor: ResourceMonitor, start: float, seconds: float) -> float:
    t = start
    while t < start + seconds:
        await monitor.tick(t)
        t += INTERVAL
    return t


async def test_sustained_memory_pressure_is_recommended_once_and_alerted(gateway: Gateway) -> None:
    sampler = FakeSampler()
    monitor = monitor_of(gateway, sampler)
    t = await run(monitor, 1000.0, 120)
    assert await gateway.store.recommendations() == []
    sampler.memory = 93.0
    t = await run(monitor, t, WINDOW * 3)
    [recommendation] = await gateway.store.recommendations()
    assert recommendation.kind == "memory" and "93%" in recommendation.reason
    assert recommendation.details["host_memory_percent"] == 93.0
    assert [a["key"] for a in gateway.alerts.recent if a["status"] == "event"] == ["recommendation:memory"]
    assert "memory" in monitor.tracker.active
    # shrunk under pressure
    assert gateway.limits.current.max_records < gateway.settings.replication.batch_max_records // 2
    sampler.memory = 40.0
    await run(monitor, t, INTERVAL * 2)
    assert monitor.tracker.active == {}
    assert gateway.limits.current.max_records == gateway.settings.replication.batch_max_records // 2


async def test_a_short_spike_is_not_recommended(gateway: Gateway) -> None:
    sampler = FakeSampler()
    monitor = monitor_of(gateway, sampler)
    t = await run(monitor, 1000.0, 120)
    sampler.memory = 99.0
    t = await run(monitor, t, WINDOW / 3)
    sampler.memory = 40.0
    await run(monitor, t, WINDOW * 2)
    assert await gateway.store.recommendations() == []
    assert list(gateway.alerts.recent) == []


async def test_an_unreachable_instance_has_no_heartbeat_and_the_sample_has_the_log(gateway: Gateway) -> None:
    monitor = monitor_of(gateway, FakeSampler())
    sample = await monitor.tick(1.0)
    [instance] = sample.instances.values()
    assert instance.heartbeat_seconds is None
    assert sample.head == 0 and sample.backlog == 0


def test_the_psutil_sampler_reads_this_process_and_host() -> None:
    sample = PsutilSampler()()
    assert sample.process_memory_bytes > 0
    assert 0 < sample.host_memory_percent <= 100
    assert sample.host_memory_total_bytes >= sample.host_memory_available_bytes > 0


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"CHROMA_HA_MEMORY_THRESHOLD": "120"}, "memory_threshold"),
        ({"CHROMA_HA_CPU_THRESHOLD": "0"}, "cpu_threshold"),
        ({"CHROMA_HA_PRESSURE_WINDOW": "-5"}, "pressure_window"),
        ({"CHROMA_HA_DOWN_RATIO_THRESHOLD": "2"}, "down_ratio_threshold"),
        ({"CHROMA_HA_BACKLOG_THRESHOLD": "0"}, "backlog_threshold"),
        ({"CHROMA_HA_ALERT_RATE_PER_MINUTE": "0"}, "alert_rate_per_minute"),
        ({"CHROMA_HA_ALERT_MIN_INTERVAL": "-1"}, "alert_min_interval"),
    ],
)
def test_a_bad_operations_setting_is_named(env: dict[str, str], setting: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.load(env=env)
    assert info.value.setting == setting


def test_operations_settings_come_from_the_environment() -> None:
    settings = Settings.load(env={"CHROMA_HA_LAG_THRESHOLD": "5", "CHROMA_HA_ADMIN_TOKEN": "s3cret"})
    assert settings.monitor.lag_threshold == 5.0
    assert settings.redacted()["admin_token"] == "***"
