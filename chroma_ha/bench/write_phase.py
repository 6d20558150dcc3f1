"""Writes through the gateway: the sustainable rate, then the replication lag at a fraction of it."""

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
    writes: LoadResult
    batch: int
    seconds_to_drain: float  # from the first write to the last instance having applied the whole log
    standalone: LoadResult  # the same closed loop against one standalone Chroma server

    @property
    def acked_rate(self) -> float:
        return self.writes.rate

    @property
    def sustainable_rate(self) -> float:
        """Writes per second that every instance applied, backlog included: the rate the cluster can keep."""
        return self.writes.completed / self.seconds_to_drain if self.seconds_to_drain else 0.0


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
    source: WriteSource,
    *,
    concurrency: int,
    seconds: float,
    batch: int,
    drain_timeout: float,
    standalone: LoadResult,
) -> SaturationResult:
    started = time.perf_counter()
    writes = await closed_loop(session, gateway.url("add"), source.body, concurrency, seconds, ok_status=ADD_CREATED)
    drained = await wait_drained(session, gateway.base_url, drain_timeout)
    return SaturationResult(writes, batch, drained - started, standalone)


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
