"""Membership on a whole gateway in this process (tests/fake_chroma.py): an added instance joins, catches up and then
serves reads, a joining one serves none, a removed one is forgotten everywhere, the last active one stays, and a
restarted gateway keeps the store's list rather than the configured one."""

from __future__ import annotations

import pytest

from chroma_ha.app import Gateway
from chroma_ha.gateway.http_server import HttpRequest
from chroma_ha.store import MemoryDatabase, MemoryStore
from tests.fake_chroma import FakeChroma, FakeCluster, call, drained, in_process, settings_for, wait_until
from tests.unit.test_admin_actions import COLLECTIONS, ids_on

FAST_MEMBERS = {"MEMBERSHIP_POLL": "0.02"}


def new_instance(cluster: FakeCluster, n: int) -> FakeChroma:
    """A fake instance the transport reaches but no setting names."""
    instance = FakeChroma(f"http://new-{n}:8000")
    cluster.instances.append(instance)
    cluster.by_url[instance.url] = instance
    return instance


async def add_records(gateway: Gateway, collection: str, first: int, count: int) -> None:
    ids = [f"r{n}" for n in range(first, first + count)]
    body = {"ids": ids, "embeddings": [[float(n), 1.0] for n in range(first, first + count)]}
    status, answer = await call(gateway, "POST", f"{COLLECTIONS}/{collection}/add", body)
    assert status == 201, answer


async def test_an_added_instance_joins_catches_up_and_then_serves_reads() -> None:
    cluster = FakeCluster(2)
    async with in_process(cluster, **FAST_MEMBERS) as gateway:
        created = (await call(gateway, "POST", COLLECTIONS, {"name": "docs"}))[1]
        await add_records(gateway, created["id"], 0, 5)
        new = new_instance(cluster, 0)
        new.stalled = True  # it answers heartbeats but applies nothing: it stays joining

        status, added = await call(gateway, "POST", "/instances", {"url": new.url + "/"})
        assert status == 202 and added["url"] == new.url and added["state"] == "joining", added
        assert gateway.members.state(new.url) == "joining" and new.url in gateway.appliers
        for _ in range(20):  # reads while it joins never go to it
            assert (await call(gateway, "POST", f"{COLLECTIONS}/{created['id']}/get", {}))[0] == 200
        assert not [r for r in new.requests if r[1].endswith("/get")]
        listing = (await call(gateway, "GET", "/instances"))[1]
        assert [(i["url"], i["state"]) for i in listing["instances"]][-1] == (new.url, "joining")

        new.stalled = False
        await wait_until("the new instance to become active", lambda: gateway.members.state(new.url) == "active")
        await add_records(gateway, created["id"], 5, 5)
        await drained(gateway)
        assert await ids_on(new, "docs") == await ids_on(cluster.instances[0], "docs")
        assert len(await ids_on(new, "docs")) == 10
        for old in cluster.instances[:2]:
            old.down = True
        await wait_until("the old instances to be seen down", lambda: gateway.health.up_instances() == [new.url])
        status, got = await call(gateway, "POST", f"{COLLECTIONS}/{created['id']}/get", {})
        assert status == 200 and len(got["ids"]) == 10
        assert [r for r in new.requests if r[1].endswith("/get")], "the read was not answered by the new instance"


async def test_a_removed_instance_is_forgotten_and_no_longer_read_or_applied_to() -> None:
    cluster = FakeCluster(2)
    a, b = cluster.instances
    database = MemoryDatabase()
    async with in_process(cluster, store=MemoryStore(database), **FAST_MEMBERS) as gateway:
        created = (await call(gateway, "POST", COLLECTIONS, {"name": "docs"}))[1]
        await add_records(gateway, created["id"], 0, 3)
        await drained(gateway)

        status, removed = await call(gateway, "POST", "/instances/remove", {"url": b.url})
        assert status == 200 and removed == {
            "url": b.url,
            "state": "removed",
            "drained_seconds": removed["drained_seconds"],
        }
        assert removed["drained_seconds"] >= 2 * 0.02
        assert gateway.members.urls == (a.url,)
        assert set(gateway.appliers) == {a.url} and set(gateway.health.states) == {a.url}
        assert b.url not in gateway.progress.cursors
        assert b.url not in database.cursors and not [k for k in database.mappings if k[0] == b.url]
        sent = len(b.attempts)
        await add_records(gateway, created["id"], 3, 3)
        assert (await call(gateway, "POST", f"{COLLECTIONS}/{created['id']}/get", {}))[0] == 200
        await drained(gateway)
        assert len(b.attempts) == sent, "the removed instance was still sent requests"
        assert len(await ids_on(a, "docs")) == 6
        for document in ("/health", "/wal/status", "/dashboard/data"):
            assert b.url not in str((await call(gateway, "GET", document))[1]), document
        status_document = (await call(gateway, "GET", "/status"))[1]  # its settings show the configured list
        assert set(status_document["instances"]) == {a.url}
        metrics = await gateway.routes(HttpRequest("GET", "/metrics", "", [], b""))
        assert a.url.encode() in metrics.body and b.url.encode() not in metrics.body


async def test_the_last_active_instance_is_not_removed_and_refusals_are_in_chromas_shape() -> None:
    cluster = FakeCluster(1)
    (a,) = cluster.instances
    async with in_process(cluster, **FAST_MEMBERS) as gateway:
        status, refused = await call(gateway, "POST", "/instances/remove", {"url": a.url})
        assert status == 409 and refused["error"] == "Conflict" and "last active" in refused["message"], refused
        status, refused = await call(gateway, "POST", "/instances/remove", {"url": "http://nowhere:1"})
        assert status == 404 and refused["error"] == "NotFoundError", refused
        status, refused = await call(gateway, "POST", "/instances", {"url": a.url})
        assert status == 409 and refused["error"] == "Conflict", refused
        down = new_instance(cluster, 1)
        down.down = True
        status, refused = await call(gateway, "POST", "/instances", {"url": down.url})
        assert status == 400 and "cannot reach" in refused["message"], refused
        assert gateway.members.urls == (a.url,)


async def test_a_restarted_gateway_keeps_the_stores_list_not_the_configured_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = FakeCluster(2)
    a, b = cluster.instances
    database = MemoryDatabase()
    async with in_process(cluster, store=MemoryStore(database), **FAST_MEMBERS) as gateway:
        new = new_instance(cluster, 0)
        assert (await call(gateway, "POST", "/instances", {"url": new.url}))[0] == 202
        await wait_until("the new instance to become active", lambda: gateway.members.state(new.url) == "active")
        assert (await call(gateway, "POST", "/instances/remove", {"url": a.url}))[0] == 200
    # restarted with a, b and the new one configured: the store's list wins, a removed instance is not re-added
    assert settings_for(cluster).instances == (a.url, b.url, new.url)
    async with in_process(cluster, store=MemoryStore(database), **FAST_MEMBERS) as restarted:
        assert restarted.members.urls == (b.url, new.url)
        assert set(restarted.appliers) == {b.url, new.url}
        assert (await call(restarted, "GET", "/health"))[1]["instances"].keys() == {b.url, new.url}
    [warning] = [r.getMessage() for r in caplog.records if "differs from the store's list" in r.getMessage()]
    assert f"configured but not members: {a.url};" in warning and "members not configured: none" in warning


async def test_a_removed_instance_added_back_with_its_old_data_is_copied_not_replayed_onto() -> None:
    cluster = FakeCluster(2)
    a, b = cluster.instances
    async with in_process(cluster, **FAST_MEMBERS) as gateway:
        created = (await call(gateway, "POST", COLLECTIONS, {"name": "docs"}))[1]
        await add_records(gateway, created["id"], 0, 5)
        await drained(gateway)
        assert (await call(gateway, "POST", "/instances/remove", {"url": b.url}))[0] == 200
        await add_records(gateway, created["id"], 5, 5)
        deleted = {"ids": ["r0"]}
        assert (await call(gateway, "POST", f"{COLLECTIONS}/{created['id']}/delete", deleted))[0] == 200
        assert await gateway.store.oldest_seq() == 1  # the whole log is there: it could be replayed

        assert (await call(gateway, "POST", "/instances", {"url": b.url}))[0] == 202  # b still holds r0..r4
        await wait_until("b to become active again", lambda: gateway.members.state(b.url) == "active")
        await drained(gateway)
        assert await ids_on(b, "docs") == await ids_on(a, "docs") == sorted(f"r{n}" for n in range(1, 10))
        assert await gateway.store.divergences() == []
        assert gateway.bootstrap.status[b.url].state == "done"


async def test_a_removed_instance_that_was_down_leaves_no_alert_firing() -> None:
    cluster = FakeCluster(2)
    b = cluster.instances[1]
    async with in_process(cluster, **FAST_MEMBERS) as gateway:
        b.down = True
        await wait_until("b to be alerted down", lambda: any(b.url in t for t in gateway.alerts.firing_titles()))
        assert (await call(gateway, "POST", "/instances/remove", {"url": b.url}))[0] == 200
        assert not [t for t in gateway.alerts.firing_titles() if b.url in t]
