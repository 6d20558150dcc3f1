"""The admin API's log routes and actions on a whole gateway in this process (tests/fake_chroma.py): a forced
rebuild, its refusals, a manual prune, and bad parameters answered 400 in Chroma's error shape."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tests.fake_chroma import FakeChroma, FakeCluster, call, drained, in_process

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"


async def ids_on(instance: FakeChroma, name: str) -> list[str]:
    model = orjson.loads((await instance.handle("GET", f"{COLLECTIONS}/{name}", "", b"")).body)
    got = await instance.handle("POST", f"{COLLECTIONS}/{model['id']}/get", "", orjson.dumps({"include": []}))
    return sorted(orjson.loads(got.body)["ids"])


async def test_a_forced_rebuild_makes_a_damaged_instance_like_the_other() -> None:
    cluster = FakeCluster(2)
    a, b = cluster.instances
    async with in_process(cluster) as gateway:
        status, created = await call(gateway, "POST", COLLECTIONS, {"name": "docs"})
        assert status == 200
        body = {"ids": ["x", "y", "z"], "embeddings": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]}
        assert (await call(gateway, "POST", f"{COLLECTIONS}/{created['id']}/add", body))[0] == 201
        await drained(gateway)
        on_b = orjson.loads((await b.handle("GET", f"{COLLECTIONS}/docs", "", b"")).body)["id"]
        await b.handle("POST", f"{COLLECTIONS}/{on_b}/delete", "", orjson.dumps({"ids": ["y"]}))
        assert await ids_on(b, "docs") == ["x", "z"]

        status, answer = await call(gateway, "POST", "/instances/bootstrap", {"instance": b.url})
        assert status == 202 and answer["sources"] == [a.url], answer
        for _ in range(200):
            done = (await call(gateway, "GET", "/wal/status"))[1]["bootstrap"].get(b.url, {})
            if done.get("state") == "done" and gateway.appliers[b.url].state != "bootstrapping":
                break
            await asyncio.sleep(0.02)
        assert done["state"] == "done" and done["source"] == a.url and done["records_copied"] == 3, done
        assert await ids_on(b, "docs") == await ids_on(a, "docs") == ["x", "y", "z"]
        assert not gateway.appliers[b.url].rebuild_requested
        # the gateway serves the collection as before, and writes reach the rebuilt instance
        body = {"ids": ["w"], "embeddings": [[2.0, 2.0]]}
        assert (await call(gateway, "POST", f"{COLLECTIONS}/{created['id']}/add", body))[0] == 201
        await drained(gateway)
        assert await ids_on(b, "docs") == ["w", "x", "y", "z"]


async def test_a_rebuild_is_refused_without_an_instance_to_copy_from() -> None:
    cluster = FakeCluster(2)
    a, b = cluster.instances
    async with in_process(cluster) as gateway:
        status, answer = await call(gateway, "POST", "/instances/bootstrap", {"instance": "http://nowhere:1"})
        assert status == 404 and answer["error"] == "NotFoundError"
        a.down = True
        for _ in range(200):
            if not gateway.health.is_up(a.url):
                break
            await asyncio.sleep(0.01)
        status, answer = await call(gateway, "POST", "/instances/bootstrap", {"instance": b.url})
        assert status == 409 and "no other instance is up and in step" in answer["message"], answer
        assert not gateway.appliers[b.url].rebuild_requested


async def test_bad_parameters_are_answered_400_and_methods_405() -> None:
    async with in_process(FakeCluster(2)) as gateway:
        for method, path, body in (
            ("GET", "/wal/entries", None),
            ("GET", "/wal/entries?seq=zero", None),
            ("GET", "/wal/entries?seq=0", None),
            ("GET", "/wal/entries?seq=3&before=-1", None),
            ("GET", "/wal/divergences?include_resolved=perhaps", None),
            ("POST", "/wal/prune", {"older_than": -1}),
            ("POST", "/wal/prune", {"upto": "all"}),
            ("POST", "/wal/prune", [1]),
            ("POST", "/instances/bootstrap", {}),
        ):
            status, answer = await call(gateway, method, path, body)
            assert status == 400 and answer["error"] == "InvalidArgumentError" and answer["message"], (path, answer)
        assert (await call(gateway, "GET", "/wal/prune"))[0] == 405
        assert (await call(gateway, "POST", "/wal/status"))[0] == 405


async def test_a_manual_prune_removes_what_every_instance_applied_and_the_entries_route_shows_what_is_left() -> None:
    async with in_process(FakeCluster(2)) as gateway:
        for n in range(4):
            assert (await call(gateway, "POST", COLLECTIONS, {"name": f"col{n}"}))[0] == 200
        await drained(gateway)
        entries: dict[str, Any] = (await call(gateway, "GET", "/wal/entries?seq=2&before=1&after=1"))[1]
        assert [e["seq"] for e in entries["entries"]] == [1, 2, 3]
        assert all(e["op"] == "create_collection" and e["outcome"]["status"] == 200 for e in entries["entries"])
        assert all("headers" not in e for e in entries["entries"])
        status, pruned = await call(gateway, "POST", "/wal/prune", {"upto": 2})
        assert status == 200 and (pruned["pruned"], pruned["oldest"]) == (2, 3), pruned
        assert [e["seq"] for e in (await call(gateway, "GET", "/wal/entries?seq=2"))[1]["entries"]] == [3, 4]
        status, pruned = await call(gateway, "POST", "/wal/prune", {"older_than": 3600})
        assert status == 200 and pruned["pruned"] == 0  # everything left is younger than an hour
        status, pruned = await call(gateway, "POST", "/wal/prune")
        assert (status, pruned["pruned"], pruned["oldest"], pruned["head"]) == (200, 2, 5, 4)
