"""Retention, the store methods bootstrap and repair need, and the decisions around them, on a real SQLite store.

(The same store behaviour is what the PostgreSQL backend must give once it has `scopes` and `record_mappings`.)
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chroma_ha.catalog.drain import LogWatch, NotDrained, touches
from chroma_ha.replication.bootstrap import BOOTSTRAPPING, Candidate, choose_source
from chroma_ha.replication.retention import Retention, prune_interval
from chroma_ha.store import IdMapping, LogStore, NewEntry
from chroma_ha.store.sqlite import SQLiteStore


def entry(scope: str, collection_id: str | None = None, op: str = "add") -> NewEntry:
    return NewEntry(op=op, method="POST", path="/api/v2/x", body=b"{}", collection_id=collection_id, scope=scope)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LogStore]:
    opened = SQLiteStore(str(tmp_path / "wal.db"))
    await opened.open()
    yield opened
    await opened.close()


async def test_retention_prunes_only_what_every_instance_applied_and_is_old_enough(store: LogStore) -> None:
    await store.append([entry("t/d") for _ in range(10)])
    retention = Retention(store, ("a", "b"), retention=60.0)
    await store.set_cursor("a", 8, "inc-a")
    assert await retention.prune_once(now=time.time() + 3600) == 0  # b has no cursor: it needs everything
    await store.set_cursor("b", 5, "inc-b")
    assert await retention.prune_once() == 0  # applied, but younger than the window
    assert await retention.prune_once(now=time.time() + 3600) == 5
    assert await store.oldest_seq() == 6 and await store.head() == 10
    await store.set_cursor("b", 0, BOOTSTRAPPING)  # a bootstrap holds pruning back
    await store.set_cursor("a", 10, "inc-a")
    assert await retention.prune_once(now=time.time() + 3600) == 0
    await store.set_cursor("b", 10, "inc-b2")
    assert await retention.prune_once(now=time.time() + 3600) == 5
    assert await store.read(0, 10) == [] and retention.pruned == 10


async def test_retention_stops_at_the_first_entry_inside_the_window(store: LogStore) -> None:
    await store.append([entry("t/d") for _ in range(3)])
    cutoff = time.time() + 0.01
    time.sleep(0.05)
    await store.append([entry("t/d") for _ in range(3)])
    for instance in ("a", "b"):
        await store.set_cursor(instance, 6, "inc")
    assert await Retention(store, ("a", "b"), retention=1.0).prune_once(now=cutoff + 1.0) == 3
    assert await store.oldest_seq() == 4


def test_the_prune_interval_follows_the_window_within_bounds() -> None:
    assert prune_interval(0.5) == 0.25 and prune_interval(30) == 15 and prune_interval(86400) == 60


async def test_scopes_outlive_pruning_and_mappings_can_be_recorded_alone(store: LogStore) -> None:
    await store.append([entry("acme"), entry("acme/projects", op="create_database"), entry("t/d"), entry("")])
    await store.prune(2)
    assert await store.scopes() == ["acme", "acme/projects", "t/d"]
    await store.record_mappings([IdMapping("i1", "C", "x1"), IdMapping("i2", "C", "x2")])
    await store.record_mappings([IdMapping("i2", "C", "x3")])
    assert sorted(await store.mappings(), key=lambda m: m.instance) == [
        IdMapping("i1", "C", "x1"),
        IdMapping("i2", "C", "x3"),
    ]
    await store.reset()
    assert await store.scopes() == []


def test_the_bootstrap_source_is_the_most_advanced_verified_instance() -> None:
    def c(name: str, cursor: int, *, up: bool = True, state: str = "idle", verified: bool = True) -> Candidate:
        return Candidate(name, up, state, verified, cursor)

    assert choose_source("t", [c("t", 99), c("a", 5), c("b", 7)]) == "b"
    assert choose_source("t", [c("a", 7), c("b", 7)]) == "a"
    assert choose_source("t", [c("a", 9, up=False), c("b", 3)]) == "b"
    assert choose_source("t", [c("a", 9, state="bootstrapping"), c("b", 9, verified=False)]) is None
    assert choose_source("t", [c("a", 9, state="standby")]) is None


def test_an_entry_touches_its_collection_and_catalog_changes_above_it() -> None:
    assert touches("C", "t/d", "C", "t/d")
    assert not touches("D", "t/d", "C", "t/d")
    assert touches(None, "t/d", "C", "t/d")  # a collection created, renamed or deleted by name here
    assert touches(None, "t", "C", "t/d") and touches(None, "", "C", "t/d")
    assert not touches(None, "t/other", "C", "t/d") and not touches(None, "tt", "C", "t/d")
    assert touches("*", "", None, "t/d")


async def test_the_log_watch_waits_for_cursors_and_sees_what_was_logged_since(store: LogStore) -> None:
    await store.append([entry("t/d", "C")])
    watch = LogWatch(store)
    with pytest.raises(NotDrained):
        await watch.wait_drained(["a", "b"], timeout=0.2)
    await store.set_cursor("a", 1, "x")
    await store.set_cursor("b", 1, "y")
    since = await watch.wait_drained(["a", "b"], timeout=1.0)
    assert since == 1
    assert not await watch.touched(since, "C", "t/d")
    await store.append([entry("t/d", "D")])
    assert not await watch.touched(since, "C", "t/d")
    await store.append([entry("t/d", "C")])
    assert await watch.touched(since, "C", "t/d")
    assert watch.head == 3
