"""A gateway whose instances' appliers run in another gateway (one shared store, as on PostgreSQL) follows their
cursors from the store, but only while each instance is the incarnation its cursor names: one that went down and
came back wiped is held at 0 until the gateway applying to it has rebuilt it, so no read is sent to it meanwhile.

Two whole gateways in this process on one in-memory database, in front of fake instances.
"""

from __future__ import annotations

import asyncio

from chroma_ha.app import Gateway
from chroma_ha.store.memory import MemoryDatabase, MemoryStore
from tests.fake_chroma import FakeCluster, call, drained, in_process, wait_until

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"
SHARED = {"STORE": "postgresql://chroma@db.example:5432/chroma_ha"}  # each follows the log the other appends to


async def records_of(gateway: Gateway, collection: str) -> list[str]:
    status, got = await call(gateway, "POST", f"{COLLECTIONS}/{collection}/get", {"include": []})
    assert status == 200, got
    return sorted(got["ids"])


async def test_a_wiped_instance_is_held_by_the_following_gateway_until_its_applier_has_rebuilt_it() -> None:
    cluster, database = FakeCluster(), MemoryDatabase()
    wiped = cluster.instances[0]
    async with (
        in_process(cluster, store=MemoryStore(database), GATEWAY_ID="one", **SHARED) as applying,
        in_process(cluster, store=MemoryStore(database), GATEWAY_ID="two", **SHARED) as following,
    ):
        status, created = await call(applying, "POST", COLLECTIONS, {"name": "docs"})
        assert status == 200, created
        ids = [f"r{n}" for n in range(5)]
        status, _ = await call(
            applying, "POST", f"{COLLECTIONS}/{created['id']}/add", {"ids": ids, "embeddings": [[1.0, 2.0]] * 5}
        )
        assert status == 201
        await drained(applying)
        head = await applying.store.head()
        await wait_until("the following gateway to stand by", lambda: following.appliers[wiped.url].state == "standby")
        await wait_until("it to follow the cursor", lambda: following.progress.cursors[wiped.url] >= head)

        async with applying.appliers[wiped.url].pause():  # its applier has not checked the instance yet
            wiped.down = True
            await wait_until("the instance to be seen down", lambda: not following.health.is_up(wiped.url))
            wiped.wipe()
            wiped.down = False
            await wait_until("the instance to be seen up", lambda: following.health.is_up(wiped.url))
            for _ in range(20):  # many turns of the follower: the stored cursor is the old incarnation's
                await asyncio.sleep(0.02)
                assert following.progress.cursors[wiped.url] == 0
                status, found = await call(following, "GET", f"{COLLECTIONS}/docs")
                assert status == 200, found  # answered by the instance that holds it
                assert await records_of(following, created["id"]) == ids

        await wait_until(
            "the rebuilt instance to be followed again", lambda: following.progress.cursors[wiped.url] >= head
        )
        await drained(following)
    assert set(wiped.collections()["docs"][1]) == set(ids)


async def test_a_gateway_starting_beside_another_does_not_take_the_cursor_of_an_instance_wiped_meanwhile() -> None:
    cluster, database = FakeCluster(), MemoryDatabase()
    wiped = cluster.instances[0]
    async with in_process(cluster, store=MemoryStore(database), GATEWAY_ID="one", **SHARED) as applying:
        status, created = await call(applying, "POST", COLLECTIONS, {"name": "docs"})
        assert status == 200, created
        await call(applying, "POST", f"{COLLECTIONS}/{created['id']}/add", {"ids": ["a"], "embeddings": [[1.0, 2.0]]})
        await drained(applying)
        async with applying.appliers[wiped.url].pause():
            wiped.wipe()  # restarted empty between two probes: nobody saw it down
            async with in_process(cluster, store=MemoryStore(database), GATEWAY_ID="two", **SHARED) as starting:
                assert starting.progress.cursors[wiped.url] == 0
                assert starting.progress.cursors[cluster.instances[1].url] == await applying.store.head()
                for _ in range(10):
                    status, found = await call(starting, "GET", f"{COLLECTIONS}/docs")
                    assert status == 200, found
                    await asyncio.sleep(0.02)
