"""An idle applier sleeps until something asks it to act: an append, its instance coming back up, an operator's
recheck. The poll, the idle look and the lease renewal are all set out of the way (an hour), so each of these
tests hangs, and fails, if the applier would only act at its next poll.
"""

from __future__ import annotations

import pytest

from chroma_ha.app import Gateway
from tests.fake_chroma import FakeCluster, call, drained, in_process, wait_until

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"
NEVER = "3600"


@pytest.fixture(autouse=True)
def no_idle_look(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("chroma_ha.replication.applier.IDLE_LOOK_S", float(NEVER), raising=False)


async def _written(gateway: Gateway, name: str = "docs") -> int:
    """A collection and a record in it, applied by every instance; the log's head."""
    status, created = await call(gateway, "POST", COLLECTIONS, {"name": name})
    assert status == 200, created
    body = {"ids": ["a"], "embeddings": [[1.0, 2.0]]}
    status, answer = await call(gateway, "POST", f"{COLLECTIONS}/{created['id']}/add", body)
    assert status == 201, answer
    await drained(gateway)
    return await gateway.store.head()


async def test_an_idle_applier_applies_an_append_at_once() -> None:
    cluster = FakeCluster()
    async with in_process(cluster, POLL_INTERVAL=NEVER, LEASE_TTL=NEVER) as gateway:
        await _written(gateway)
        await wait_until("every applier idle", lambda: all(a.state == "idle" for a in gateway.appliers.values()))
        await _written(gateway, "more")  # `drained` inside: applied by every instance within seconds


async def test_an_idle_applier_checks_its_instance_as_soon_as_it_is_back_up() -> None:
    cluster = FakeCluster()
    async with in_process(cluster, POLL_INTERVAL=NEVER, LEASE_TTL=NEVER) as gateway:
        head = await _written(gateway)
        instance = cluster.instances[1]
        await wait_until("the applier idle", lambda: gateway.appliers[instance.url].state == "idle")
        instance.down = True
        await wait_until("the instance held while down", lambda: gateway.progress.cursors[instance.url] == 0)
        instance.down = False
        await wait_until("the instance checked and shown again", lambda: gateway.progress.cursors[instance.url] == head)


async def test_an_idle_applier_acts_on_an_operators_recheck_at_once() -> None:
    cluster = FakeCluster()
    async with in_process(cluster, POLL_INTERVAL=NEVER, LEASE_TTL=NEVER) as gateway:
        head = await _written(gateway)
        url = cluster.urls[0]
        applier = gateway.appliers[url]
        await wait_until("the applier idle", lambda: applier.state == "idle")
        checks = len([r for r in cluster.instances[0].requests if r[0] == "GET"])
        applier.recheck()
        assert gateway.progress.cursors[url] == 0
        await wait_until("the instance checked and shown again", lambda: gateway.progress.cursors[url] == head)
        assert len([r for r in cluster.instances[0].requests if r[0] == "GET"]) > checks
