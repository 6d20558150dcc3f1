"""One applier per instance across gateways: the lease is held for as long as its applier works, however long one
batch takes. Found by a recorded history (PostgreSQL, two gateways, an instance catching up after a SIGSTOP):
the lease was renewed only between two reads of the log, so a catch-up slower than the lease let the other
gateway's applier take over beside the first, and the two applied entries to one instance in two orders (an old
upsert landed after a newer update; a delete by `where` then removed the record on that instance only).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from chroma_ha.app import Gateway
from chroma_ha.store.memory import MemoryDatabase, MemoryStore
from chroma_ha.upstream import Upstream
from tests.fake_chroma import FakeChroma, FakeCluster, call, drained, settings_for

BASE = "/api/v2/tenants/default_tenant/databases/default_database"
COLLECTIONS = f"{BASE}/collections"
LEASE_TTL_S = 0.3
SLOW_S = 1.0  # every request to the instance but a heartbeat: past the lease


def count_concurrent_writes(instance: FakeChroma) -> list[int]:
    """The most writes (anything but a heartbeat or a read) the instance was handling at once, in a list."""
    peak, current = [0], [0]
    handle = instance.handle

    async def counted(method: str, path: str, query: str, body: bytes) -> Upstream:
        if method == "GET" or path.endswith(("/heartbeat", "/get", "/count")):
            return await handle(method, path, query, body)
        current[0] += 1
        peak[0] = max(peak[0], current[0])
        try:
            return await handle(method, path, query, body)
        finally:
            current[0] -= 1

    instance.handle = counted  # type: ignore[method-assign]
    return peak


@contextlib.asynccontextmanager
async def gateway_named(cluster: FakeCluster, database: MemoryDatabase, owner: str) -> AsyncIterator[Gateway]:
    """A gateway in this process whose appliers hold leases under their own name, as gateways on one PostgreSQL
    do (on any other store every gateway takes the one name: a restarted gateway takes its own leases back)."""
    settings = {"LEASE_TTL": str(LEASE_TTL_S), "REQUEST_TIMEOUT": "5", "WRITE_TIMEOUT": "10"}
    transport = cluster.transport(5.0)
    gateway = Gateway(settings_for(cluster, **settings), store=MemoryStore(database), transport=transport)
    gateway.owner = owner
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


async def test_a_batch_that_outlasts_the_lease_keeps_it_so_no_other_gateway_applies_beside_it() -> None:
    cluster, database = FakeCluster(), MemoryDatabase()
    async with gateway_named(cluster, database, "first") as first:
        status, created = await call(first, "POST", COLLECTIONS, {"name": "docs"})
        assert status == 200, created
        await drained(first)
        assert {owner for owner, _ in database.leases.values()} == {"first"}
        async with gateway_named(cluster, database, "second") as second:
            slow = cluster.instances[1]
            peak = count_concurrent_writes(slow)
            slow.slow = SLOW_S
            for n in range(3):
                body = {"ids": [f"r{n}"], "embeddings": [[1.0, float(n)]]}
                status, answer = await call(first, "POST", f"{COLLECTIONS}/{created['id']}/upsert", body)
                assert status == 200, answer
            await drained(first, timeout=10 * SLOW_S)
            await asyncio.sleep(LEASE_TTL_S)
            assert peak == [1], "two appliers wrote to one instance at once"
            assert {owner for owner, _ in database.leases.values()} == {"first"}
            assert second.progress.cursors  # the second gateway ran: its appliers stood by
