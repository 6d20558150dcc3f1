"""Load generators: closed loops at a fixed concurrency, single timed requests, and a paced (open-loop) writer.

All of them speak raw HTTP through one aiohttp session, with the bodies the official client would send, so the
direct and the gateway measurements share the same generator and its overhead.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp

JSON_HEADERS = {"content-type": "application/json"}

BodyFactory = Callable[[], bytes]


@dataclass
class LoadResult:
    """Requests completed in a window, and the wall time they took."""

    completed: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    last_error: str = ""

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0

    def merge(self, other: LoadResult) -> None:
        self.completed += other.completed
        self.errors += other.errors
        self.elapsed += other.elapsed
        self.latencies.extend(other.latencies)
        self.last_error = other.last_error or self.last_error


def new_session(connections: int = 64) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    # No Accept-Encoding: neither Chroma nor the gateway compresses, and it keeps both paths identical.
    return aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent", "Accept-Encoding"))


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, bytes]:
    async with session.post(url, data=body, headers=JSON_HEADERS) as response:
        return response.status, await response.read()


def cycling(bodies: list[bytes]) -> BodyFactory:
    cycle = itertools.cycle(bodies)
    return lambda: next(cycle)


async def recorded_post(
    session: aiohttp.ClientSession, url: str, body: bytes, into: LoadResult, ok_status: int = 200
) -> float:
    """Send one request and count its outcome in `into`; the seconds it took, failed or not."""
    started = time.perf_counter()
    try:
        status, _ = await post(session, url, body)
    except aiohttp.ClientError as exc:
        into.errors += 1
        into.last_error = f"{type(exc).__name__}: {exc}"
        return time.perf_counter() - started
    took = time.perf_counter() - started
    if status == ok_status:
        into.completed += 1
        into.latencies.append(took)
    else:
        into.errors += 1
        into.last_error = f"HTTP {status}"
    return took


async def closed_loop(
    session: aiohttp.ClientSession,
    url: str,
    next_body: BodyFactory,
    concurrency: int,
    seconds: float,
    ok_status: int = 200,
) -> LoadResult:
    """`concurrency` workers, each sending its next request as soon as the previous one is answered."""
    result = LoadResult()
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            await recorded_post(session, url, next_body(), result, ok_status)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result


async def paced(
    rate: float, seconds: float, send: Callable[[int], Coroutine[Any, Any, None]], max_outstanding: int
) -> tuple[int, int]:
    """Start send(k) at start + k/rate whether or not earlier ones are answered (an open loop).

    Returns (started, skipped): a slot is skipped when `max_outstanding` requests are already in flight, so a
    stalled server cannot make the generator pile up requests without bound.
    """
    started_at = time.perf_counter()
    in_flight: set[asyncio.Task[None]] = set()
    started = skipped = 0
    for k in itertools.count():
        due = started_at + k / rate
        if due >= started_at + seconds:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= max_outstanding:
            skipped += 1
            continue
        task = asyncio.create_task(send(k))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        started += 1
    if in_flight:
        await asyncio.gather(*in_flight)
    return started, skipped
