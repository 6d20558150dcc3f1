"""How a read on a shared PostgreSQL store proves its freshness, counted in head questions: none while the gateway
is the log's sole appender (it holds the writer lease), one shared by reads that arrive together when it is not,
and none trusted again once another gateway's write has revoked the lease. Two whole gateways in this process on
one real PostgreSQL database, in front of Chroma instances simulated in memory (tests/fake_chroma.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from chroma_ha.app import Gateway
from chroma_ha.local_postgres import create_database, database_uri, drop_database
from chroma_ha.store.postgres import PostgresStore
from tests.fake_chroma import FakeCluster, call, in_process

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"
FAST_LEASE = {"ttl": 1.5, "margin": 0.3, "renew_interval": 0.2, "quiet": 0.3}
TAKEN_WITHIN_S = 10.0


@asynccontextmanager
async def two_gateways(server: str) -> AsyncIterator[tuple[Gateway, Gateway]]:
    name = f"barrier_{uuid.uuid4().hex[:12]}"
    dsn = create_database(server, name)
    cluster = FakeCluster()
    try:
        async with AsyncExitStack() as stack:
            gateways = []
            for gateway_id in ("a", "b"):
                store = PostgresStore(dsn, lease=FAST_LEASE)
                gateways.append(
                    await stack.enter_async_context(
                        in_process(cluster, store=store, STORE=database_uri(server, name), GATEWAY_ID=gateway_id)
                    )
                )
            yield gateways[0], gateways[1]
    finally:
        drop_database(server, name)


async def add(gateway: Gateway, collection: str, record: str) -> None:
    body = {"ids": [record], "embeddings": [[1.0, 2.0]]}
    status, answer = await call(gateway, "POST", f"{COLLECTIONS}/{collection}/add", body)
    assert status == 201, answer


async def sees(gateway: Gateway, collection: str, record: str) -> bool:
    status, answer = await call(gateway, "POST", f"{COLLECTIONS}/{collection}/get", {"ids": [record]})
    assert status == 200, answer
    return bool(answer["ids"] == [record])


async def until_sole_appender(gateway: Gateway) -> None:
    deadline = time.monotonic() + TAKEN_WITHIN_S
    while gateway.store.sole_appender() is None:
        assert time.monotonic() < deadline, "the gateway that writes alone never took the writer lease"
        await asyncio.sleep(0.02)


async def test_reads_ask_the_head_only_when_the_gateway_is_not_the_sole_appender(postgres_server: str) -> None:
    async with two_gateways(postgres_server) as (a, b):
        status, created = await call(a, "POST", COLLECTIONS, {"name": "docs"})
        assert status == 200, created
        docs = created["id"]
        await add(a, docs, "r0")
        await until_sole_appender(a)

        # The writer's own reads: proven from its own appends, no question to the store.
        await sees(a, docs, "r0")  # the first read under the lease catches up once, under its epoch
        asked = a.follower.catch_ups
        for n in range(1, 30):
            await add(a, docs, f"r{n}")
            assert await sees(a, docs, f"r{n}")
        assert a.follower.catch_ups == asked
        assert a.store.sole_appender() is not None

        # The other gateway's reads, arriving together: they share head questions asked after they arrived.
        asked = b.follower.catch_ups
        seen = await asyncio.gather(*(sees(b, docs, f"r{n}") for n in range(30)))
        assert all(seen)
        assert b.follower.catch_ups - asked <= 2

        # A write through the other gateway revokes the lease before it is acknowledged: the first gateway then
        # asks the store again, and sees that write.
        await add(b, docs, "from-b")
        assert a.store.sole_appender() is None
        asked = a.follower.catch_ups
        assert await sees(a, docs, "from-b")
        assert a.follower.catch_ups > asked
