"""Pure decisions of the resource monitor: what one sample holds, when pressure is sustained enough to become an
upgrade recommendation, and how big the appliers' batches should be. No I/O and no clock: time comes with samples.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..cluster.limits import Limits

if TYPE_CHECKING:
    from ..settings import MonitorSettings

HISTORY_S = 3600.0  # samples kept: the dashboard's hour, which also covers any pressure window
BACKLOG_GROWTH = 1.5  # a backlog that never drained and grew by half over the window is "growing"
NORMAL_BATCH_SHARE = 0.5  # of the settings' maxima, when nothing presses
PRESSED_BATCH_SHARE = 0.125  # under memory pressure


@dataclass(frozen=True)
class ResourceSample:
    process_cpu_percent: float = 0.0
    process_memory_bytes: int = 0
    host_cpu_percent: float = 0.0
    host_memory_percent: float = 0.0
    host_memory_available_bytes: int = 0
    host_memory_total_bytes: int = 0


@dataclass(frozen=True)
class InstanceSample:
    up: bool = True
    cursor: int = 0
    pending: int = 0
    lag_seconds: float = 0.0
    heartbeat_seconds: float | None = None


@dataclass(frozen=True)
class Sample:
    at: float
    resources: ResourceSample = field(default_factory=ResourceSample)
    instances: Mapping[str, InstanceSample] = field(default_factory=dict)
    head: int = 0
    oldest: int = 0
    divergences: int = 0
    appended_per_second: float = 0.0
    applied_per_second: float = 0.0

    @property
    def backlog(self) -> int:
        return max((i.pending for i in self.instances.values()), default=0)

    @property
    def max_lag(self) -> float:
        return max((i.lag_seconds for i in self.instances.values()), default=0.0)


@dataclass(frozen=True)
class Thresholds:
    window: float
    cpu_percent: float
    memory_percent: float
    lag_seconds: float
    backlog_entries: int
    down_ratio: float

    @classmethod
    def from_settings(cls, monitor: MonitorSettings) -> Thresholds:
        return cls(
            window=monitor.pressure_window,
            cpu_percent=monitor.cpu_threshold,
            memory_percent=monitor.memory_threshold,
            lag_seconds=monitor.lag_threshold,
            backlog_entries=monitor.backlog_threshold,
            down_ratio=monitor.down_ratio_threshold,
        )


@dataclass(frozen=True)
class Pressure:
    """A sustained condition that calls for an upgrade; `kind` identifies it while it lasts."""

    kind: str
    reason: str
    details: dict[str, Any]


def in_window(samples: Sequence[Sample], window: float, now: float) -> list[Sample]:
    """The samples of the last `window` seconds, or [] while the history is younger than the window."""
    if not samples or samples[0].at > now - window:
        return []
    return [s for s in samples if s.at >= now - window]


def sustained(samples: Sequence[Sample], window: float, now: float, over: Callable[[Sample], bool]) -> bool:
    """True when every sample of a well-covered window is over the threshold: a short spike is not enough."""
    recent = in_window(samples, window, now)
    return bool(recent) and all(over(s) for s in recent)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def assess(samples: Sequence[Sample], t: Thresholds, now: float) -> list[Pressure]:
    """Every sustained pressure in the window ending at `now`."""
    recent = in_window(samples, t.window, now)
    if not recent:
        return []
    last, span = recent[-1], _minutes(t.window)
    found: list[Pressure] = []
    r = last.resources
    if all(s.resources.host_memory_percent >= t.memory_percent for s in recent):
        found.append(
            Pressure(
                "memory",
                (
                    f"Host memory has stayed above {t.memory_percent:g}% for {span} "
                    f"(now {r.host_memory_percent:.0f}%, gateway process {r.process_memory_bytes / 2**20:.0f} MiB): "
                    "move the gateway to a machine with more memory, or give this one more."
                ),
                {"host_memory_percent": r.host_memory_percent, "process_memory_bytes": r.process_memory_bytes},
            )
        )
    if all(max(s.resources.host_cpu_percent, s.resources.process_cpu_percent) >= t.cpu_percent for s in recent):
        found.append(
            Pressure(
                "cpu",
                (
                    f"CPU has stayed above {t.cpu_percent:g}% for {span} (host {r.host_cpu_percent:.0f}%, gateway "
                    f"process {r.process_cpu_percent:.0f}%): give the gateway more CPU, or run more gateways on a "
                    "shared PostgreSQL store behind a load balancer."
                ),
                {"host_cpu_percent": r.host_cpu_percent, "process_cpu_percent": r.process_cpu_percent},
            )
        )
    first = recent[0]
    if all(s.backlog > 0 for s in recent) and last.backlog >= first.backlog * BACKLOG_GROWTH:
        found.append(
            Pressure(
                "backlog",
                (
                    f"The log backlog grew from {first.backlog} to {last.backlog} entries over {span} without "
                    "draining: the instances cannot keep up with the write rate; give them faster CPUs and disks."
                ),
                {"from": first.backlog, "to": last.backlog},
            )
        )
    for instance in last.instances:
        found.extend(_instance_pressure(instance, recent, t, span))
    return found


def _instance_pressure(instance: str, recent: Sequence[Sample], t: Thresholds, span: str) -> Iterable[Pressure]:
    states = [s.instances.get(instance) for s in recent]
    if not all(states):
        return
    seen = [s for s in states if s is not None]
    down = sum(1 for s in seen if not s.up) / len(seen)
    if down >= t.down_ratio:
        yield Pressure(
            f"instance:{instance}",
            (
                f"Instance {instance} was down {down:.0%} of the last {span}: replace its machine or find why it "
                "stops; until then the others carry its reads."
            ),
            {"instance": instance, "down_ratio": round(down, 3)},
        )
    elif all(s.up and s.lag_seconds > t.lag_seconds for s in seen):
        yield Pressure(
            f"lag:{instance}",
            (
                f"Instance {instance} has lagged more than {t.lag_seconds:g}s behind the log for {span} "
                f"(now {seen[-1].lag_seconds:.0f}s): it needs more CPU or faster disks."
            ),
            {"instance": instance, "lag_seconds": round(seen[-1].lag_seconds, 3)},
        )


class PressureTracker:
    """Keeps the last hour of samples and the pressures in force; reports each pressure once when it starts."""

    def __init__(self, thresholds: Thresholds, keep_seconds: float = HISTORY_S) -> None:
        self.thresholds = thresholds
        self.samples: deque[Sample] = deque()
        self.active: dict[str, Pressure] = {}
        self._keep = max(keep_seconds, thresholds.window)

    def add(self, sample: Sample) -> tuple[list[Pressure], list[str]]:
        """Record a sample; return the pressures that just started and the kinds that just cleared."""
        self.samples.append(sample)
        while self.samples and self.samples[0].at < sample.at - self._keep:
            self.samples.popleft()
        current = {p.kind: p for p in assess(self.samples, self.thresholds, sample.at)}
        started = [p for kind, p in current.items() if kind not in self.active]
        cleared = [kind for kind in self.active if kind not in current]
        self.active = current
        return started, cleared


def batch_limits(maxima: Limits, *, memory_percent: float, memory_threshold: float, backlog: int) -> Limits:
    """Batch size for the appliers: small under memory pressure, the full maxima while more than a full batch
    waits, half of them otherwise."""
    if memory_percent >= memory_threshold:
        share = PRESSED_BATCH_SHARE
    elif backlog >= maxima.max_records:
        share = 1.0
    else:
        share = NORMAL_BATCH_SHARE
    return Limits(max(1, int(maxima.max_records * share)), max(1, int(maxima.max_bytes * share)))
