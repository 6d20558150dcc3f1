"""Outages of the store and of every instance, fast: whole gateways in this process on an in-memory store that can
be made to fail (`MemoryDatabase.fail`) or to stop answering, in front of fake instances that can be taken down.

The same behaviours against a real PostgreSQL stopped for 20 s and real Chroma servers SIGKILLed are in
tests/integration/test_store_outage.py and tests/integration/test_all_down.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import orjson

from chroma_ha.app import Gateway
from chroma_ha.gateway.http_server import HttpRequest, HttpResponse
from chroma_ha.store import NewEntry
from chroma_ha.store.memory import MemoryDatabase, MemoryStore
from tests.fake_chroma import FakeCluster, drained, in_process, wait_until

BASE = "/api/v2/tenants/default_tenant/databases/default_database"
COLLECTIONS = f"{BASE}/collections"
STALE = "x-chroma-ha-stale-by"
# Two gateways on one shared store, as on one PostgreSQL: each follows the log the other appends to.
SHARED = {"STORE": "postgresql://chroma@db.example:5432/chroma_ha"}


class StallingStore(MemoryStore):
    """A store that stops answering, as a PostgreSQL whose pool waits for a connection that never comes: while
    `answering` is clear, every call waits (none fails). `stalled()` clears it for a block."""

    def __init__(self, database: MemoryDatabase | None = None) -> None:
        super().__init__(database)
        self.answering = asyncio.Event()
        self.answering.set()

    @contextlib.contextmanager
    def stalled(self) -> Iterator[None]:
        """Answers again after the block, also when it failed (a gateway that stops needs its store)."""
        self.answering.clear()
        try:
            yield
        finally:
            self.answering.set()

    async def _db(self) -> MemoryDatabase:
        await self.answering.wait()
        return await super()._db()

    async def append(self, entries: Sequence[NewEntry]) -> list[int]:
        await self.answering.wait()
        return await super().append(entries)


async def send(gateway: Gateway, method: str, path: str, body: Any = None) -> HttpResponse:
    """One request to the gateway's routes, as its HTTP server hands it over; the whole answer, headers included."""
    raw = orjson.dumps(body) if body is not None else b""
    path, _, query = path.partition("?")
    return await gateway.routes(HttpRequest(method, path, query, [(b"content-type", b"application/json")], raw))


def header(response: HttpResponse, name: str) -> str | None:
    found = [v.decode() for k, v in response.headers if k.decode().lower() == name]
    return found[0] if found else None


def parsed(response: HttpResponse) -> Any:
    return orjson.loads(response.body) if response.body else None


def records(*ids: str) -> dict[str, Any]:
    return {"ids": list(ids), "embeddings": [[1.0, float(n)] for n in range(len(ids))]}


async def create(gateway: Gateway, name: str) -> str:
    response = await send(gateway, "POST", COLLECTIONS, {"name": name})
    assert response.status == 200, response.body
    return str(parsed(response)["id"])


async def stored_ids(gateway: Gateway, collection: str) -> list[str]:
    response = await send(gateway, "POST", f"{COLLECTIONS}/{collection}/get", {"include": []})
    assert response.status == 200, response.body
    return sorted(parsed(response)["ids"])


@contextlib.asynccontextmanager
async def two_gateways(cluster: FakeCluster, database: MemoryDatabase, **extra: str) -> AsyncIterator[list[Gateway]]:
    """Two gateways on one store, as two on one PostgreSQL; the second's store can be made to stop answering."""
    async with (
        in_process(cluster, store=MemoryStore(database), GATEWAY_ID="one", **SHARED, **extra) as first,
        in_process(cluster, store=StallingStore(database), GATEWAY_ID="two", **SHARED, **extra) as second,
    ):
        yield [first, second]


# --- the store is unreachable ----------------------------------------------------------------------------------


async def test_a_write_the_store_cannot_log_is_answered_503_with_retry_after_naming_the_store() -> None:
    cluster, database = FakeCluster(), MemoryDatabase()
    async with in_process(cluster, store=MemoryStore(database)) as gateway:
        docs = await create(gateway, "docs")
        head = database.head
        database.fail("disk I/O error")
        for method, path, body in [
            ("POST", f"{COLLECTIONS}/{docs}/add", records("a")),
            ("POST", COLLECTIONS, {"name": "other"}),
            ("POST", "/api/v2/tenants/default_tenant/databases", {"name": "more"}),
        ]:
            refused = await send(gateway, method, path, body)
            assert refused.status == 503, refused.body
            assert header(refused, "retry-after") == "1"
            assert parsed(refused) == {
                "error": "ServiceUnavailable",
                "message": "The write-ahead log (MemoryStore) is unreachable: memory: disk I/O error; nothing was "
                "logged, retry",
            }
        assert database.head == head  # nothing was logged
        database.recover()
        added = await send(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("a"))
        assert added.status == 201, added.body
        await drained(gateway)
        assert await stored_ids(gateway, docs) == ["a"]
    assert all(set(i.collections()["docs"][1]) == {"a"} for i in cluster.instances)


async def test_reads_are_served_while_the_store_is_down_and_marked_when_freshness_cannot_be_proven() -> None:
    cluster, database = FakeCluster(), MemoryDatabase()
    async with two_gateways(cluster, database) as (first, second):
        docs = await create(first, "docs")
        assert (await send(first, "POST", f"{COLLECTIONS}/{docs}/add", records("a", "b"))).status == 201
        await drained(first)
        fresh = await send(second, "POST", f"{COLLECTIONS}/{docs}/get", {"include": []})
        assert fresh.status == 200 and header(fresh, STALE) is None  # the second gateway has proven it is fresh
        database.fail("connection refused")
        for gateway in (first, second):
            served = await send(gateway, "POST", f"{COLLECTIONS}/{docs}/get", {"include": []})
            assert served.status == 200, served.body
            assert sorted(parsed(served)["ids"]) == ["a", "b"]
            # neither can know what the other appended meanwhile: -1, the count of entries it may miss is unknown
            assert header(served, STALE) == "-1"
        database.recover()
        again = await send(second, "POST", f"{COLLECTIONS}/{docs}/get", {"include": []})
        assert again.status == 200 and header(again, STALE) is None


async def test_reads_keep_answering_within_a_second_while_the_store_does_not_answer_at_all() -> None:
    cluster, database = FakeCluster(), MemoryDatabase()
    async with two_gateways(cluster, database) as (first, second):
        docs = await create(first, "docs")
        assert (await send(first, "POST", f"{COLLECTIONS}/{docs}/add", records("a"))).status == 201
        await drained(first)
        assert (await send(second, "POST", f"{COLLECTIONS}/{docs}/get", {"include": []})).status == 200
        store = second.store
        assert isinstance(store, StallingStore)
        with store.stalled():
            for _ in range(5):
                asked = send(second, "POST", f"{COLLECTIONS}/{docs}/get", {"include": []})
                served = await asyncio.wait_for(asked, 1.0)
                assert served.status == 200 and parsed(served)["ids"] == ["a"]
                assert header(served, STALE) == "-1"
            health = await asyncio.wait_for(send(second, "GET", "/health"), 2.0)
            assert health.status == 200
            assert parsed(health)["reads"] == "available" and parsed(health)["writes"] == "unavailable"
        for _ in range(100):  # the catch-up that outlived its bound finishes, then reads prove their freshness
            again = await send(second, "POST", f"{COLLECTIONS}/{docs}/get", {"include": []})
            if header(again, STALE) is None:
                break
            await asyncio.sleep(0.01)
        assert header(again, STALE) is None and parsed(again)["ids"] == ["a"]


async def test_a_read_that_needs_the_store_while_it_is_down_is_answered_503_not_500() -> None:
    cluster, database = FakeCluster(), MemoryDatabase()
    async with two_gateways(cluster, database) as (first, second):
        docs = await create(first, "docs")  # the second gateway has not learned its ids yet
        await drained(first)
        database.fail("connection refused")
        refused = await send(second, "GET", f"{COLLECTIONS}/{docs}")
        assert refused.status == 503 and header(refused, "retry-after") == "1"
        assert parsed(refused) == {
            "error": "ServiceUnavailable",
            "message": "The write-ahead log is unreachable: memory: connection refused",
        }


async def test_with_stale_reads_refused_a_read_whose_freshness_cannot_be_proven_is_refused() -> None:
    cluster, database = FakeCluster(), MemoryDatabase()
    async with two_gateways(cluster, database, STALE_READS="refuse") as (first, second):
        docs = await create(first, "docs")
        await drained(first)
        database.fail("connection refused")
        refused = await send(second, "POST", f"{COLLECTIONS}/{docs}/get", {"include": []})
        assert refused.status == 503
        assert parsed(refused)["error"] == "StaleRead"
        assert "write-ahead log" in parsed(refused)["message"] and "unreachable" in parsed(refused)["message"]


async def test_a_store_that_stops_answering_gets_writes_refused_not_hung() -> None:
    cluster, database = FakeCluster(), MemoryDatabase()
    store = StallingStore(database)
    async with in_process(cluster, store=store) as gateway:
        docs = await create(gateway, "docs")
        await drained(gateway)
        with store.stalled():
            # the first write finds out: neither its append nor its question beside it are answered within a
            # second each; the append may still be logged
            first = await asyncio.wait_for(send(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("late")), 3)
            assert first.status == 503 and header(first, "retry-after") == "1"
            message = parsed(first)["message"]
            assert message.startswith("The write-ahead log (StallingStore) is unreachable: it did not confirm")
            assert "not acknowledged" in message
            # the next ones are refused at once, and nothing of them is logged: the store is asked first
            for n in range(3):
                asked = send(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records(f"r{n}"))
                refused = await asyncio.wait_for(asked, 1.0)
                assert refused.status == 503
                assert "nothing was logged, retry" in parsed(refused)["message"]
        await wait_until("the late append to land", lambda: database.head == 2)
        added = await send(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("after"))
        assert added.status == 201, added.body
        await drained(gateway)
        # the late one was logged after all (as its answer said it might be), the refused ones were not
        assert await stored_ids(gateway, docs) == ["after", "late"]


async def test_a_logged_write_whose_outcome_the_store_cannot_commit_is_answered_at_once_not_after_timeouts() -> None:
    cluster, database = FakeCluster(), MemoryDatabase()
    store = StallingStore(database)
    async with in_process(cluster, store=store, WRITE_TIMEOUT="10") as gateway:
        docs = await create(gateway, "docs")
        await drained(gateway)
        head = database.head
        for instance in cluster.instances:
            instance.slow = 0.5  # the write is being applied when the store goes away
        write = asyncio.ensure_future(send(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("a")))
        await wait_until("the write to be logged", lambda: database.head == head + 1)
        with store.stalled():
            # the instances apply it, but no outcome can be committed: waiting on (twice the write timeout, as
            # before) would hold the client past a whole outage
            answered = await asyncio.wait_for(write, 4.0)
            assert answered.status == 503 and header(answered, "retry-after") == "1"
            body = parsed(answered)
            assert body["error"] == "WriteLogged" and "logged as seq" in body["message"]
            assert "write-ahead log (StallingStore) is unreachable" in body["message"]
        for instance in cluster.instances:
            instance.slow = 0
        await drained(gateway)
        assert await stored_ids(gateway, docs) == ["a"]


async def test_health_says_which_of_reads_and_writes_are_available() -> None:
    cluster, database = FakeCluster(), MemoryDatabase()
    async with in_process(cluster, store=MemoryStore(database)) as gateway:
        ok = await send(gateway, "GET", "/health")
        assert ok.status == 200
        assert {k: parsed(ok)[k] for k in ("status", "reads", "writes", "store")} == {
            "status": "healthy",
            "reads": "available",
            "writes": "available",
            "store": "ok",
        }
        database.fail("connection refused")
        no_store = await send(gateway, "GET", "/health")
        assert no_store.status == 200  # reads are served: a load balancer keeps it
        document = parsed(no_store)
        assert (document["status"], document["reads"], document["writes"]) == ("degraded", "available", "unavailable")
        assert document["store"] == "unreachable"
        assert any("store unreachable" in r for r in document["reasons"])
        for instance in cluster.instances:
            instance.down = True
        await wait_until("both instances down", lambda: not gateway.health.up_instances())
        nothing = await send(gateway, "GET", "/health")
        assert nothing.status == 503
        assert (parsed(nothing)["status"], parsed(nothing)["reads"], parsed(nothing)["writes"]) == (
            "unhealthy",
            "unavailable",
            "unavailable",
        )
        database.recover()
        no_reads = await send(gateway, "GET", "/health")
        assert no_reads.status == 503  # ack=one: a write would only wait for an instance and time out
        assert parsed(no_reads)["writes"] == "unavailable"


# --- ack=log, every instance down --------------------------------------------------------------------------------


async def everything_down(gateway: Gateway, cluster: FakeCluster) -> None:
    for instance in cluster.instances:
        instance.down = True
    await wait_until("every instance seen down", lambda: not gateway.health.up_instances())


async def test_with_ack_log_and_every_instance_down_writes_are_answered_as_chroma_at_once() -> None:
    cluster = FakeCluster()
    async with in_process(cluster, ACK="log", WRITE_TIMEOUT="5") as gateway:
        kept = await create(gateway, "kept")
        doomed = await create(gateway, "doomed")
        renamed = await create(gateway, "renamed")
        assert (await send(gateway, "POST", f"{COLLECTIONS}/{kept}/add", records("a"))).status == 201
        await drained(gateway)
        await everything_down(gateway, cluster)
        health = await send(gateway, "GET", "/health")
        assert health.status == 200
        assert (parsed(health)["reads"], parsed(health)["writes"]) == ("unavailable", "available")
        assert "accepting writes, serving no reads" in " ".join(parsed(health)["reasons"])

        async def answered(method: str, path: str, body: Any = None) -> HttpResponse:
            return await asyncio.wait_for(send(gateway, method, path, body), 1.0)  # never the write timeout

        for method, path, body in [
            ("POST", "/api/v2/tenants", {"name": "team"}),
            ("POST", "/api/v2/tenants/team/databases", {"name": "newdb"}),
            ("POST", "/api/v2/tenants/default_tenant/databases", {"name": "gone"}),
            ("DELETE", "/api/v2/tenants/default_tenant/databases/gone", None),
            ("PUT", f"{COLLECTIONS}/{renamed}", {"new_name": "moved", "new_metadata": {"m": 1}}),
            ("DELETE", f"{COLLECTIONS}/doomed", None),
        ]:
            response = await answered(method, path, body)
            assert (response.status, parsed(response)) == (200, {}), (method, path, response.body)
        assert (await answered("POST", f"{COLLECTIONS}/{kept}/add", records("b"))).status == 201
        again = await answered("POST", COLLECTIONS, {"name": "kept", "get_or_create": True})
        assert again.status == 200 and parsed(again)["id"] == kept and parsed(again)["name"] == "kept"

        for body in (
            {"name": "fresh"},
            {"name": "fresh", "get_or_create": True},
            {"name": "doomed", "get_or_create": True},  # deleted since its create
            {"name": "renamed", "get_or_create": True},  # renamed since: Chroma would create a new one
        ):
            refused = await answered("POST", COLLECTIONS, body)
            assert refused.status == 503 and header(refused, "retry-after") == "1"
            assert parsed(refused)["error"] == "ServiceUnavailable"
            assert parsed(refused)["message"].startswith("Creating a collection needs an instance")
        head = await gateway.store.head()

        for instance in cluster.instances:
            instance.down = False
        await drained(gateway)
        assert await gateway.store.head() == head  # the refused creates were not logged
        for instance in cluster.instances:
            assert set(instance.collections()) == {"kept", "moved"}
            assert set(instance.collections()["kept"][1]) == {"a", "b"}
            assert instance.collections()["moved"][0] == {"m": 1}
            assert set(instance.tenants["team"]) == {"newdb"}
            assert "gone" not in instance.tenants["default_tenant"]
        assert await stored_ids(gateway, kept) == ["a", "b"]  # the client's later reads see its writes
        listed = await send(gateway, "GET", "/api/v2/tenants/team/databases")
        assert [d["name"] for d in parsed(listed)] == ["newdb"]
        assert (await send(gateway, "GET", f"{COLLECTIONS}/doomed")).status == 404
        assert (await send(gateway, "GET", f"{COLLECTIONS}/{doomed}")).status == 404


async def test_a_duplicate_logged_while_every_instance_is_down_gets_chromas_answer_once_one_is_up() -> None:
    cluster = FakeCluster()
    async with in_process(cluster, ACK="log") as gateway:
        assert (await send(gateway, "POST", "/api/v2/tenants/default_tenant/databases", {"name": "dup"})).status == 200
        await drained(gateway)
        await everything_down(gateway, cluster)
        blind = await send(gateway, "POST", "/api/v2/tenants/default_tenant/databases", {"name": "dup"})
        assert (blind.status, parsed(blind)) == (200, {})  # what Chroma answers a create it takes
        for instance in cluster.instances:
            instance.down = False
        await drained(gateway)
        assert await gateway.store.divergences() == []  # both instances refused it alike: nothing diverged
        seen = await send(gateway, "POST", "/api/v2/tenants/default_tenant/databases", {"name": "dup"})
        assert seen.status == 409  # an instance is up: Chroma's own answer
        assert all(set(i.tenants["default_tenant"]) == {"default_database", "dup"} for i in cluster.instances)


async def test_a_catalog_write_whose_instances_die_while_it_waits_is_answered_when_they_are_seen_down() -> None:
    cluster = FakeCluster()
    async with in_process(cluster, ACK="log", WRITE_TIMEOUT="30") as gateway:
        await create(gateway, "docs")
        await drained(gateway)
        for instance in cluster.instances:
            instance.hung = True  # the health checks notice only after their timeout: the writes are logged first
        database = await asyncio.wait_for(
            send(gateway, "POST", "/api/v2/tenants/default_tenant/databases", {"name": "late"}), 5.0
        )
        assert (database.status, parsed(database)) == (200, {})
        for instance in cluster.instances:
            instance.hung = False
        await drained(gateway)
        assert all("late" in i.tenants["default_tenant"] for i in cluster.instances)


async def test_with_ack_one_and_every_instance_down_health_takes_the_gateway_out() -> None:
    cluster = FakeCluster()
    async with in_process(cluster) as gateway:
        await everything_down(gateway, cluster)
        health = await send(gateway, "GET", "/health")
        assert health.status == 503
        assert (parsed(health)["reads"], parsed(health)["writes"]) == ("unavailable", "unavailable")
