"""Reads of each other's writes, with several gateways on one store: a write acknowledged by one gateway, then a
read of it through the next one (the bench's round-robin). Counted, never assumed: a read saw the write or not,
and was marked stale (`x-chroma-ha-stale-by`) or not."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from .payloads import COLLECTIONS, add_body, get_ids_body, record_ids, vectors
from .stats import percentile_ms
from .workloads import JSON_HEADERS, post

STALE_HEADER = "x-chroma-ha-stale-by"
ADD_CREATED = 201


@dataclass
class FreshnessResult:
    pairs: int = 0
    seen: int = 0
    missed: int = 0  # the read through the other gateway did not return the record just acknowledged
    stale: int = 0  # the read was marked stale (its freshness could not be proven)
    errors: int = 0  # the write or the read failed: the pair proves nothing either way
    write_seconds: list[float] = field(default_factory=list)  # each acknowledged write, sent to answered
    read_seconds: list[float] = field(default_factory=list)  # each read of it through the next gateway

    def as_dict(self) -> dict[str, float]:
        return {
            "pairs": self.pairs,
            "seen": self.seen,
            "missed": self.missed,
            "stale": self.stale,
            "errors": self.errors,
            "write_p50_ms": percentile_ms(self.write_seconds, 50),
            "write_p99_ms": percentile_ms(self.write_seconds, 99),
            "read_p50_ms": percentile_ms(self.read_seconds, 50),
            "read_p99_ms": percentile_ms(self.read_seconds, 99),
        }


async def measure_freshness(
    session: aiohttp.ClientSession, gateways: tuple[str, ...], collection_id: str, *, pairs: int, dim: int
) -> FreshnessResult:
    """`pairs` writes of one new record, each through gateway n and read back at once through gateway n + 1."""
    result = FreshnessResult()
    embeddings = vectors(1, dim, seed=0)
    for n in range(pairs):
        writer, reader = gateways[n % len(gateways)], gateways[(n + 1) % len(gateways)]
        ids = record_ids("fresh", n, 1)
        sent = time.perf_counter()
        status, _ = await post(session, f"{writer}{COLLECTIONS}/{collection_id}/add", add_body(ids, embeddings))
        acknowledged = time.perf_counter()
        result.pairs += 1
        if status != ADD_CREATED:
            result.errors += 1
            continue
        url = f"{reader}{COLLECTIONS}/{collection_id}/get"
        async with session.post(url, data=get_ids_body(ids), headers=JSON_HEADERS) as response:
            body = await response.read()
            stale = STALE_HEADER in response.headers
        result.write_seconds.append(acknowledged - sent)
        result.read_seconds.append(time.perf_counter() - acknowledged)
        if response.status != 200:
            result.errors += 1
            continue
        result.stale += stale
        if orjson.loads(body).get("ids") == ids:
            result.seen += 1
        else:
            result.missed += 1
    return result
