"""How the benchmark pairs direct and gateway queries, against a local HTTP receiver standing in for both."""

from __future__ import annotations

import itertools
import os

from aiohttp import web

from chroma_ha.bench.payloads import Endpoint
from chroma_ha.bench.query_phase import CpuMeter, ThroughputResult, measure_throughput
from chroma_ha.bench.workloads import new_session
from tests.harness import serving

BODIES = [b'{"n": %d}' % n for n in range(5)]


async def measure(concurrency: int) -> tuple[ThroughputResult, list[tuple[str, bytes]]]:
    """4 pairs of rounds against one server standing in for both sides (collection `d` direct, `g` the gateway)
    that answers every query at once; what it measured, and (collection, body) of each query in arrival order."""
    seen: list[tuple[str, bytes]] = []

    async def query(request: web.Request) -> web.Response:
        seen.append((request.match_info["collection"], await request.read()))
        return web.json_response({"ids": [[]]})

    app = web.Application()
    app.router.add_post("/api/v2/tenants/{t}/databases/{d}/collections/{collection}/query", query)
    async with serving(app) as url, new_session() as session:
        result = await measure_throughput(
            session,
            Endpoint("direct", url, "d"),
            Endpoint("gateway", url, "g"),
            BODIES,
            concurrency=concurrency,
            seconds=0.2,
            rounds=4,
            gateway_cpu=CpuMeter(os.getpid()),
        )
    return result, seen


async def test_at_concurrency_1_the_sides_take_turns_query_by_query_with_the_same_query() -> None:
    result, seen = await measure(concurrency=1)
    assert len(seen) > 8 and len(seen) % 2 == 0
    turns = [seen[i : i + 2] for i in range(0, len(seen), 2)]
    sides = ["".join(collection for collection, _ in turn) for turn in turns]
    assert set(sides) == {"dg", "gd"}
    # turns alternate D G, G D, ...; each of the 4 rounds starts with D G, so at most 3 D G follow a D G
    repeats = [a for a, b in itertools.pairwise(sides) if a == b]
    assert len(repeats) <= 3 and set(repeats) <= {"dg"}, sides
    assert all(turn[0][1] == turn[1][1] for turn in turns)  # both sides of a turn ask the same query
    assert [turn[0][1] for turn in turns] == (BODIES * len(turns))[: len(turns)]  # the bodies cycle on
    assert result.direct.completed == result.gateway.completed == len(turns)
    assert len(result.round_ratios) == 4 and not result.direct.errors and not result.gateway.errors


async def test_at_higher_concurrency_the_sides_take_turns_round_by_round() -> None:
    result, seen = await measure(concurrency=4)
    runs = [seen[0][0]]
    for collection, _ in seen[1:]:
        if collection != runs[-1]:
            runs.append(collection)
    assert runs == ["d", "g", "d", "g", "d"]  # rounds D G, G D, D G, G D: each a closed loop finished in turn
    assert result.direct.completed > 0 and result.gateway.completed > 0 and len(result.round_ratios) == 4
