"""Query throughput and single-query latency, direct Chroma and through the gateway, measured side by side.

The two sides take turns as closely as the load allows: query by query at concurrency 1 and for single-query
latency, round by round (A B, then B A, ...) at higher concurrency. A slow moment of this shared machine then
costs both sides alike instead of skewing the ratio.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from .host import cpu_seconds_of
from .payloads import Endpoint
from .stats import ms, percentile_ms
from .workloads import BodyFactory, LoadResult, closed_loop, cycling, recorded_post


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
    """CPU seconds (user + system) some processes have used together; the gateways', to price one proxied query."""

    def __init__(self, *pids: int) -> None:
        self._readers = [cpu_seconds_of(pid) for pid in pids]

    def seconds(self) -> float:
        return sum(read() for read in self._readers)

    async def rate_at_rest(self, seconds: float) -> float:
        """CPU seconds per second while nothing is sent: health probes, appliers waiting, leases, monitors. At
        concurrency 1 the gateway is idle while the direct side takes its turn, so this is part of its price."""
        before, started = self.seconds(), time.perf_counter()
        await asyncio.sleep(seconds)
        return (self.seconds() - before) / (time.perf_counter() - started)


async def warm_up(
    session: aiohttp.ClientSession, targets: list[Endpoint], bodies: list[bytes], concurrency: int, seconds: float
) -> None:
    if seconds <= 0:
        return
    for target in targets:
        await closed_loop(session, target.url("query"), cycling(bodies), concurrency, seconds)


async def measure_throughput(
    session: aiohttp.ClientSession,
    direct: Endpoint,
    gateway: Endpoint,
    bodies: list[bytes],
    *,
    concurrency: int,
    seconds: float,
    rounds: int,
    gateway_cpu: CpuMeter,
) -> ThroughputResult:
    """`rounds` pairs of rounds, `seconds` per side in all.

    At concurrency 1 nothing overlaps, so the sides can take turns query by query within a round (D G, G D, ...):
    both then see the same moments of the machine, and the gateway is measured as a steady client keeps it, never
    just woken from a round of idling. At higher concurrency the sides take turns round by round (D G, G D, ...).
    """
    result = ThroughputResult(concurrency, LoadResult(), LoadResult(), 0.0)
    window = seconds / rounds
    next_body = cycling(bodies)
    for n in range(rounds):
        if concurrency == 1:
            direct_round, gateway_round, cpu = await _query_by_query(
                session, direct, gateway, next_body, window, gateway_cpu
            )
        else:
            direct_round, gateway_round, cpu = await _round_by_round(
                session, direct, gateway, next_body, concurrency, window, gateway_cpu, gateway_first=n % 2 == 1
            )
        result.direct.merge(direct_round)
        result.gateway.merge(gateway_round)
        result.gateway_cpu_seconds += cpu
        if direct_round.rate:
            result.round_ratios.append(gateway_round.rate / direct_round.rate)
    return result


async def _query_by_query(
    session: aiohttp.ClientSession,
    direct: Endpoint,
    gateway: Endpoint,
    next_body: BodyFactory,
    window: float,
    gateway_cpu: CpuMeter,
) -> tuple[LoadResult, LoadResult, float]:
    """One query at a time, the sides taking turns with the same body (D G, then G D, ...), as many queries each,
    until both together have spent `2 * window` seconds in their queries (bounded even if one side fails fast).
    The gateway's CPU is counted over the whole round: idle in between, it uses next to none."""
    sides = {direct: LoadResult(), gateway: LoadResult()}
    cpu_before = gateway_cpu.seconds()
    turn = 0
    while sides[direct].elapsed + sides[gateway].elapsed < 2 * window:
        await _take_turn(session, direct, gateway, sides, next_body(), turn)
        turn += 1
    return sides[direct], sides[gateway], gateway_cpu.seconds() - cpu_before


async def _take_turn(
    session: aiohttp.ClientSession,
    direct: Endpoint,
    gateway: Endpoint,
    sides: dict[Endpoint, LoadResult],
    body: bytes,
    turn: int,
) -> None:
    """Both sides ask the same query, direct first in even turns and the gateway first in odd ones; each side's
    time in its query adds up in its `elapsed`."""
    for target in (direct, gateway) if turn % 2 == 0 else (gateway, direct):
        sides[target].elapsed += await recorded_post(session, target.url("query"), body, sides[target])


async def _round_by_round(
    session: aiohttp.ClientSession,
    direct: Endpoint,
    gateway: Endpoint,
    next_body: BodyFactory,
    concurrency: int,
    window: float,
    gateway_cpu: CpuMeter,
    *,
    gateway_first: bool,
) -> tuple[LoadResult, LoadResult, float]:
    """A closed loop of `window` seconds on each side in turn; the gateway's CPU is counted over its own loop."""
    rounds: dict[Endpoint, LoadResult] = {}
    cpu = 0.0
    for target in (gateway, direct) if gateway_first else (direct, gateway):
        cpu_before = gateway_cpu.seconds()
        rounds[target] = await closed_loop(session, target.url("query"), next_body, concurrency, window)
        if target is gateway:
            cpu = gateway_cpu.seconds() - cpu_before
    return rounds[direct], rounds[gateway], cpu


async def measure_latency(
    session: aiohttp.ClientSession, direct: Endpoint, gateway: Endpoint, bodies: list[bytes], samples: int
) -> LatencyResult:
    """One query at a time, alternating targets, so both see the same conditions."""
    sides = {direct: LoadResult(), gateway: LoadResult()}
    for n in range(samples):
        await _take_turn(session, direct, gateway, sides, bodies[n % len(bodies)], n)
    return LatencyResult(
        sides[direct].latencies, sides[gateway].latencies, sides[direct].errors + sides[gateway].errors
    )
