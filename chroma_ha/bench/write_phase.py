"""Writes through the gateway: the sustainable rate against a standalone Chroma, then the replication lag at a
fraction of it.

The closed loops against the standalone server and against the gateway take turns, round by round (S G, then G S,
...), as the query rounds do: the rate a Chroma server writes at moves by a third between two windows of this shared
machine, so measured one after the other the ratio would say more about the moment than about the gateway. Each
gateway round ends once its log is drained on every instance: a backlog still being applied would take CPU from the
standalone side, and the time to drain counts against the gateway's sustainable rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from .lag import LagTracker
from .payloads import Endpoint, add_body, record_ids, vectors
from .prepare import wait_drained
from .stats import percentile_ms
from .workloads import LoadResult, closed_loop, paced, post

EMBEDDING_POOL = 64  # distinct batches of vectors, reused under fresh ids
ADD_CREATED = 201


class WriteSource:
    """Add bodies with ids never used before in this run; the last id of each batch is its probe for lag."""

    def __init__(self, batch: int, dim: int, seed: int) -> None:
        self._batch = batch
        self._vectors = vectors(EMBEDDING_POOL * batch, dim, seed)
        self._numbers = itertools.count()

    def next(self) -> tuple[bytes, str]:
        n = next(self._numbers)
        ids = record_ids("w", n * self._batch, self._batch)
        start = (n % EMBEDDING_POOL) * self._batch
        return add_body(ids, self._vectors[start : start + self._batch]), ids[-1]

    def body(self) -> bytes:
        return self.next()[0]


@dataclass
class SaturationResult:
    batch: int
    writes: LoadResult = field(default_factory=LoadResult)  # through the gateway, every round together
    standalone: LoadResult = field(default_factory=LoadResult)  # the same closed loop against one standalone Chroma
    busy_seconds: float = 0.0  # the gateway rounds, each from its first write to its log drained on every instance
    round_ratios: list[float] = field(default_factory=list)  # gateway / standalone write rate of each pair of rounds

    @property
    def acked_rate(self) -> float:
        return self.writes.rate

    @property
    def ratio(self) -> float:
        return self.writes.rate / self.standalone.rate if self.standalone.rate else 0.0

    @property
    def sustainable_rate(self) -> float:
        """Writes per second that every instance applied, backlog included: the rate the cluster can keep."""
        return self.writes.completed / self.busy_seconds if self.busy_seconds else 0.0


@dataclass
class LagResult:
    rate: float
    started: int
    skipped: int
    ack_latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    unseen: int = 0
    errors: int = 0
    polls: int = 0

    def lag_ms(self, q: float) -> float:
        return percentile_ms(self.lags, q)

    def ack_ms(self, q: float) -> float:
        return percentile_ms(self.ack_latencies, q)


async def measure_saturation(
    session: aiohttp.ClientSession,
    gateway: Endpoint,
    standalone: Endpoint,
    source: WriteSource,
    *,
    concurrency: int,
    seconds: float,
    rounds: int,
    batch: int,
    drain_timeout: float,
) -> SaturationResult:
    """`rounds` pairs of rounds, `seconds` per side in all."""
    result = SaturationResult(batch)
    window = seconds / rounds
    for n in range(rounds):
        measured: dict[Endpoint, LoadResult] = {}
        for target in (gateway, standalone) if n % 2 else (standalone, gateway):
            started = time.perf_counter()
            measured[target] = await closed_loop(
                session, target.url("add"), source.body, concurrency, window, ok_status=ADD_CREATED
            )
            if target is gateway:
                result.busy_seconds += await wait_drained(session, gateway.base_url, drain_timeout) - started
        result.writes.merge(measured[gateway])
        result.standalone.merge(measured[standalone])
        if measured[standalone].rate:
            result.round_ratios.append(measured[gateway].rate / measured[standalone].rate)
    return result


async def measure_lag(
    session: aiohttp.ClientSession,
    gateway: Endpoint,
    instances: list[Endpoint],
    source: WriteSource,
    *,
    rate: float,
    seconds: float,
    max_outstanding: int,
    poll_interval: float,
    drain_timeout: float,
    log: Callable[[str], None],
) -> LagResult:
    tracker = LagTracker(instances)
    result = LagResult(rate=rate, started=0, skipped=0)
    stop = asyncio.Event()
    pollers = [asyncio.create_task(tracker.poll(session, e, stop, poll_interval)) for e in instances]

    async def send(_: int) -> None:
        body, probe = source.next()
        sent = time.perf_counter()
        try:
            status, _answer = await post(session, gateway.url("add"), body)
        except aiohttp.ClientError:
            status = 0
        acked = time.perf_counter()
        if status == ADD_CREATED:
            result.ack_latencies.append(acked - sent)
            tracker.acked(probe, acked)
        else:
            result.errors += 1

    try:
        result.started, result.skipped = await paced(rate, seconds, send, max_outstanding)
        stop.set()
        try:
            await asyncio.wait_for(asyncio.gather(*pollers), drain_timeout)
        except TimeoutError:
            log(f"{tracker.outstanding} acknowledged writes were not seen on every instance in {drain_timeout:g}s")
    finally:
        for poller in pollers:
            poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pollers, return_exceptions=True)
    result.lags = tracker.lags()
    result.unseen = tracker.unseen
    result.polls = tracker.polls
    return result
