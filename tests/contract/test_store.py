"""The store contract: what every backend (SQLite, PostgreSQL, memory) must do, tested by behaviour.

Tests taking `backend` or `store` run once per backend; tests taking `pg` are about what only a shared store has
to do: several gateways appending to, reading from and waking on one PostgreSQL database. The schema's migrations,
which only the durable backends have, are in test_migrations.py.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import psycopg
import pytest

from chroma_ha.errors import StoreError
from chroma_ha.local_postgres import database_uri
from chroma_ha.store.base import Applied, Entry, EntryKey, IdMapping, LogStore, NewEntry, Outcome
from chroma_ha.store.postgres import LISTENER_APPLICATION_NAME, PostgresStore

if TYPE_CHECKING:
    from tests.contract.conftest import Backend

WAKE_WITHIN_S = 2.0


def new_entry(n: int, body: bytes | None = None) -> NewEntry:
    return NewEntry(
        op="add",
        method="POST",
        path=f"/api/v2/tenants/t/databases/d/collections/c{n % 3}/add",
        body=body if body is not None else f'{{"ids": ["id-{n}"]}}'.encode(),
        query=f"n={n}",
        headers={"content-type": "application/json", "x-n": str(n)},
        collection_id=f"c{n % 3}" if n % 2 else None,
        scope="t/d",
        extra={"n": n, "resolved": {"ids": [f"id-{n}"], "nested": [1, 2.5, None, True]}},
    )


def same_payload(entry: Entry, new: NewEntry) -> bool:
    return (
        entry.op == new.op
        and entry.method == new.method
        and entry.path == new.path
        and entry.query == new.query
        and entry.headers == new.headers
        and type(entry.body) is bytes
        and entry.body == new.body
        and entry.collection_id == new.collection_id
        and entry.scope == new.scope
        and entry.extra == new.extra
    )


async def read_all(store: LogStore) -> list[Entry]:
    return await store.read(0, 1_000_000)


def assert_gap_free(seqs: list[int], start: int = 1) -> None:
    assert seqs == list(range(start, start + len(seqs))), f"gap or disorder in {seqs}"


# --- the log --------------------------------------------------------------------------------------------------


async def test_empty_store(store: LogStore) -> None:
    assert await store.head() == 0
    assert await store.oldest_seq() == 1
    assert await store.read(0, 10) == []
    assert await store.outcome(1) is None
    assert await store.cursors() == {}
    assert await store.mappings() == []
    assert await store.divergences(include_resolved=True) == []
    assert await store.recommendations() == []


async def test_appends_get_increasing_gap_free_seqs(store: LogStore) -> None:
    assert await store.append([new_entry(1)]) == [1]
    assert await store.append([new_entry(2), new_entry(3), new_entry(4)]) == [2, 3, 4]
    assert await store.append([]) == []
    assert await store.head() == 4
    assert await store.append([new_entry(5)]) == [5]
    entries = await read_all(store)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    for e in entries:
        assert same_payload(e, new_entry(e.seq))
        assert e.outcome is None
        assert isinstance(e.created_at, float)


async def test_concurrent_appends_get_distinct_seqs_and_read_back_byte_identical(store: LogStore) -> None:
    rng = random.Random(7)
    # Bodies of every byte value, NULs and invalid UTF-8 included, since payloads are kept exactly as they came.
    payloads = [new_entry(n, os.urandom(rng.randrange(0, 3000))) for n in range(200)]
    results = await asyncio.gather(*(store.append([p]) for p in payloads))
    seqs = [r[0] for r in results]
    assert all(len(r) == 1 for r in results)
    assert sorted(seqs) == list(range(1, 201))
    entries = await read_all(store)
    assert_gap_free([e.seq for e in entries])
    by_seq = dict(zip(seqs, payloads, strict=True))
    for e in entries:
        assert same_payload(e, by_seq[e.seq])


async def test_concurrent_multi_entry_appends_keep_each_call_contiguous(store: LogStore) -> None:
    results = await asyncio.gather(*(store.append([new_entry(3 * n + i) for i in range(3)]) for n in range(40)))
    for seqs in results:
        assert seqs == list(range(seqs[0], seqs[0] + 3))
    assert sorted(s for r in results for s in r) == list(range(1, 121))
    assert await store.head() == 120


async def test_the_author_of_an_entry_is_kept_and_empty_when_none_was_given(store: LogStore) -> None:
    authored = NewEntry(op="add", method="POST", path="/p", body=b"{}", author="ingest-job.1")
    await store.append([authored, new_entry(2), NewEntry(op="add", method="POST", path="/p", author="Zoë")])

    assert [e.author for e in await read_all(store)] == ["ingest-job.1", "", "Zoë"]
    assert [e.author for e in await store.read(0, 10, max_bytes=1)] == ["ingest-job.1"]


async def test_read_pages_after_a_seq(store: LogStore) -> None:
    await store.append([new_entry(n) for n in range(1, 26)])
    pages = [await store.read(after, 10) for after in (0, 10, 20, 25)]
    assert [[e.seq for e in page] for page in pages] == [
        list(range(1, 11)),
        list(range(11, 21)),
        list(range(21, 26)),
        [],
    ]
    assert [e.seq for e in await store.read(7, 3)] == [8, 9, 10]


async def test_read_with_max_bytes_stops_before_the_entry_that_would_exceed_it(store: LogStore) -> None:
    sizes = [10, 20, 30, 40, 0, 5]
    payloads = [new_entry(n, bytes([n]) * size) for n, size in enumerate(sizes, 1)]
    await store.append(payloads)
    await store.commit_batch("a", [Applied(2, 201, b"done")], 2, [])

    async def seqs(after: int, limit: int, max_bytes: int) -> list[int]:
        return [e.seq for e in await store.read(after, limit, max_bytes)]

    assert await seqs(0, 100, 30) == [1, 2]  # 10 + 20: exactly the bound
    assert await seqs(0, 100, 29) == [1]
    assert await seqs(0, 100, 10_000) == [1, 2, 3, 4, 5, 6]
    assert await seqs(0, 2, 10_000) == [1, 2]  # the limit still holds
    assert await seqs(3, 100, 40) == [4, 5]  # an empty body never brings the sum over
    assert await seqs(4, 100, 4) == [5]
    assert await seqs(6, 100, 10) == []
    # What a bounded read returns is what an unbounded one does, payloads and outcomes included.
    everything = await read_all(store)
    assert await store.read(0, 100, 60) == everything[:3]
    assert everything[1].outcome == Outcome(201, b"done", "a")
    for e in everything:
        assert same_payload(e, payloads[e.seq - 1])


async def test_read_with_max_bytes_returns_at_least_one_entry(store: LogStore) -> None:
    await store.append([new_entry(1, b"y" * 5000), new_entry(2, b"z")])
    [big] = await store.read(0, 10, 100)
    assert (big.seq, big.body) == (1, b"y" * 5000)
    assert [e.seq for e in await store.read(0, 10, 0)] == [1]
    assert [e.seq for e in await store.read(1, 10, 0)] == [2]
    assert await store.read(2, 10, 0) == []


async def test_an_appliers_read_is_a_prefix_of_the_logs_payloads_and_bounds_included(store: LogStore) -> None:
    sizes = [10, 20, 30, 40, 0, 5]
    payloads = [new_entry(n, bytes([n]) * size) for n, size in enumerate(sizes, 1)]
    await store.append(payloads[:2])
    await store.append(payloads[2:])

    async def seqs(after: int, limit: int, max_bytes: int | None) -> list[int]:
        read = await store.read_to_apply(after, limit, max_bytes)
        for e in read:
            assert same_payload(e, payloads[e.seq - 1]) and e.created_at > 0
        return [e.seq for e in read]

    assert await seqs(0, 100, None) == [1, 2, 3, 4, 5, 6]
    assert await seqs(0, 100, 30) == [1, 2]
    assert await seqs(0, 100, 29) == [1]
    assert await seqs(0, 100, 0) == [1]  # at least one
    assert await seqs(0, 2, 10_000) == [1, 2]
    assert await seqs(3, 100, 40) == [4, 5]
    assert await seqs(6, 100, 10) == []
    assert await store.prune(3) == 3
    assert await seqs(0, 100, None) == [4, 5, 6]  # never an entry the log no longer holds
    await store.reset()
    assert await seqs(0, 100, None) == []
    [seq] = await store.append([new_entry(7)])
    assert [(e.seq, e.path) for e in await store.read_to_apply(seq - 1, 100)] == [(seq, new_entry(7).path)]


async def test_an_appliers_read_never_passes_over_another_stores_entry(backend: Backend) -> None:
    mine, other = await backend.open_store(), await backend.open_store()
    await mine.append([new_entry(1), new_entry(2)])
    await other.append([new_entry(3)])  # on PostgreSQL, another gateway's; on SQLite, another process's
    await mine.append([new_entry(4)])
    read: list[int] = []
    while len(read) < 4:
        got = await mine.read_to_apply(read[-1] if read else 0, 100)
        assert got, f"nothing after {read}"
        read.extend(e.seq for e in got)
    assert read == [1, 2, 3, 4]
    assert (await mine.read_to_apply(2, 100))[0].path == new_entry(3).path


async def test_read_keys_are_the_entries_without_their_payload(store: LogStore) -> None:
    created = NewEntry(
        op="create_collection",
        method="POST",
        path="/api/v2/tenants/t/databases/d/collections",
        body=b'{"name": "docs"}',
        scope="t/d",
        extra={"canonical_id": "canon-9"},
    )
    # Only a creation names the collection it creates: an `extra` of another op is no canonical id.
    renamed = NewEntry(
        op="update_collection",
        method="PUT",
        path="/c",
        collection_id="canon-9",
        scope="t/d",
        extra={"canonical_id": "x"},
    )
    await store.append([new_entry(1), created, renamed, new_entry(4)])
    entries = await read_all(store)
    keys = await store.read_keys(0, 100)
    assert keys == [
        EntryKey(e.seq, e.created_at, e.op, e.collection_id, e.scope, "canon-9" if e.seq == 2 else None)
        for e in entries
    ]
    assert await store.read_keys(1, 2) == keys[1:3]
    assert await store.read_keys(4, 10) == []
    await store.prune(2)
    assert await store.read_keys(0, 10) == keys[2:]


async def test_prune_moves_oldest_seq_and_keeps_head(store: LogStore) -> None:
    assert await store.prune(0) == 0
    await store.append([new_entry(n) for n in range(1, 11)])
    assert (await store.head(), await store.oldest_seq()) == (10, 1)
    assert await store.prune(4) == 4
    assert (await store.head(), await store.oldest_seq()) == (10, 5)
    assert [e.seq for e in await store.read(0, 100)] == list(range(5, 11))
    assert await store.prune(4) == 0
    assert await store.prune(10) == 6
    assert (await store.head(), await store.oldest_seq()) == (10, 11)
    assert await store.read(0, 100) == []
    assert await store.append([new_entry(11)]) == [11]
    assert (await store.head(), await store.oldest_seq()) == (11, 11)


async def test_count_since(store: LogStore) -> None:
    before = time.time() - 1
    await store.append([new_entry(n) for n in range(3)])
    assert await store.count_since(before) == 3
    assert await store.count_since(time.time() + 60) == 0


# --- outcomes and divergences -----------------------------------------------------------------------------------


async def test_first_outcome_wins_and_only_disagreement_diverges(store: LogStore) -> None:
    await store.append([new_entry(1), new_entry(2)])

    assert await store.commit_batch("a", [Applied(1, 201, b'{"ok": 1}')], 1, []) == []
    assert await store.outcome(1) == Outcome(201, b'{"ok": 1}', "a")
    assert await store.outcome(2) is None

    # Another instance agreeing (a different success code still agrees) is not a divergence.
    assert await store.commit_batch("b", [Applied(1, 200, b"{}")], 1, []) == []
    # Another instance rejecting what `a` accepted is one.
    found = await store.commit_batch("c", [Applied(1, 400, b'{"error": "no"}')], 1, [])
    assert len(found) == 1
    d = found[0]
    assert (d.seq, d.instance, d.status, d.body, d.expected_status, d.resolved_at) == (
        1,
        "c",
        400,
        b'{"error": "no"}',
        201,
        None,
    )
    assert isinstance(d.created_at, float)
    assert await store.divergences() == found
    # The first outcome stands whatever came after it.
    assert await store.outcome(1) == Outcome(201, b'{"ok": 1}', "a")
    [e1, e2] = await read_all(store)
    assert e1.outcome == Outcome(201, b'{"ok": 1}', "a")
    assert e2.outcome is None

    # The instance that set the outcome replaying the entry differently is a replay, not a divergence.
    assert await store.commit_batch("a", [Applied(1, 500, b"later")], 1, []) == []
    assert await store.outcome(1) == Outcome(201, b'{"ok": 1}', "a")


async def test_rejection_first_then_acceptance_diverges(store: LogStore) -> None:
    await store.append([new_entry(1)])
    await store.commit_batch("a", [Applied(1, 422, b"bad")], 1, [])
    [d] = await store.commit_batch("b", [Applied(1, 201, b"fine")], 1, [])
    assert (d.instance, d.status, d.expected_status) == ("b", 201, 422)
    assert await store.commit_batch("c", [Applied(1, 409, b"also bad")], 1, []) == []


async def test_commit_batch_of_many_entries(store: LogStore) -> None:
    await store.append([new_entry(n) for n in range(1, 51)])
    applied_a = [Applied(n, 201 if n % 5 else 400, f"a{n}".encode()) for n in range(1, 51)]
    assert await store.commit_batch("a", applied_a, 50, []) == []
    applied_b = [Applied(n, 201, f"b{n}".encode()) for n in range(1, 51)]
    found = await store.commit_batch("b", applied_b, 50, [])
    assert [d.seq for d in found] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert [e.outcome for e in await read_all(store)] == [Outcome(a.status, a.body, "a") for a in applied_a]


async def test_outcome_of_a_pruned_entry_is_ignored(store: LogStore) -> None:
    await store.append([new_entry(1), new_entry(2)])
    await store.prune(1)
    assert await store.commit_batch("a", [Applied(1, 201, b""), Applied(2, 201, b"")], 2, []) == []
    assert await store.outcome(1) is None
    assert await store.outcome(2) == Outcome(201, b"", "a")
    assert (await store.cursors())["a"].seq == 2


async def test_resolve_divergences(store: LogStore) -> None:
    await store.append([new_entry(1), new_entry(2)])
    await store.commit_batch("a", [Applied(1, 201, b""), Applied(2, 201, b"")], 2, [])
    await store.commit_batch("b", [Applied(1, 400, b"x"), Applied(2, 400, b"y")], 2, [])
    await store.commit_batch("c", [Applied(1, 400, b"z")], 1, [])
    assert [(d.seq, d.instance) for d in await store.divergences()] == [(1, "b"), (2, "b"), (1, "c")]
    assert await store.resolve_divergences("b") == 2
    assert await store.resolve_divergences("b") == 0
    assert [(d.seq, d.instance) for d in await store.divergences()] == [(1, "c")]
    everything = await store.divergences(include_resolved=True)
    assert [(d.seq, d.instance, d.resolved_at is not None) for d in everything] == [
        (1, "b", True),
        (2, "b", True),
        (1, "c", False),
    ]


# --- cursors, intents, catalog ----------------------------------------------------------------------------------


async def test_cursors(store: LogStore) -> None:
    await store.commit_batch("a", [], 5, [])
    cursor = (await store.cursors())["a"]
    assert (cursor.instance, cursor.seq, cursor.incarnation) == ("a", 5, "")
    assert isinstance(cursor.updated_at, float)

    await store.set_cursor("a", 7, "incarnation-1")
    await store.set_cursor("b", 3, "incarnation-2")
    cursors = await store.cursors()
    assert {k: (c.seq, c.incarnation) for k, c in cursors.items()} == {
        "a": (7, "incarnation-1"),
        "b": (3, "incarnation-2"),
    }
    # Committing batches moves the cursor and keeps the incarnation that was set.
    await store.commit_batch("a", [], 9, [])
    after = (await store.cursors())["a"]
    assert (after.seq, after.incarnation) == (9, "incarnation-1")
    assert after.updated_at >= cursors["a"].updated_at
    # set_cursor may move a cursor back (a repair replays from there).
    await store.set_cursor("a", 2, "incarnation-3")
    assert (await store.cursors())["a"].seq == 2


async def test_intents_recorded_and_cleared_by_commit_batch(store: LogStore) -> None:
    await store.append([new_entry(n) for n in range(1, 6)])
    await store.record_intent("a", 3)
    await store.record_intent("a", 3)
    await store.record_intent("a", 5)
    await store.record_intent("b", 3)
    assert await store.has_intent("a", 3)
    assert not await store.has_intent("a", 4)
    await store.commit_batch("a", [Applied(3, 201, b"")], 3, [])
    assert not await store.has_intent("a", 3)
    assert await store.has_intent("a", 5)
    assert await store.has_intent("b", 3)
    await store.commit_batch("a", [], 5, [])
    assert not await store.has_intent("a", 5)


async def test_mappings_upsert_and_forget_instance(store: LogStore) -> None:
    await store.commit_batch("a", [], 0, [IdMapping("a", "canon-1", "a-1"), IdMapping("a", "canon-2", "a-2")])
    await store.commit_batch("b", [], 0, [IdMapping("b", "canon-1", "b-1")])
    assert sorted(await store.mappings(), key=lambda m: (m.instance, m.canonical_id)) == [
        IdMapping("a", "canon-1", "a-1"),
        IdMapping("a", "canon-2", "a-2"),
        IdMapping("b", "canon-1", "b-1"),
    ]
    # A collection re-created on an instance gets a new instance id for the same canonical id.
    await store.commit_batch("a", [], 0, [IdMapping("a", "canon-1", "a-1-again")])
    assert sorted(await store.mappings("a"), key=lambda m: m.canonical_id) == [
        IdMapping("a", "canon-1", "a-1-again"),
        IdMapping("a", "canon-2", "a-2"),
    ]
    await store.record_intent("a", 1)
    await store.forget_instance("a")
    assert await store.mappings("a") == []
    assert not await store.has_intent("a", 1)
    assert await store.mappings() == [IdMapping("b", "canon-1", "b-1")]
    assert "a" in await store.cursors()


async def test_mappings_recorded_outside_a_batch_leave_the_cursor_alone(store: LogStore) -> None:
    await store.set_cursor("a", 7, "inc")
    await store.record_mappings([IdMapping("a", "canon-1", "a-1"), IdMapping("a", "canon-2", "a-2")])
    await store.record_mappings([IdMapping("a", "canon-1", "a-1b")])
    assert sorted(await store.mappings("a"), key=lambda m: m.canonical_id) == [
        IdMapping("a", "canon-1", "a-1b"),
        IdMapping("a", "canon-2", "a-2"),
    ]
    assert (await store.cursors())["a"].seq == 7


async def test_scopes_named_by_the_log_survive_pruning(store: LogStore) -> None:
    await store.append(
        [
            NewEntry(op="create_tenant", method="POST", path="/t", scope="acme"),
            NewEntry(op="create_database", method="POST", path="/d", scope="acme/main"),
            NewEntry(op="add", method="POST", path="/a", scope="default_tenant/default_database"),
            NewEntry(op="heartbeat", method="GET", path="/h", scope=""),
        ]
    )
    expected = ["acme", "acme/main", "default_tenant/default_database"]
    assert await store.scopes() == expected
    await store.prune(4)
    assert await store.scopes() == expected


async def test_catalog_version_is_raised_by_every_change_to_the_mappings(store: LogStore) -> None:
    async def version_after(change: Awaitable[object]) -> int:
        await change
        return await store.catalog_version()

    versions = [await store.catalog_version()]
    versions.append(await version_after(store.commit_batch("a", [], 0, [IdMapping("a", "canon-1", "a-1")])))
    versions.append(await version_after(store.record_mappings([IdMapping("b", "canon-1", "b-1")])))
    versions.append(await version_after(store.forget_instance("a")))
    versions.append(await version_after(store.reset()))
    assert versions == sorted(set(versions)), f"not raised by each change: {versions}"


async def test_catalog_version_stays_while_the_mappings_do(store: LogStore) -> None:
    await store.record_mappings([IdMapping("a", "canon-1", "a-1")])
    before = await store.catalog_version()
    await store.append([new_entry(1), new_entry(2)])
    await store.commit_batch("a", [Applied(1, 201, b"")], 1, [])
    await store.commit_batch("b", [Applied(1, 400, b"")], 1, [])
    await store.record_mappings([])
    await store.set_cursor("a", 2, "incarnation")
    await store.record_intent("a", 2)
    await store.prune(1)
    await store.acquire_lease("a", "gateway", 30)
    await store.add_recommendation("cpu", "busy", {})
    assert await store.catalog_version() == before


async def test_catalog_version_is_shared_by_every_store_on_one_database(backend: Backend) -> None:
    mine, other = await backend.open_store(), await backend.open_store()
    before = await mine.catalog_version()
    await other.record_mappings([IdMapping("a", "canon-1", "a-1")])
    raised = await mine.catalog_version()
    assert raised > before
    await backend.close_store(mine)
    assert await (await backend.open_store()).catalog_version() == raised


# --- leases, recommendations -----------------------------------------------------------------------------------


async def test_lease_is_exclusive_until_released(store: LogStore) -> None:
    assert await store.acquire_lease("inst-1", "gateway-1", 30)
    assert not await store.acquire_lease("inst-1", "gateway-2", 30)
    assert await store.acquire_lease("inst-1", "gateway-1", 30)  # renewal
    assert await store.acquire_lease("inst-2", "gateway-2", 30)  # leases are per instance
    await store.release_lease("inst-1", "gateway-2")  # not the owner: no effect
    assert not await store.acquire_lease("inst-1", "gateway-2", 30)
    await store.release_lease("inst-1", "gateway-1")
    assert await store.acquire_lease("inst-1", "gateway-2", 30)
    assert not await store.acquire_lease("inst-1", "gateway-1", 30)


async def test_lease_is_taken_over_after_expiry(store: LogStore) -> None:
    assert await store.acquire_lease("inst-1", "gateway-1", 0.3)
    assert not await store.acquire_lease("inst-1", "gateway-2", 30)
    await asyncio.sleep(0.5)
    assert await store.acquire_lease("inst-1", "gateway-2", 30)
    assert not await store.acquire_lease("inst-1", "gateway-1", 30)


async def test_concurrent_lease_attempts_have_one_winner(backend: Backend) -> None:
    stores = [await backend.open_store() for _ in range(3)]
    won = await asyncio.gather(
        *(s.acquire_lease("inst-1", f"gateway-{n}-{k}", 30) for k in range(5) for n, s in enumerate(stores))
    )
    assert sum(won) == 1


async def test_recommendations_round_trip_newest_first(store: LogStore) -> None:
    details = {"cpu": 0.93, "window_s": 300, "hosts": ["a", "b"], "nested": {"x": None}}
    added = [await store.add_recommendation("cpu", f"reason {n}", {**details, "n": n}) for n in range(3)]
    assert [r.id for r in added] == sorted(r.id for r in added)
    assert len({r.id for r in added}) == 3
    listed = await store.recommendations()
    assert listed == list(reversed(added))
    assert listed[0].details == {**details, "n": 2}
    assert isinstance(listed[0].created_at, float)
    assert await store.recommendations(limit=2) == [added[2], added[1]]


# --- what the gateways of one store share of alerts and statistics ----------------------------------------------

HOUR = 3600.0


async def test_alert_claims_let_one_message_through_per_change(store: LogStore) -> None:
    claim = store.claim_alert
    assert await claim("instance_down:b", "firing", "gw-1", window=HOUR, stale=HOUR)
    assert not await claim("instance_down:b", "firing", "gw-2", window=HOUR, stale=HOUR)  # sent already
    assert not await claim("instance_down:b", "reminder", "gw-2", window=HOUR, stale=HOUR)  # too soon
    assert await claim("instance_down:b", "reminder", "gw-2", window=0.0, stale=HOUR)
    assert not await claim("instance_down:other", "resolved", "gw-1", window=HOUR, stale=HOUR)  # never fired
    assert await claim("instance_down:b", "resolved", "gw-2", window=HOUR, stale=HOUR)
    assert not await claim("instance_down:b", "resolved", "gw-1", window=HOUR, stale=HOUR)
    assert not await claim("instance_down:b", "reminder", "gw-1", window=0.0, stale=HOUR)  # not firing
    assert await claim("instance_down:b", "firing", "gw-1", window=HOUR, stale=HOUR)  # the next time it goes down
    with pytest.raises(ValueError, match="no alert claim"):
        await claim("instance_down:b", "shouting", "gw-1", window=HOUR, stale=HOUR)


async def test_events_are_claimed_once_per_window(store: LogStore) -> None:
    assert await store.claim_alert("recommendation:cpu", "event", "gw-1", window=HOUR, stale=HOUR)
    assert not await store.claim_alert("recommendation:cpu", "event", "gw-2", window=HOUR, stale=HOUR)
    assert await store.claim_alert("recommendation:memory", "event", "gw-2", window=HOUR, stale=HOUR)
    assert await store.claim_alert("recommendation:cpu", "event", "gw-2", window=0.0, stale=HOUR)


async def test_a_firing_alert_no_gateway_still_sees_goes_stale(backend: Backend) -> None:
    first, second = await backend.open_store(), await backend.open_store()
    assert await first.claim_alert("lag:b", "firing", "gw-1", window=HOUR, stale=0.4)
    for _ in range(3):  # kept fresh by a gateway that still sees it
        await asyncio.sleep(0.2)
        await second.touch_alerts(["lag:b", "not-claimed"])
        assert not await second.claim_alert("lag:b", "firing", "gw-2", window=HOUR, stale=0.4)
    await asyncio.sleep(0.6)  # every gateway that saw it is gone: the next one to see it firing says so
    assert await second.claim_alert("lag:b", "firing", "gw-2", window=HOUR, stale=0.4)
    await second.touch_alerts([])


async def test_concurrent_alert_claims_have_one_winner(backend: Backend) -> None:
    stores = [await backend.open_store() for _ in range(3)]

    async def everyone(status: str) -> int:
        won = await asyncio.gather(
            *(
                s.claim_alert("divergence:b", status, f"gw-{n}", window=HOUR, stale=HOUR)
                for _ in range(5)
                for n, s in enumerate(stores)
            )
        )
        return sum(won)

    assert await everyone("firing") == 1
    assert await everyone("resolved") == 1
    assert await everyone("firing") == 1


async def test_gateway_stats_are_shared_and_silent_gateways_forgotten(backend: Backend) -> None:
    first, second = await backend.open_store(), await backend.open_store()
    await first.publish_gateway_stats("gw-1", {"appended": {"entries": 3}}, forget_after=HOUR)
    await second.publish_gateway_stats("gw-2", {"appended": {"entries": 5}, "nested": [1, None]}, forget_after=HOUR)
    for store in (first, second):
        seen = await store.gateway_stats(max_age=HOUR)
        assert [(g.gateway, g.stats) for g in seen] == [
            ("gw-1", {"appended": {"entries": 3}}),
            ("gw-2", {"appended": {"entries": 5}, "nested": [1, None]}),
        ]
        assert all(0 <= g.age_seconds < 60 and isinstance(g.updated_at, float) for g in seen)
    await first.publish_gateway_stats("gw-1", {"appended": {"entries": 4}}, forget_after=HOUR)  # replaces its own
    assert next(g.stats for g in await second.gateway_stats(max_age=HOUR)) == {"appended": {"entries": 4}}
    await asyncio.sleep(0.5)
    await first.publish_gateway_stats("gw-1", {"appended": {"entries": 6}}, forget_after=HOUR)
    assert [g.gateway for g in await second.gateway_stats(max_age=0.3)] == ["gw-1"]  # gw-2 is silent
    await first.publish_gateway_stats("gw-1", {"appended": {"entries": 7}}, forget_after=0.3)
    assert [g.gateway for g in await second.gateway_stats(max_age=HOUR)] == ["gw-1"]  # gw-2 forgotten


# --- reset ------------------------------------------------------------------------------------------------------


async def test_reset_forgets_log_catalog_divergences_and_keeps_seq_monotonic(store: LogStore) -> None:
    await store.append([new_entry(n) for n in range(1, 6)])
    await store.commit_batch("a", [Applied(1, 201, b"")], 1, [IdMapping("a", "c", "a-c")])
    await store.commit_batch("b", [Applied(1, 400, b"")], 1, [])
    await store.set_cursor("b", 1, "incarnation-b")
    await store.record_intent("a", 4)

    await store.reset()

    assert await store.read(0, 100) == []
    assert await store.head() == 5
    assert await store.oldest_seq() == 6
    assert await store.mappings() == []
    assert await store.divergences(include_resolved=True) == []
    assert not await store.has_intent("a", 4)
    cursors = await store.cursors()
    assert {k: (c.seq, c.incarnation) for k, c in cursors.items()} == {"a": (5, ""), "b": (5, "incarnation-b")}
    assert await store.append([new_entry(6)]) == [6]
    assert [e.seq for e in await read_all(store)] == [6]


async def test_bootstrap_pages_are_kept_per_instance_in_order_until_dropped(store: LogStore) -> None:
    await store.save_bootstrap_pages("a", [(2, b"two"), (0, b"plan"), (1, b"one"), (-1, b"\x00at 0")])
    await store.save_bootstrap_pages("b", [(1, b"other")])
    await store.save_bootstrap_pages("a", [(-1, b"at 2")])  # the position is overwritten in place

    assert await store.bootstrap_pages("a", -1, 10) == [(-1, b"at 2"), (0, b"plan"), (1, b"one"), (2, b"two")]
    assert await store.bootstrap_pages("a", 1, 1) == [(1, b"one")]
    assert await store.bootstrap_pages("a", 3, 10) == []
    await store.drop_bootstrap("a")
    assert await store.bootstrap_pages("a", -1, 10) == []
    assert await store.bootstrap_pages("b", 0, 10) == [(1, b"other")]
    await store.reset()
    assert await store.bootstrap_pages("b", 0, 10) == []


# --- wake-ups ---------------------------------------------------------------------------------------------------


async def test_wait_for_append_wakes_on_an_append(store: LogStore) -> None:
    waiter = asyncio.create_task(store.wait_for_append(30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await store.append([new_entry(1)])
    await asyncio.wait_for(waiter, WAKE_WITHIN_S)


async def test_wait_for_append_returns_after_timeout(store: LogStore) -> None:
    started = time.monotonic()
    await store.wait_for_append(0.2)
    assert 0.15 <= time.monotonic() - started < WAKE_WITHIN_S


# --- durability and errors --------------------------------------------------------------------------------------


async def test_appended_entries_survive_closing_and_reopening(backend: Backend) -> None:
    first = await backend.open_store()
    payloads = [new_entry(n, os.urandom(100)) for n in range(1, 21)]
    await asyncio.gather(*(first.append([p]) for p in payloads[:10]))
    await first.append(payloads[10:])
    await first.commit_batch("a", [Applied(1, 201, b"ok")], 1, [IdMapping("a", "c", "a-c")])
    before = await read_all(first)
    await backend.close_store(first)

    again = await backend.open_store()
    after = await read_all(again)
    assert after == before
    assert await again.head() == 20
    assert (await again.cursors())["a"].seq == 1
    assert await again.mappings() == [IdMapping("a", "c", "a-c")]
    assert await again.append([new_entry(21)]) == [21]


async def test_opening_twice_keeps_the_data(backend: Backend) -> None:
    first = await backend.open_store()
    await first.append([new_entry(1)])
    second = await backend.open_store()
    assert [e.seq for e in await read_all(second)] == [1]


async def test_driver_errors_are_store_errors(backend: Backend) -> None:
    store = await backend.open_store()
    await store.append([new_entry(1)])
    backend.drop_log_table()
    with pytest.raises(StoreError):
        await store.read(0, 10)
    with pytest.raises(StoreError):
        await store.append([new_entry(2)])


# --- several gateways on one PostgreSQL ---------------------------------------------------------------------------


async def test_pg_wait_for_append_wakes_on_an_append_by_another_gateway(pg: Backend) -> None:
    mine, other = await pg.open_store(), await pg.open_store()
    waiter = asyncio.create_task(mine.wait_for_append(30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await other.append([new_entry(1)])
    await asyncio.wait_for(waiter, WAKE_WITHIN_S)
    assert await mine.head() == 1


async def test_pg_head_follows_appends_by_another_gateway(pg: Backend) -> None:
    mine, other = await pg.open_store(), await pg.open_store()
    await other.append([new_entry(1), new_entry(2)])
    assert await mine.head() == 2
    assert await mine.append([new_entry(3)]) == [3]
    assert await other.head() == 3


async def _listener_pids(dsn: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s AND query LIKE 'LISTEN chroma_ha_%%'",
            (LISTENER_APPLICATION_NAME,),
        )
        return [row[0] for row in await cur.fetchall()]


async def test_pg_listener_reconnects_after_its_connection_is_killed(pg: Backend) -> None:
    mine = await pg.open_store()
    [old] = await _listener_pids(pg.location)
    async with await psycopg.AsyncConnection.connect(pg.location, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (old,))
    deadline = time.monotonic() + 10
    while (pids := await _listener_pids(pg.location)) in ([], [old]):
        assert time.monotonic() < deadline, "the LISTEN connection did not come back"
        await asyncio.sleep(0.05)
    assert old not in pids

    other = await pg.open_store()
    await asyncio.sleep(0.05)  # the wake-up that follows a reconnect has happened by now
    waiter = asyncio.create_task(mine.wait_for_append(30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await other.append([new_entry(1)])
    await asyncio.wait_for(waiter, WAKE_WITHIN_S)


async def test_heard_head_follows_the_stores_own_appends(store: LogStore) -> None:
    assert await store.heard_head() == 0
    await store.append([new_entry(1), new_entry(2)])
    assert await store.heard_head() == await store.head() == 2


async def until_heard(store: LogStore, head: int) -> None:
    deadline = time.monotonic() + WAKE_WITHIN_S + 1
    while (heard := await store.heard_head()) != head:
        assert heard < head, "the heard head passed the real one"
        assert time.monotonic() < deadline, f"heard head {heard}, the log's is {head}"
        await asyncio.sleep(0.02)


async def test_pg_heard_head_learns_another_stores_appends(pg: Backend) -> None:
    mine, other = await pg.open_store(), await pg.open_store()
    assert await mine.heard_head() == 0
    await other.append([new_entry(n) for n in range(3)])
    await until_heard(mine, 3)


async def test_pg_heard_head_asks_after_its_listener_reconnects(pg: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """An append committed while the LISTEN connection is down notifies nobody: once it is back, the heard head is
    asked for again, not trusted. The age bound, which would also catch it, is set out of the way, and the
    reconnection waits a second so that the append falls in between."""
    monkeypatch.setattr("chroma_ha.store.postgres.HEARD_HEAD_MAX_AGE_S", 3600.0)
    monkeypatch.setattr("chroma_ha.store.postgres.LISTEN_RETRY_MIN_S", 1.0)
    mine = await pg.open_store()
    assert await mine.heard_head() == 0
    [old] = await _listener_pids(pg.location)
    other = await pg.open_store()
    async with await psycopg.AsyncConnection.connect(pg.location, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s, 5000)", (old,))  # returns once it has exited
    await other.append([new_entry(1)])
    assert old not in await _listener_pids(pg.location)
    await until_heard(mine, 1)


async def test_a_committed_cursor_wakes_who_waits_for_cursors(store: LogStore) -> None:
    waiter = asyncio.create_task(store.wait_for_cursors(30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await store.commit_batch("http://a", [], 0, [])
    await asyncio.wait_for(waiter, WAKE_WITHIN_S)


@pytest.mark.parametrize("move", ["commit_batch", "set_cursor"])
async def test_pg_a_cursor_moved_through_another_store_wakes_its_followers(pg: Backend, move: str) -> None:
    follower, applier = await pg.open_store(), await pg.open_store()
    waiter = asyncio.create_task(follower.wait_for_cursors(30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    if move == "commit_batch":
        await applier.commit_batch("http://a", [], 0, [])
    else:
        await applier.set_cursor("http://a", 0, "incarnation")
    await asyncio.wait_for(waiter, WAKE_WITHIN_S)
    assert (await follower.cursors())["http://a"].seq == 0


async def test_pg_pool_recovers_when_its_connections_are_killed(pg: Backend) -> None:
    store = await pg.open_store()
    await store.append([new_entry(1)])
    # ended, not only told to end: the pool looks at what the server said on a connection before handing it out
    async with await psycopg.AsyncConnection.connect(pg.location, autocommit=True) as admin:
        await admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    assert await store.head() == 1
    assert await store.append([new_entry(2)]) == [2]


async def test_pg_store_works_with_descriptors_past_fd_setsize(pg: Backend) -> None:
    """A gateway serving a thousand clients holds its store's sockets past descriptor 1024, where select() fails."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        store = await pg.open_store()
        await store.append([new_entry(1)])
        assert await store.head() == 1
        assert await store.append([new_entry(2)]) == [2]
    finally:
        await pg.close_all()
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_pg_two_gateways_appending_concurrently_never_expose_a_gap(pg: Backend) -> None:
    gateways = [await pg.open_store(), await pg.open_store()]
    appended: dict[int, NewEntry] = {}
    done = asyncio.Event()

    async def writer(me: LogStore, other: LogStore, task: int) -> None:
        for k in range(15):
            batch = [new_entry(1000 * task + 10 * k + i) for i in range(1 + k % 3)]
            seqs = await me.append(batch)
            appended.update(zip(seqs, batch, strict=True))
            # Whoever reads after an append is acknowledged sees it, and everything before it, with no gap.
            visible = [e.seq for e in await read_all(other)]
            assert_gap_free(visible)
            assert visible[-1] >= seqs[-1]

    async def applier(store: LogStore) -> list[int]:
        """Reads like an applier: after its cursor, in pages; a gap would make it skip an entry forever."""
        seen: list[int] = []
        cursor = 0
        while True:
            finished = done.is_set()
            page = await store.read(cursor, 7)
            if page:
                assert_gap_free([e.seq for e in page], cursor + 1)
                seen += [e.seq for e in page]
                cursor = page[-1].seq
            elif finished:
                return seen
            else:
                await store.wait_for_append(0.05)

    async with asyncio.TaskGroup() as everyone:
        appliers = [everyone.create_task(applier(g)) for g in gateways]
        async with asyncio.TaskGroup() as writers:
            for t in range(20):
                writers.create_task(writer(gateways[t % 2], gateways[1 - t % 2], t))
        done.set()
    seen_by = [a.result() for a in appliers]

    total = sum(1 + k % 3 for k in range(15)) * 20
    assert sorted(appended) == list(range(1, total + 1))
    for seen in seen_by:
        assert seen == list(range(1, total + 1))
    for e in await read_all(gateways[0]):
        assert same_payload(e, appended[e.seq])


async def test_pg_gateways_starting_together_create_the_schema_once(pg: Backend) -> None:
    stores = await asyncio.gather(*(pg.open_store() for _ in range(6)))
    results = await asyncio.gather(*(s.append([new_entry(n)]) for n, s in enumerate(stores)))
    assert sorted(r[0] for r in results) == list(range(1, 7))


async def test_pg_commit_batches_of_several_gateways_race_without_losing_the_first_outcome(pg: Backend) -> None:
    stores = [await pg.open_store() for _ in range(4)]
    await stores[0].append([new_entry(n) for n in range(1, 101)])
    statuses = {"a": 201, "b": 201, "c": 400, "d": 400}
    instances = list(statuses)

    async def apply(store: LogStore, instance: str) -> list[int]:
        found = await store.commit_batch(
            instance, [Applied(n, statuses[instance], instance.encode()) for n in range(1, 101)], 100, []
        )
        return [d.seq for d in found]

    await asyncio.gather(*(apply(s, i) for s, i in zip(stores, instances, strict=True)))
    divergences = await stores[0].divergences()
    for entry in await read_all(stores[0]):
        assert entry.outcome is not None
        first_ok = entry.outcome.ok
        # Every instance whose answer disagrees with the first one, and only those, diverged on this entry.
        disagreeing = {i for i in instances if (200 <= statuses[i] < 300) != first_ok}
        assert {d.instance for d in divergences if d.seq == entry.seq} == disagreeing


async def test_pg_accepts_uri_dsns_with_a_socket_folder_and_the_short_scheme(pg: Backend) -> None:
    dbname = psycopg.conninfo.conninfo_to_dict(pg.location)["dbname"]
    for scheme in ("postgresql", "postgres"):
        store = PostgresStore(database_uri(pg.location, str(dbname), scheme))
        await store.open()
        try:
            await store.append([new_entry(1)])
        finally:
            await store.close()
    first = await pg.open_store()
    assert await first.head() == 2


async def test_pg_unreachable_database_is_a_store_error(pg: Backend) -> None:
    missing = psycopg.conninfo.make_conninfo(pg.location, dbname="no_such_database")
    store = PostgresStore(missing, connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(StoreError):
        await store.open()
    assert time.monotonic() - started < 5
    await store.close()
