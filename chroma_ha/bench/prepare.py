"""Load the benchmark's collections through the gateway and find each instance's own id for them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import orjson

from .payloads import COLLECTIONS, Endpoint, add_body, create_collection_body, query_body, record_ids, vectors
from .workloads import post

QUERY_COLLECTION = "bench-queries"
WRITE_COLLECTION = "bench-writes"
STANDALONE_COLLECTION = "bench-writes-direct"
DRAIN_POLL_S = 0.02

Log = Callable[[str], None]


@dataclass(frozen=True)
class Setup:
    gateway_url: str  # the first gateway: the one asked for the log's status
    queries_direct: Endpoint  # the query collection on the first instance, asked directly
    queries_gateway: Endpoint
    writes_gateway: Endpoint
    writes_instances: list[Endpoint]  # the write collection on every instance, for the lag pollers
    writes_standalone: Endpoint  # a collection on the standalone server: the direct baseline for writes
    query_bodies: list[bytes]


class BenchError(RuntimeError):
    """The cluster did not behave well enough to measure anything (not a missed target)."""


async def create_collection(session: aiohttp.ClientSession, server_url: str, name: str) -> str:
    status, body = await post(session, f"{server_url}{COLLECTIONS}", create_collection_body(name))
    if status != 200:
        raise BenchError(f"creating collection {name} on {server_url} answered {status}: {body[:300]!r}")
    return str(orjson.loads(body)["id"])


async def instance_collection_id(session: aiohttp.ClientSession, instance: str, name: str) -> str:
    async with session.get(f"{instance}{COLLECTIONS}/{name}") as response:
        body = await response.read()
        if response.status != 200:
            raise BenchError(f"{instance} does not hold collection {name}: {response.status} {body[:300]!r}")
    return str(orjson.loads(body)["id"])


async def wal_status(session: aiohttp.ClientSession, gateway_url: str) -> dict[str, object]:
    async with session.get(f"{gateway_url}/wal/status") as response:
        return dict(orjson.loads(await response.read()))


async def wait_drained(session: aiohttp.ClientSession, gateway_url: str, timeout: float) -> float:
    """Until every instance's cursor has reached the log's head; returns the perf_counter time it did."""
    deadline = time.perf_counter() + timeout
    status: dict[str, object] = {}
    while time.perf_counter() < deadline:
        status = await wal_status(session, gateway_url)
        instances = status["instances"]
        assert isinstance(instances, dict)
        head = status["head"]
        assert isinstance(head, int)
        if all(i["cursor"] >= head for i in instances.values()):
            return time.perf_counter()
        await asyncio.sleep(DRAIN_POLL_S)
    raise BenchError(f"the log did not drain within {timeout:g}s: {status}")


async def load_records(
    session: aiohttp.ClientSession, endpoint: Endpoint, records: int, dim: int, batch: int, seed: int
) -> None:
    data = vectors(records, dim, seed)
    for start in range(0, records, batch):
        count = min(batch, records - start)
        status, body = await post(
            session, endpoint.url("add"), add_body(record_ids("q", start, count), data[start : start + count])
        )
        if status != 201:
            raise BenchError(f"loading records through the gateway answered {status}: {body[:300]!r}")


async def count(session: aiohttp.ClientSession, endpoint: Endpoint) -> int:
    async with session.get(endpoint.url("count")) as response:
        return int(orjson.loads(await response.read()))


async def prepare(
    session: aiohttp.ClientSession,
    gateway_urls: list[str],
    instances: list[str],
    standalone_url: str,
    *,
    records: int,
    dim: int,
    load_batch: int,
    query_pool: int,
    n_results: int,
    seed: int,
    drain_timeout: float,
    log: Log,
) -> Setup:
    gateway_url, *more = gateway_urls
    queries_id = await create_collection(session, gateway_url, QUERY_COLLECTION)
    writes_id = await create_collection(session, gateway_url, WRITE_COLLECTION)
    queries_gateway = Endpoint("gateway", gateway_url, queries_id, tuple(more))
    started = time.perf_counter()
    await load_records(session, queries_gateway, records, dim, load_batch, seed)
    await wait_drained(session, gateway_url, drain_timeout)
    log(f"loaded {records} records of dim {dim} through the gateway in {time.perf_counter() - started:.1f}s")
    direct = [
        Endpoint(f"instance-{n}", url, await instance_collection_id(session, url, QUERY_COLLECTION))
        for n, url in enumerate(instances)
    ]
    for endpoint in direct:
        held = await count(session, endpoint)
        if held != records:
            raise BenchError(f"{endpoint.base_url} holds {held} records instead of {records}")
    writes_instances = [
        Endpoint(f"instance-{n}", url, await instance_collection_id(session, url, WRITE_COLLECTION))
        for n, url in enumerate(instances)
    ]
    bodies = [query_body(v, n_results) for v in vectors(query_pool, dim, seed + 1)]
    return Setup(
        gateway_url=gateway_url,
        queries_direct=Endpoint("direct", direct[0].base_url, direct[0].collection_id),
        queries_gateway=queries_gateway,
        writes_gateway=Endpoint("gateway", gateway_url, writes_id, tuple(more)),
        writes_instances=writes_instances,
        writes_standalone=Endpoint(
            "standalone", standalone_url, await create_collection(session, standalone_url, STANDALONE_COLLECTION)
        ),
        query_bodies=bodies,
    )
