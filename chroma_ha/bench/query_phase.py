"""Query throughput and single-query latency, direct Chroma and through the gateway, measured side by side.

Both targets are measured in alternating rounds (A B, then B A, ...) and single-query samples alternate one by
one, so a slow moment of this shared machine costs both sides alike instead of skewing the ratio.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
import psutil

from .payloads import Endpoint
from .stats import ms, percentile_ms
from .workloads import LoadResult, closed_loop, cycling, timed_post


@dataclass
class ThroughputResult:
    concurrency: int
    direct: LoadResult
    gateway: LoadResult
    gateway_cpu_seconds: float
    round_ratios: list[float] = field(default_factory=list)  # gateway/direct of each pair of rounds

    @property
    def ratio(self) -> float:
        return self.gateway.rate / self.direct.rate if self.direct.rate else 0.0

    @property
    def gateway_cpu_ms_per_query(self) -> float:
        return ms(self.gateway_cpu_seconds) / self.gateway.completed if self.gateway.completed else 0.0


@dataclass
class LatencyResult:
    direct: list[float] = field(default_factory=list)
    gateway: list[float] = field(default_factory=list)
    errors: int = 0

    def p(self, side: str, q: float) -> float:
        return percentile_ms(getattr(self, side), q)

    @property
    def added_p50_ms(self) -> float:
        return self.p("gateway", 50) - self.p("direct", 50)


class CpuMeter:
    """CPU seconds (user + system) a process has used; the gateway's, to price one proxied query."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)

    def seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)


async def warm_up(
    session: aiohttp.ClientSession, targets: list[Endpoint], bodies: list[bytes], concurrency: int, seconds: float
) -> None:
    if seconds <= 0:
        return
    for target in targets:
        await closed_loop(session, target.url("query"), cycling(bodies), concurrency, seconds)


async def measure_throughput(
    session: aiohttp.ClientSession, direct: Endpoint, gateway: Endpoint, bodies: list[bytes], *,
    concurrency: int, seconds: float, rounds: int, gateway_cpu: CpuMeter,
) -> ThroughputResult:
    result = ThroughputResult(concurrency, LoadResult(), LoadResult(), 0.0)
    window = seconds / rounds
    for n in range(rounds):
        order = (direct, gateway) if n % 2 == 0 else (gateway, direct)
        gateway_rate = direct_rate = 0.0
        for target in order:
            cpu_before = gateway_cpu.seconds()
            measured = await closed_loop(session, target.url("query"), cycling(bodies), concurrency, window)
            if target is gateway:
                result.gateway_cpu_seconds += gateway_cpu.seconds() - cpu_before
                result.gateway.merge(measured)
                gateway_rate = measured.rate
            else:
                result.direct.merge(measured)
                direct_rate = measured.rate
        if direct_rate:
            result.round_ratios.append(gateway_rate / direct_rate)
    return result


async def measure_latency(
    session: aiohttp.ClientSession, direct: Endpoint, gateway: Endpoint, bodies: list[bytes], samples: int
) -> LatencyResult:
    """One query at a time, alternating targets, so both see the same conditions."""
    result = LatencyResult()
    for n in range(samples):
        body = bodies[n % len(bodies)]
        for target, into in ((direct, result.direct), (gateway, result.gateway))[:: 1 if n % 2 == 0 else -1]:
            status, took = await timed_post(session, target.url("query"), body)
            if status == 200:
                into.append(took)
            else:
                result.errors += 1
    return result
