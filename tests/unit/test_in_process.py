"""The gateway's invariants, fast: a whole gateway in this process, on an in-memory store, in front of Chroma
instances simulated in memory (tests/fake_chroma.py). No socket, no subprocess; the same invariants are proven
against real Chroma servers and real processes in tests/integration.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import pytest

from chroma_ha.errors import StoreError
from chroma_ha.gateway.http_server import HttpRequest
from chroma_ha.gateway.reads import RUN_CHOICES
from chroma_ha.replication import bootstrap
from chroma_ha.replication.applier import GIVE_UP_AFTER
from chroma_ha.store import Applied, Divergence, IdMapping
from chroma_ha.store.memory import MemoryDatabase, MemoryStore
from tests.fake_chroma import FakeCluster, call, drained, error, in_process, wait_until

BASE = "/api/v2/tenants/default_tenant/databases/default_database"
COLLECTIONS = f"{BASE}/collections"


def records(*ids: str, **metadata: Any) -> dict[str, Any]:
    return {
        "ids": list(ids),
        "embeddings": [[1.0, float(n)] for n in range(len(ids))],
        "metadatas": [dict(metadata) for _ in ids],
    }


async def create(gateway: Any, name: str) -> str:
    status, body = await call(gateway, "POST", COLLECTIONS, {"name": name})
    assert status == 200, body
    return str(body["id"])


async def churn(gateway: Any) -> None:
    """Every kind of write, each answered as Chroma answers it."""
    assert (await call(gateway, "POST", "/api/v2/tenants", {"name": "team"}))[0] == 200
    assert (await call(gateway, "POST", "/api/v2/tenants/team/databases", {"name": "dbx"}))[0] == 200
    assert (await call(gateway, "DELETE", "/api/v2/tenants/team/databases/dbx"))[0] == 200
    docs = await create(gateway, "docs")
    assert (await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("a", "b", "c", v=1)))[0] == 201
    assert (await call(gateway, "POST", f"{COLLECTIONS}/{docs}/upsert", records("c", "d", v=2)))[0] == 200
    assert (await call(gateway, "POST", f"{COLLECTIONS}/{docs}/update", {"ids": ["a"], "documents": ["A"]}))[0] == 200
    assert (await call(gateway, "POST", f"{COLLECTIONS}/{docs}/delete", {"ids": ["b"]}))[0] == 200
    assert (await call(gateway, "POST", f"{COLLECTIONS}/{docs}/delete", {"where": {"v": 2}}))[0] == 200
    assert (await call(gateway, "PUT", f"{COLLECTIONS}/{docs}", {"new_name": "renamed", "new_metadata": {"m": 1}}))[
        0
    ] == 200
    temp = await create(gateway, "temp")
    assert (await call(gateway, "POST", f"{COLLECTIONS}/{temp}/add", records("t1")))[0] == 201
    assert (await call(gateway, "DELETE", f"{COLLECTIONS}/temp"))[0] == 200
    again = await create(gateway, "temp")  # the same name again: a new collection
    assert again != temp
    assert (await call(gateway, "POST", f"{COLLECTIONS}/{again}/add", records("t2")))[0] == 201


def assert_churned(cluster: FakeCluster) -> None:
    first, second = (i.collections() for i in cluster.instances)
    assert first == second
    assert set(first) == {"renamed", "temp"}
    metadata, kept = first["renamed"]
    assert metadata == {"m": 1} and set(kept) == {"a"}  # b deleted by id; c and d by where
    assert kept["a"]["documents"] == "A" and kept["a"]["metadatas"] == {"v": 1}
    assert set(first["temp"][1]) == {"t2"}
    assert all(set(i.tenants["team"]) == set() for i in cluster.instances)


class CrashingStore(MemoryStore):
    """Fails once at `step` for every (instance, seq), as a gateway dying right there would: the entry is then
    applied again. `intent`: after the intent of a catalog write is recorded, before the instance is asked.
    `commit`: after the instance applied the batch, before its outcome and cursor are recorded."""

    def __init__(self, step: str) -> None:
        super().__init__()
        self.step = step
        self.crashed: set[tuple[str, int]] = set()

    def _crash(self, instance: str, seq: int) -> None:
        if (instance, seq) not in self.crashed:
            self.crashed.add((instance, seq))
            raise StoreError(f"injected: the gateway died at {self.step}")

    async def record_intent(self, instance: str, seq: int) -> None:
        await super().record_intent(instance, seq)
        if self.step == "intent":
            self._crash(instance, seq)

    async def commit_batch(
        self, instance: str, applied: Sequence[Applied], cursor: int, mappings: Sequence[IdMapping]
    ) -> list[Divergence]:
        if self.step == "commit":
            self._crash(instance, cursor)
        return await super().commit_batch(instance, applied, cursor, mappings)


@pytest.mark.parametrize("step", ["intent", "commit"])
async def test_every_write_applied_again_after_a_crash_changes_nothing(step: str) -> None:
    cluster, store = FakeCluster(), CrashingStore(step)
    async with in_process(cluster, store=store) as gateway:
        await churn(gateway)
        await drained(gateway)
        assert await store.divergences() == []
    assert_churned(cluster)
    # every catalog write (8), or every write (15: each acknowledged before the next), crashed on both instances
    assert len(store.crashed) == 2 * (8 if step == "intent" else 15)


async def test_a_restarted_gateway_brings_an_instance_that_was_down_level_from_the_log() -> None:
    cluster, database = FakeCluster(), MemoryDatabase()
    cluster.instances[1].down = True
    async with in_process(cluster, store=MemoryStore(database)) as gateway:
        await churn(gateway)  # acknowledged once instance 0 applied each write
    cluster.instances[1].down = False
    async with in_process(cluster, store=MemoryStore(database)) as gateway:
        await drained(gateway)
    assert_churned(cluster)


async def test_a_read_fails_over_from_a_failing_a_hung_and_a_dead_instance() -> None:
    cluster = FakeCluster()
    # reads go to instance 0 first, and neither probes nor failed reads take it out meanwhile
    async with in_process(cluster, INSTANCE_WEIGHTS="1000,1", HEALTH_FALL="1000", REQUEST_TIMEOUT="0.2") as gateway:
        docs = await create(gateway, "docs")
        await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("a"))
        await drained(gateway)
        first, second = cluster.instances
        count = ("GET", f"{COLLECTIONS}/{_own(cluster, 0)}/count")
        first.fail_next = [error(503, "ServiceUnavailable", "busy")]
        assert (await call(gateway, "GET", f"{COLLECTIONS}/{docs}/count")) == (200, 1)
        first.hung = True  # answers nothing: the read times out there (REQUEST_TIMEOUT) and is asked again
        assert (await call(gateway, "GET", f"{COLLECTIONS}/{docs}/count")) == (200, 1)
        first.hung, first.down = False, True
        assert (await call(gateway, "GET", f"{COLLECTIONS}/{docs}/count")) == (200, 1)
        assert first.attempts.count(count) == 3 and count not in first.requests
        assert second.requests.count(("GET", f"{COLLECTIONS}/{_own(cluster, 1)}/count")) == 3


def _own(cluster: FakeCluster, n: int, name: str = "docs") -> str:
    return cluster.instances[n].tenants["default_tenant"]["default_database"][name].id


async def test_a_write_an_instance_is_busy_applying_is_waited_for_past_the_write_timeout() -> None:
    cluster = FakeCluster()
    async with in_process(cluster, WRITE_TIMEOUT="0.3", REQUEST_TIMEOUT="5") as gateway:
        docs = await create(gateway, "docs")
        await drained(gateway)
        cluster.instances[0].down = True
        cluster.instances[1].slow = 1.0  # a large batch: Chroma takes its time, and answers heartbeats meanwhile
        started = asyncio.get_running_loop().time()
        assert (await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("a")))[0] == 201
        assert asyncio.get_running_loop().time() - started >= 1.0


async def test_a_write_no_instance_makes_progress_on_is_answered_logged_after_the_write_timeout() -> None:
    cluster = FakeCluster()
    async with in_process(cluster, WRITE_TIMEOUT="0.3") as gateway:
        docs = await create(gateway, "docs")
        await drained(gateway)
        cluster.instances[0].down = True
        cluster.instances[1].hung = True  # as SIGSTOPped: no heartbeat either
        started = asyncio.get_running_loop().time()
        status, body = await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("a"))
        took = asyncio.get_running_loop().time() - started
        assert status == 503 and body["error"] == "WriteLogged" and "will still be applied" in body["message"]
        assert 0.3 <= took < 2.0  # not sooner than the timeout, and not never
        cluster.instances[0].down = cluster.instances[1].hung = False
        await drained(gateway)
    assert [set(i.collections()["docs"][1]) for i in cluster.instances] == [{"a"}, {"a"}]


async def test_with_ack_all_a_write_waits_for_every_instance_that_is_up() -> None:
    cluster = FakeCluster()
    async with in_process(cluster, ACK="all", HEALTH_FALL="1000", WRITE_TIMEOUT="0.3", REQUEST_TIMEOUT="5") as gateway:
        docs = await create(gateway, "docs")
        await drained(gateway)
        cluster.instances[1].slow = 0.5
        started = asyncio.get_running_loop().time()
        assert (await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("a")))[0] == 201
        assert asyncio.get_running_loop().time() - started >= 0.5
        assert gateway.progress.cursors[cluster.urls[1]] >= await gateway.store.head()


async def test_with_ack_one_a_write_is_answered_by_the_instance_that_is_up() -> None:
    cluster = FakeCluster()
    async with in_process(cluster) as gateway:
        docs = await create(gateway, "docs")
        cluster.instances[0].down = True
        assert (await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("a")))[0] == 201
        assert (await call(gateway, "GET", f"{COLLECTIONS}/{docs}/count")) == (200, 1)


async def test_a_wiped_instance_is_bootstrapped_from_the_source_cursor_then_follows_the_log() -> None:
    cluster, store = FakeCluster(), MemoryStore()
    async with in_process(cluster, store=store, RETENTION="0.01") as gateway:
        docs = await create(gateway, "docs")
        await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("a", "b"))
        await drained(gateway)
        await _until(lambda: store.oldest_seq(), lambda oldest: oldest > 2)  # the log no longer holds the add
        wiped = cluster.instances[1]
        wiped.down = True
        await _until(lambda: _up(gateway, wiped.url), lambda up: not up)
        wiped.wipe()
        await call(gateway, "POST", f"{COLLECTIONS}/{docs}/upsert", records("c"))  # held back from pruning
        source_cursor = gateway.progress.cursors[cluster.urls[0]]
        wiped.down = False
        status = await _until(lambda: _bootstrap(gateway, wiped.url), lambda s: s.get("state") == "done")
        assert status["source"] == cluster.urls[0] and status["start_seq"] == source_cursor
        await call(gateway, "POST", f"{COLLECTIONS}/{docs}/delete", {"ids": ["a"]})
        await drained(gateway)
    first, second = (i.collections() for i in cluster.instances)
    assert first == second and set(first["docs"][1]) == {"b", "c"}


class PositionCrashStore(MemoryStore):
    """Fails once as the bootstrap records that the target holds page `page`, as a gateway dying right after the
    target acknowledged that page would: the next run must resume after the page before it."""

    def __init__(self, page: int) -> None:
        super().__init__()
        self.page, self.crashed = page, False

    async def save_bootstrap_pages(self, instance: str, pages: Sequence[tuple[int, bytes]]) -> None:
        if not self.crashed and (-1, str(self.page).encode()) in pages:
            self.crashed = True
            raise StoreError("injected: the gateway died while recording the bootstrap's position")
        await super().save_bootstrap_pages(instance, pages)


async def test_a_bootstrap_that_crashed_resumes_after_the_last_page_the_target_holds() -> None:
    cluster, store = FakeCluster(), PositionCrashStore(page=4)
    async with in_process(cluster, store=store, RETENTION="0.01", BOOTSTRAP_PAGE_SIZE="2") as gateway:
        docs = await create(gateway, "docs")
        ids = [f"r{n:02}" for n in range(19)]
        assert (await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records(*ids)))[0] == 201
        await drained(gateway)
        await _until(lambda: store.oldest_seq(), lambda oldest: oldest > 2)
        wiped = cluster.instances[1]
        wiped.down = True
        await _until(lambda: _up(gateway, wiped.url), lambda up: not up)
        wiped.wipe()
        wiped.down = False
        status = await _until(lambda: _bootstrap(gateway, wiped.url), lambda s: s.get("state") == "done")
        await drained(gateway)
        assert store.crashed
        assert status["pages_total"] == 10 and status["resumed_after_page"] == 3
        assert status["pages_copied"] == 7 and status["records_copied"] == 19 - 6
        assert await store.bootstrap_pages(wiped.url, -1, 10) == []  # the plan is dropped once done
    first, second = (i.collections() for i in cluster.instances)
    assert first == second and set(first["docs"][1]) == set(ids)


async def test_a_bootstrap_longer_than_rebuild_after_keeps_holding_back_pruning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bootstrap, "CURSOR_TOUCH_S", 0.05)
    cluster, store = FakeCluster(), MemoryStore()
    settings = {"RETENTION": "0.01", "REBUILD_AFTER": "0.3", "BOOTSTRAP_PAGE_SIZE": "1"}
    async with in_process(cluster, store=store, **settings) as gateway:
        docs = await create(gateway, "docs")
        ids = [f"r{n:02}" for n in range(19)]
        assert (await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records(*ids)))[0] == 201
        await drained(gateway)
        await _until(lambda: store.oldest_seq(), lambda oldest: oldest > 2)
        wiped = cluster.instances[1]
        wiped.down = True
        await _until(lambda: _up(gateway, wiped.url), lambda up: not up)
        wiped.wipe()
        wiped.slow = 0.06  # 19 pages: over a second of copying, past REBUILD_AFTER
        wiped.down = False
        released: set[str] = set()
        while (await _bootstrap(gateway, wiped.url)).get("state") != "done":
            released.update(gateway.retention.released)
            await asyncio.sleep(0.02)
        status = await _bootstrap(gateway, wiped.url)
        await drained(gateway)
        assert released == set() and status["pages_copied"] == 19
        assert status["finished_at"] - status["started_at"] > 0.3
    first, second = (i.collections() for i in cluster.instances)
    assert first == second and set(first["docs"][1]) == set(ids)


async def _up(gateway: Any, url: str) -> bool:
    return bool(gateway.health.is_up(url))


async def _bootstrap(gateway: Any, url: str) -> dict[str, Any]:
    return dict(gateway.bootstrap.status_document().get(url, {}))


async def _until(read: Any, done: Any, timeout: float = 5.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await read()
        if done(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached in {timeout}s: last {value!r}")
        await asyncio.sleep(0.01)


class ReadCountingStore(MemoryStore):
    """Records the bodies' bytes of every `read` of whole entries."""

    def __init__(self, database: MemoryDatabase | None = None) -> None:
        super().__init__(database)
        self.reads: list[int] = []

    async def read(self, after: int, limit: int, max_bytes: int | None = None) -> list[Any]:
        entries = await super().read(after, limit, max_bytes)
        self.reads.append(sum(len(e.body) for e in entries))
        return entries


async def test_log_reads_are_bounded_by_bytes_and_start_up_reads_no_bodies() -> None:
    cluster, database = FakeCluster(), MemoryDatabase()
    megabyte = "x" * (1 << 20)
    cluster.instances[1].down = True
    async with in_process(cluster, store=MemoryStore(database), BATCH_MAX_BYTES=str(4 << 20)) as gateway:
        docs = await create(gateway, "docs")
        for n in range(8):  # applied one by one on instance 0, left in the log for instance 1
            body = {"ids": [f"r{n}"], "embeddings": [[1.0, 2.0]], "documents": [megabyte]}
            assert (await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", body))[0] == 201
    store = ReadCountingStore(database)
    cluster.instances[1].down = False
    async with in_process(cluster, store=store, BATCH_MAX_BYTES=str(4 << 20)) as gateway:
        started_reads = list(store.reads)
        await drained(gateway)
        limit = gateway.limits.current.max_bytes
    assert started_reads == []  # the read index is rebuilt from the entries' keys only
    assert len(store.reads) > 1 and max(store.reads) <= limit + (1 << 20) + 1000
    assert [set(i.collections()["docs"][1]) for i in cluster.instances] == [{f"r{n}" for n in range(8)}] * 2


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("POST", "/api/v2/nothing-here", 404, None),
        ("GET", "/api/v2/heartbeat/", 404, None),  # Chroma takes no trailing slash
        ("POST", "/api/v2/tenants/default_tenant/databases/", 404, None),
        ("DELETE", "/api/v2/tenants/default_tenant", 405, b"GET,HEAD,PATCH"),
        ("GET", f"{COLLECTIONS}/docs/add", 405, b"POST"),
        ("OPTIONS", "/api/v2/heartbeat", 405, b"GET,HEAD"),
        ("POST", f"{COLLECTIONS}/11111111-1111-4111-8111-111111111111/fork", 501, None),
        ("POST", f"{COLLECTIONS}/11111111-1111-4111-8111-111111111111/functions/attach", 501, None),
    ],
)
async def test_a_route_the_gateway_does_not_replicate_is_answered_by_it_and_never_forwarded(
    method: str, path: str, status: int, allow: bytes | None
) -> None:
    cluster = FakeCluster()
    async with in_process(cluster) as gateway:
        response = await gateway.routes(HttpRequest(method, path, "", [], b"{}"))
    assert response.status == status
    assert dict(response.headers).get(b"allow") == allow
    if status == 501:
        assert b"NotImplementedError" in response.body and b"cannot replay" in response.body
    else:
        assert response.body == b""  # as Chroma answers an unknown route
    assert all((method, path) not in i.attempts for i in cluster.instances)


async def test_a_body_naming_a_field_twice_is_applied_alike_alone_and_in_a_batch() -> None:
    cluster, store = FakeCluster(), MemoryStore()
    async with in_process(cluster, store=store) as gateway:
        docs = await create(gateway, "docs")
        await drained(gateway)
        cluster.instances[1].down = True  # it will apply both adds in one merged call
        twice = b'{"ids":["d1"],"embeddings":[[1,2]],"ids":["d1"]}'
        path = f"{COLLECTIONS}/{docs}/add"
        answer = await gateway.routes(HttpRequest("POST", path, "", [(b"content-type", b"application/json")], twice))
        assert answer.status == 201
        assert (await call(gateway, "POST", path, {"ids": ["d2"], "embeddings": [[3.0, 4.0]]}))[0] == 201
        cluster.instances[1].down = False
        await drained(gateway)
        assert await store.divergences() == []
        assert gateway.applier_stats[cluster.urls[1]].batch_sizes[-1] == 2
    assert [set(i.collections()["docs"][1]) for i in cluster.instances] == [{"d1", "d2"}] * 2


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v2/tenants", {"name": "chroma_ha_system"}),
        ("GET", "/api/v2/tenants/chroma_ha_system", None),
        ("GET", "/api/v2/tenants/chroma_ha_system/databases", None),
        ("DELETE", "/api/v2/tenants/chroma_ha_system/databases/system", None),
        ("GET", "/api/v2/tenants/chroma_ha_system/databases/system/collections/incarnation", None),
        ("DELETE", "/api/v2/tenants/chroma_ha_system/databases/system/collections/incarnation", None),
        ("POST", "/api/v2/tenants/chroma_ha_system/databases/system/collections", {"name": "mine"}),
        ("GET", "/api/v2/collections/chroma_ha_system:system:incarnation", None),
        ("GET", "/api/v2/tenants/chroma%5Fha%5Fsystem/databases", None),  # the same name, percent-encoded
    ],
)
async def test_the_gateways_own_tenant_is_refused_on_every_route(method: str, path: str, body: Any) -> None:
    cluster, store = FakeCluster(), MemoryStore()
    async with in_process(cluster, store=store) as gateway:
        status, answer = await call(gateway, method, path, body)
        head = await store.head()
    assert status == 403 and answer["error"] == "AuthorizationError" and "reserved" in answer["message"]
    assert head == 0
    assert all((method, path) not in i.attempts for i in cluster.instances)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "ab"}, "3-512 characters"),
        ({"name": "a..b"}, "two consecutive periods"),
        ({"name": "10.0.0.1"}, "not a valid ip address"),
        ({"name": "snow☃"}, "3-512 characters"),
    ],
)
async def test_a_name_chroma_refuses_is_refused_with_its_message_before_it_is_logged(
    body: dict[str, str], message: str
) -> None:
    cluster, store = FakeCluster(), MemoryStore()
    async with in_process(cluster, store=store) as gateway:
        status, answer = await call(gateway, "POST", COLLECTIONS, body)
        head = await store.head()
    assert (status, answer["error"]) == (400, "InvalidArgumentError") and message in answer["message"]
    assert answer["message"].startswith("Validation error: name: ")
    assert head == 0


async def test_a_tenant_named_with_any_character_is_replicated_and_bootstrapped() -> None:
    cluster, store = FakeCluster(), MemoryStore()
    tenant = "a/b ☃%"
    quoted = "a%2Fb%20%E2%98%83%25"
    async with in_process(cluster, store=store, RETENTION="0.01") as gateway:
        assert (await call(gateway, "POST", "/api/v2/tenants", {"name": tenant}))[0] == 200
        assert (await call(gateway, "POST", f"/api/v2/tenants/{quoted}/databases", {"name": "dbx"}))[0] == 200
        status, created = await call(
            gateway, "POST", f"/api/v2/tenants/{quoted}/databases/dbx/collections", {"name": "docs"}
        )
        assert status == 200
        base = f"/api/v2/tenants/{quoted}/databases/dbx/collections/{created['id']}"
        assert (await call(gateway, "POST", f"{base}/add", records("a", "b")))[0] == 201
        await drained(gateway)
        await _until(lambda: store.oldest_seq(), lambda oldest: oldest > 4)  # pruned: a wipe needs a bootstrap
        wiped = cluster.instances[1]
        wiped.down = True
        await _until(lambda: _up(gateway, wiped.url), lambda up: not up)
        wiped.wipe()
        wiped.down = False
        await _until(lambda: _bootstrap(gateway, wiped.url), lambda s: s.get("state") == "done")
        assert (await call(gateway, "GET", f"{base}/count")) == (200, 2)
    first, second = (i.collections(tenant, "dbx") for i in cluster.instances)
    assert first == second and set(first["docs"][1]) == {"a", "b"}


async def test_an_entry_that_keeps_failing_alone_is_given_up_and_the_instance_goes_on() -> None:
    cluster, store = FakeCluster(), MemoryStore()
    stuck = cluster.instances[1]

    def poison(method: str, path: str, payload: Any) -> Any:
        ids = payload.get("ids") if isinstance(payload, dict) else None
        return error(500, "InternalError", "boom") if ids and "poison" in ids else None

    async with in_process(cluster, store=store) as gateway:
        docs = await create(gateway, "docs")
        await drained(gateway)
        stuck.down = True  # both adds wait for it, and are then merged into one call
        assert (await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("fine")))[0] == 201
        assert (await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("poison")))[0] == 201
        stuck.poison, stuck.down = poison, False
        await drained(gateway)
        assert (await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("after")))[0] == 201
        await drained(gateway)
        [divergence] = await store.divergences()
        assert (divergence.instance, divergence.status, divergence.expected_status) == (stuck.url, 500, 201)
        assert any(a["key"].startswith("divergence:") for a in gateway.alerts.recent)
    assert set(stuck.collections()["docs"][1]) == {"fine", "after"}  # split out of its batch, then given up
    assert set(cluster.instances[0].collections()["docs"][1]) == {"fine", "poison", "after"}
    adds = [p for _, p in stuck.attempts if p.endswith("/add")]
    # retried a bounded number of times, not forever: each round the merged call, then the two alone
    assert GIVE_UP_AFTER * 3 <= len(adds) <= GIVE_UP_AFTER * 3 + 2


@pytest.mark.parametrize(("weights", "low", "high"), [("1,1", 0.40, 0.60), ("3,1", 0.65, 0.85)])
async def test_a_client_reading_one_read_at_a_time_is_balanced_by_weight_in_runs(
    weights: str, low: float, high: float
) -> None:
    reads = 250 * RUN_CHOICES  # enough runs to tell the shares apart
    cluster = FakeCluster()
    async with in_process(cluster, INSTANCE_WEIGHTS=weights) as gateway:
        docs = await create(gateway, "docs")
        await drained(gateway)
        first = cluster.instances[0]
        by_first = []  # for each read: did the first instance answer it?
        for _ in range(reads):
            before = len(first.requests)
            assert (await call(gateway, "GET", f"{COLLECTIONS}/{docs}/count"))[0] == 200
            by_first.append(any(path.endswith("/count") for _, path in first.requests[before:]))
    assert low <= by_first.count(True) / reads <= high
    switches = sum(a != b for a, b in itertools.pairwise(by_first))
    assert switches <= reads / RUN_CHOICES  # in runs that keep an instance's caches warm, not read by read


async def test_pages_of_collections_are_cut_from_one_order_whichever_instance_answers() -> None:
    cluster = FakeCluster()
    async with in_process(cluster) as gateway:
        for n in range(30):
            await create(gateway, f"c{n:02d}")
        await drained(gateway)
        status, everything = await call(gateway, "GET", COLLECTIONS)
        assert status == 200 and len(everything) == 30
        ids = [c["id"] for c in everything]
        assert ids == sorted(ids)  # the order Chroma uses, applied to the ids clients see
        for limit in range(1, 7):
            for offset in range(1, 7):
                _, got = await call(gateway, "GET", f"{COLLECTIONS}?limit={limit}&offset={offset}")
                assert [c["id"] for c in got] == ids[offset : offset + limit]
            paged: list[str] = []
            while len(paged) < 30:
                _, got = await call(gateway, "GET", f"{COLLECTIONS}?limit={limit}&offset={len(paged)}")
                paged.extend(c["id"] for c in got)
            assert paged == ids
    listed = [sum(p == COLLECTIONS for _, p in i.requests) for i in cluster.instances]
    assert min(listed) > 20  # both instances answered pages


async def test_a_read_an_instance_answers_404_for_a_known_collection_is_answered_by_another() -> None:
    cluster = FakeCluster()
    async with in_process(cluster, INSTANCE_WEIGHTS="1000,1") as gateway:  # reads go to instance 0 first
        docs = await create(gateway, "docs")
        await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("a"))
        await drained(gateway)
        own = [_own(cluster, n) for n in range(2)]
        cluster.instances[0].wipe()  # as if another gateway were rebuilding it: it holds nothing yet
        assert await call(gateway, "GET", f"{COLLECTIONS}/{docs}/count") == (200, 1)
        cluster.instances[1].wipe()
        status, body = await call(gateway, "GET", f"{COLLECTIONS}/{docs}/count")
    assert status == 404 and docs in body["message"]  # the canonical id, never an instance's own
    assert not any(i in body["message"] for i in own)


async def _docs_with_a_record(gateway: Any) -> str:
    docs = await create(gateway, "docs")
    await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("a"))
    await drained(gateway)
    return docs


async def _taken_down(gateway: Any, instance: Any) -> None:
    instance.down = True
    await wait_until(f"{instance.url} seen down", lambda: instance.url not in gateway.health.up_instances())


async def test_a_404_from_a_lagging_instance_while_the_ones_holding_the_collection_are_down_is_a_503() -> None:
    cluster = FakeCluster()
    lagging, holder = cluster.instances
    async with in_process(cluster) as gateway:
        docs = await _docs_with_a_record(gateway)
        async with gateway.appliers[lagging.url].pause():
            assert (await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("b")))[0] == 201
            lagging.wipe()  # as one being rebuilt: behind the log, and without the collection yet
            await _taken_down(gateway, holder)
            status, body = await call(gateway, "GET", f"{COLLECTIONS}/{docs}/count")
    assert (status, body["error"]) == (503, "ServiceUnavailable")  # never "does not exist": it does
    assert docs in body["message"]


async def test_concurrent_reads_sent_by_an_id_another_gateway_replaced_are_all_sent_again_by_the_new_one() -> None:
    cluster = FakeCluster()
    rebuilt, other = cluster.instances
    async with in_process(cluster) as gateway:
        docs = await _docs_with_a_record(gateway)
        await _taken_down(gateway, other)  # the rebuilt instance is the only one to read from
        # Another gateway rebuilt the instance: the collection has a new id there, which the store maps and this
        # gateway's cache does not know yet.
        collection = rebuilt.tenants["default_tenant"]["default_database"]["docs"]
        stale, collection.id = collection.id, "00000000-0000-4000-8000-000000000001"
        await gateway.store.record_mappings([IdMapping(rebuilt.url, docs, collection.id)])
        answer = rebuilt.handle
        by_stale_id = 0

        async def second_late(method: str, path: str, query: str, body: bytes) -> Any:
            nonlocal by_stale_id
            if stale in path:
                by_stale_id += 1
                if by_stale_id == 2:
                    await asyncio.sleep(0.2)  # its 404 comes once the first read's 404 has had the cache reloaded
            return await answer(method, path, query, body)

        rebuilt.handle = second_late  # type: ignore[method-assign]
        answers = await asyncio.gather(*(call(gateway, "GET", f"{COLLECTIONS}/{docs}/count") for _ in range(2)))
    assert by_stale_id == 2
    assert answers == [(200, 1)] * 2  # the late one is sent again by the new id too: no 503, no 404


async def test_a_deleted_collection_is_404_while_an_instance_that_mapped_it_is_down() -> None:
    cluster = FakeCluster()
    async with in_process(cluster) as gateway:
        doomed = await create(gateway, "doomed")
        assert (await call(gateway, "DELETE", f"{COLLECTIONS}/doomed"))[0] == 200
        await drained(gateway)
        await _taken_down(gateway, cluster.instances[1])
        status, body = await call(gateway, "GET", f"{COLLECTIONS}/{doomed}/count")
    assert status == 404 and doomed in body["message"]


async def test_an_instance_that_went_down_is_not_read_until_its_applier_has_checked_it_again() -> None:
    cluster = FakeCluster()
    async with in_process(cluster) as gateway:
        docs = await create(gateway, "docs")
        await call(gateway, "POST", f"{COLLECTIONS}/{docs}/add", records("a"))
        await drained(gateway)
        back = cluster.instances[1]
        back.down = True
        await _until(lambda: _up(gateway, back.url), lambda up: not up)
        assert gateway.progress.cursors[back.url] == 0  # what it held before may be gone when it comes back
        back.wipe()
        back.down = False
        await drained(gateway)  # checked, found wiped, rebuilt from the log
        assert gateway.progress.cursors[back.url] == await gateway.store.head()
    assert [set(i.collections()["docs"][1]) for i in cluster.instances] == [{"a"}, {"a"}]
