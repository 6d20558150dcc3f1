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
from chroma_ha.replication.retention import Floor, Retention, capped_upto, prune_interval, pruning_floor
from chroma_ha.store import Cursor, IdMapping, LogStore, NewEntry
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


def test_an_instance_behind_for_longer_than_rebuild_after_no_longer_holds_the_floor() -> None:
    cursors = {
        "up": Cursor("up", 90, "i", updated_at=1000.0),
        "lagging": Cursor("lagging", 40, "i", updated_at=995.0),
        "down": Cursor("down", 10, "i", updated_at=900.0),
        "idle": Cursor("idle", 100, "i", updated_at=0.0),  # at the head: holds nothing, however old its cursor
    }
    instances = ["up", "lagging", "down", "idle", "never-seen"]
    assert pruning_floor(instances, cursors, 100, 1000.0, 60.0, {"never-seen": 990.0}) == Floor(0, ("down",))
    assert pruning_floor(instances, cursors, 100, 1000.0, 60.0, {"never-seen": 900.0}) == Floor(
        40, ("down", "never-seen")
    )
    assert pruning_floor(instances, cursors, 100, 1000.0, 200.0, {"never-seen": 900.0}) == Floor(0, ())
    assert pruning_floor(instances[:2], cursors, 100, 1100.0, 60.0, {}) == Floor(100, ("up", "lagging"))


def test_the_size_cap_prunes_down_to_the_cap_but_never_past_the_floor() -> None:
    assert capped_upto(oldest=1, head=100, floor=100, max_entries=0) == 0  # no cap
    assert capped_upto(oldest=1, head=100, floor=100, max_entries=100) == 0
    assert capped_upto(oldest=1, head=100, floor=100, max_entries=30) == 70
    assert capped_upto(oldest=51, head=100, floor=60, max_entries=30) == 60


async def test_a_released_instance_stops_holding_back_pruning(store: LogStore) -> None:
    await store.append([entry("t/d") for _ in range(10)])
    await store.set_cursor("a", 10, "inc-a")
    await store.set_cursor("b", 3, "inc-b")  # down since
    retention = Retention(store, ("a", "b"), retention=60.0, rebuild_after=600.0)
    assert await retention.prune_once(now=time.time() + 300) == 3 and retention.released == ()
    assert await retention.prune_once(now=time.time() + 900) == 7 and retention.released == ("b",)
    assert retention.status_document()["released"] == ["b"]
    assert await store.oldest_seq() == 11  # past b's cursor: b is bootstrapped when it returns


async def test_the_size_cap_prunes_inside_the_window_up_to_what_every_instance_applied(store: LogStore) -> None:
    await store.append([entry("t/d") for _ in range(10)])
    await store.set_cursor("a", 10, "inc-a")
    await store.set_cursor("b", 8, "inc-b")
    retention = Retention(store, ("a", "b"), retention=3600.0, max_entries=4)
    assert await retention.prune_once() == 6  # the newest four kept
    assert await store.oldest_seq() == 7
    await store.append([entry("t/d") for _ in range(4)])
    assert await retention.prune_once() == 2  # b is at 8: seqs 9 to 14 stay, six, over the cap
    assert await store.oldest_seq() == 9


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
