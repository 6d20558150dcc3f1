"""The in-memory store: the whole `LogStore` contract with no I/O, for fast unit tests.

The tables are plain Python structures in a `MemoryDatabase`. Several stores on one database behave as several
gateways on one PostgreSQL: one log, one catalog, exclusive leases, and an append by any of them wakes every
waiter. Each operation runs to its end without awaiting, so it is atomic like a transaction, and `seq` is
gap-free by construction; it yields to the event loop once first, as a store that does I/O would.

What the durable stores give back, this one gives back too: headers, `extra` and recommendation details are kept
as JSON and decoded on every read, so a caller that mutates what it read changes nothing stored, and a value JSON
cannot hold fails that caller's call, as it would with SQLite or PostgreSQL.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from ..errors import StoreError
from ..pulse import Pulse
from .base import (
    ACTIVE,
    AlertClaim,
    Applied,
    CommitStats,
    Cursor,
    Divergence,
    Entry,
    EntryKey,
    GatewayStats,
    IdMapping,
    Member,
    NewEntry,
    Outcome,
    Recommendation,
    Roster,
    claimed,
    is_divergent,
)


@dataclass
class _Row:
    """One entry as it is stored."""

    seq: int
    created_at: float
    op: str
    method: str
    path: str
    query: str
    headers: bytes
    body: bytes
    collection_id: str | None
    scope: str
    extra: bytes
    author: str
    outcome: Outcome | None = None

    def entry(self) -> Entry:
        return Entry(
            seq=self.seq,
            created_at=self.created_at,
            op=self.op,
            method=self.method,
            path=self.path,
            query=self.query,
            headers=orjson.loads(self.headers),
            body=self.body,
            collection_id=self.collection_id,
            scope=self.scope,
            extra=orjson.loads(self.extra),
            outcome=self.outcome,
            author=self.author,
        )

    def key(self) -> EntryKey:
        canonical_id = orjson.loads(self.extra).get("canonical_id") if self.op == "create_collection" else None
        return EntryKey(self.seq, self.created_at, self.op, self.collection_id, self.scope, canonical_id)


def _row(seq: int, now: float, e: NewEntry) -> _Row:
    return _Row(
        seq,
        now,
        e.op,
        e.method,
        e.path,
        e.query,
        orjson.dumps(e.headers),
        bytes(e.body),
        e.collection_id,
        e.scope,
        orjson.dumps(e.extra),
        e.author,
    )


def _within(rows: list[_Row], max_bytes: int) -> list[_Row]:
    """The longest prefix whose bodies fit in `max_bytes`, and never less than one row."""
    total = 0
    for n, row in enumerate(rows):
        total += len(row.body)
        if n and total > max_bytes:
            return rows[:n]
    return rows


@dataclass
class MemoryDatabase:
    """The tables every `MemoryStore` on it shares, as gateways share one PostgreSQL database."""

    entries: list[_Row] = field(default_factory=list)  # in seq order: appends add at the end, prunes cut the start
    head: int = 0
    cursors: dict[str, Cursor] = field(default_factory=dict)
    intents: set[tuple[str, int]] = field(default_factory=set)
    mappings: dict[tuple[str, str], str] = field(default_factory=dict)
    catalog_version: int = 0
    known_scopes: set[str] = field(default_factory=set)
    divergences: list[Divergence] = field(default_factory=list)
    leases: dict[str, tuple[str, float]] = field(default_factory=dict)
    recommendations: list[tuple[int, float, str, str, bytes]] = field(default_factory=list)
    bootstrap_pages: dict[str, dict[int, bytes]] = field(default_factory=dict)
    alert_claims: dict[str, AlertClaim] = field(default_factory=dict)
    gateway_stats: dict[str, tuple[float, bytes]] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)  # in the order they were added
    members_version: int = 0
    # ids are never reused, as with an identity column: not after a reset either
    divergence_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    recommendation_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    appended: Pulse = field(default_factory=Pulse)
    cursors_moved: Pulse = field(default_factory=Pulse)
    failure: str | None = None

    def fail(self, reason: str) -> None:
        """From now on every call of every store on this database (but `wait_for_append`) raises a `StoreError`
        naming `reason`, as a store that is down or damaged would: for tests of what callers do then."""
        self.failure = reason

    def recover(self) -> None:
        """The store is back: calls succeed again, on the tables as they were."""
        self.failure = None

    def position(self, after: int) -> int:
        """The index of the first entry with a seq above `after`."""
        return bisect.bisect_right(self.entries, after, key=lambda r: r.seq)

    def find(self, seq: int) -> _Row | None:
        i = self.position(seq - 1)
        return self.entries[i] if i < len(self.entries) and self.entries[i].seq == seq else None

    def raise_catalog_version(self) -> None:
        self.catalog_version += 1


class MemoryStore:
    """A `LogStore` in memory. `MemoryStore()` has a database of its own; stores given one database share it."""

    def __init__(self, database: MemoryDatabase | None = None) -> None:
        self.database = database if database is not None else MemoryDatabase()
        self.commit_stats = CommitStats()

    async def _db(self) -> MemoryDatabase:
        await asyncio.sleep(0)
        if self.database.failure is not None:
            raise StoreError(f"memory: {self.database.failure}")
        return self.database

    async def open(self) -> None:
        """Nothing to open: a memory store works from its construction."""

    async def close(self) -> None:
        """Nothing to close: the database outlives its stores, as a file or a server would."""

    def sole_appender(self) -> int | None:
        """Never promised: other stores on the same database may append at any time (readers ask the head)."""
        return None

    # --- the log --------------------------------------------------------------------------------------------

    async def append(self, entries: Sequence[NewEntry]) -> list[int]:
        db = await self._db()
        now = time.time()
        rows = [_row(db.head + 1 + n, now, e) for n, e in enumerate(entries)]  # serialised first: all or nothing
        db.entries.extend(rows)
        db.head += len(rows)
        if rows:
            self.commit_stats.committed(len(rows))
            db.appended.fire()
        return [r.seq for r in rows]

    async def head(self) -> int:
        return (await self._db()).head

    async def heard_head(self) -> int:
        return (await self._db()).head

    async def oldest_seq(self) -> int:
        db = await self._db()
        return db.entries[0].seq if db.entries else db.head + 1

    async def read(self, after: int, limit: int, max_bytes: int | None = None) -> list[Entry]:
        db = await self._db()
        start = db.position(after)
        rows = db.entries[start : start + max(limit, 0)]
        if max_bytes is not None:
            rows = _within(rows, max_bytes)
        return [r.entry() for r in rows]

    async def read_keys(self, after: int, limit: int) -> list[EntryKey]:
        db = await self._db()
        start = db.position(after)
        return [r.key() for r in db.entries[start : start + max(limit, 0)]]

    async def outcome(self, seq: int) -> Outcome | None:
        row = (await self._db()).find(seq)
        return row.outcome if row else None

    async def wait_for_append(self, timeout: float, *, nudge: Pulse | None = None) -> None:
        await self.database.appended.wait(timeout, also=nudge)

    async def read_to_apply(self, after: int, limit: int, max_bytes: int | None = None) -> list[Entry]:
        return await self.read(after, limit, max_bytes)

    async def prune(self, upto_seq: int) -> int:
        db = await self._db()
        cut = db.position(upto_seq)
        db.known_scopes.update(r.scope for r in db.entries[:cut] if r.scope)
        del db.entries[:cut]
        db.head = max(db.head, upto_seq)  # a prune past the head moves it: the next append gets upto_seq + 1
        return cut

    async def count_since(self, since: float) -> int:
        return sum(1 for r in (await self._db()).entries if r.created_at >= since)

    # --- cursors --------------------------------------------------------------------------------------------

    async def cursors(self) -> dict[str, Cursor]:
        return dict(sorted((await self._db()).cursors.items()))

    async def commit_batch(
        self, instance: str, applied: Sequence[Applied], cursor: int, mappings: Sequence[IdMapping]
    ) -> list[Divergence]:
        db = await self._db()
        now = time.time()
        found = [d for a in applied if (d := self._record_outcome(db, instance, a, now)) is not None]
        db.divergences.extend(found)
        if mappings:
            self._upsert_mappings(db, mappings)
        incarnation = db.cursors[instance].incarnation if instance in db.cursors else ""
        db.cursors[instance] = Cursor(instance, cursor, incarnation, now)
        db.intents = {(i, s) for i, s in db.intents if i != instance or s > cursor}
        db.cursors_moved.fire()
        return found

    @staticmethod
    def _record_outcome(db: MemoryDatabase, instance: str, a: Applied, now: float) -> Divergence | None:
        """The first outcome of an entry stands; a later one that disagrees from another instance diverges."""
        row = db.find(a.seq)
        if row is None:  # pruned meanwhile: nobody waits for its outcome any more
            return None
        if row.outcome is None:
            row.outcome = Outcome(a.status, a.body, instance)
            return None
        first = row.outcome
        if first.instance == instance or not is_divergent(first, a):
            return None
        return Divergence(next(db.divergence_ids), a.seq, instance, a.status, a.body, first.status, now, None)

    async def set_cursor(self, instance: str, seq: int, incarnation: str) -> None:
        db = await self._db()
        db.cursors[instance] = Cursor(instance, seq, incarnation, time.time())
        db.cursors_moved.fire()

    async def wait_for_cursors(self, timeout: float) -> None:
        await self.database.cursors_moved.wait(timeout)

    async def record_intent(self, instance: str, seq: int) -> None:
        (await self._db()).intents.add((instance, seq))

    async def has_intent(self, instance: str, seq: int) -> bool:
        return (instance, seq) in (await self._db()).intents

    # --- catalog --------------------------------------------------------------------------------------------

    async def mappings(self, instance: str | None = None) -> list[IdMapping]:
        db = await self._db()
        found = [IdMapping(i, c, own) for (i, c), own in sorted(db.mappings.items())]
        return [m for m in found if m.instance == instance] if instance else found

    async def record_mappings(self, mappings: Sequence[IdMapping]) -> None:
        """Mappings made outside an applier's batch (bootstrap, repair)."""
        db = await self._db()
        if mappings:
            self._upsert_mappings(db, mappings)

    @staticmethod
    def _upsert_mappings(db: MemoryDatabase, mappings: Sequence[IdMapping]) -> None:
        db.raise_catalog_version()
        for m in mappings:
            db.mappings[(m.instance, m.canonical_id)] = m.instance_id

    async def forget_instance(self, instance: str) -> None:
        db = await self._db()
        db.raise_catalog_version()
        db.mappings = {key: own for key, own in db.mappings.items() if key[0] != instance}
        db.intents = {(i, s) for i, s in db.intents if i != instance}

    async def scopes(self) -> list[str]:
        """Every tenant (`t`) and database (`t/d`) the log has named, pruned entries included."""
        db = await self._db()
        return sorted(db.known_scopes | {r.scope for r in db.entries if r.scope})

    async def catalog_version(self) -> int:
        return (await self._db()).catalog_version

    # --- bootstrap plans ------------------------------------------------------------------------------------

    async def save_bootstrap_pages(self, instance: str, pages: Sequence[tuple[int, bytes]]) -> None:
        (await self._db()).bootstrap_pages.setdefault(instance, {}).update(pages)

    async def bootstrap_pages(self, instance: str, first: int, limit: int) -> list[tuple[int, bytes]]:
        held = (await self._db()).bootstrap_pages.get(instance, {})
        return [(page, held[page]) for page in sorted(p for p in held if p >= first)[:limit]]

    async def drop_bootstrap(self, instance: str) -> None:
        (await self._db()).bootstrap_pages.pop(instance, None)

    # --- divergences, leases, recommendations ---------------------------------------------------------------

    async def divergences(self, include_resolved: bool = False) -> list[Divergence]:
        found = (await self._db()).divergences
        return list(found) if include_resolved else [d for d in found if d.resolved_at is None]

    async def members(self) -> Roster:
        db = await self._db()
        return Roster(db.members_version, tuple(db.members.values()))

    async def members_version(self) -> int:
        return (await self._db()).members_version

    async def seed_members(self, urls: Sequence[str]) -> bool:
        db = await self._db()
        if db.members_version != 0:
            return False
        now = time.time()
        db.members = {url: Member(url, ACTIVE, now) for url in urls}
        db.members_version += 1
        return True

    async def add_member(self, url: str, state: str) -> bool:
        db = await self._db()
        if url in db.members:
            return False
        db.members[url] = Member(url, state, time.time())
        db.members_version += 1
        return True

    async def set_member_state(self, url: str, state: str, expected: str) -> bool:
        db = await self._db()
        member = db.members.get(url)
        if member is None or member.state != expected:
            return False
        db.members[url] = Member(url, state, time.time())
        db.members_version += 1
        return True

    async def remove_member(self, url: str) -> bool:
        db = await self._db()
        if db.members.pop(url, None) is None:
            return False
        await self.forget_instance(url)
        db.cursors.pop(url, None)
        db.leases.pop(url, None)
        db.bootstrap_pages.pop(url, None)
        await self.resolve_divergences(url)
        db.members_version += 1
        return True

    async def resolve_divergences(self, instance: str) -> int:
        db = await self._db()
        now = time.time()
        open_ones = [n for n, d in enumerate(db.divergences) if d.instance == instance and d.resolved_at is None]
        for n in open_ones:
            db.divergences[n] = replace(db.divergences[n], resolved_at=now)
        return len(open_ones)

    async def acquire_lease(self, instance: str, owner: str, ttl: float) -> bool:
        db = await self._db()
        now = time.time()
        holder = db.leases.get(instance)
        if holder is not None and holder[0] != owner and holder[1] >= now:
            return False
        db.leases[instance] = (owner, now + ttl)
        return True

    async def release_lease(self, instance: str, owner: str) -> None:
        db = await self._db()
        if db.leases.get(instance, ("", 0.0))[0] == owner:
            del db.leases[instance]

    async def add_recommendation(self, kind: str, reason: str, details: dict[str, Any]) -> Recommendation:
        db = await self._db()
        stored = (next(db.recommendation_ids), time.time(), kind, reason, orjson.dumps(details))
        db.recommendations.append(stored)
        return Recommendation(*stored[:4], details)

    async def recommendations(self, limit: int = 100) -> list[Recommendation]:
        newest = reversed((await self._db()).recommendations[-limit:] if limit > 0 else [])
        return [Recommendation(i, at, kind, reason, orjson.loads(details)) for i, at, kind, reason, details in newest]

    async def claim_alert(self, key: str, status: str, owner: str, *, window: float, stale: float) -> bool:
        db = await self._db()
        state = claimed(db.alert_claims.get(key), status, owner, time.time(), window=window, stale=stale)
        if state is not None:
            db.alert_claims[key] = state
        return state is not None

    async def touch_alerts(self, keys: Sequence[str]) -> None:
        db, now = await self._db(), time.time()
        for key in keys:
            state = db.alert_claims.get(key)
            if state is not None and state.firing:
                db.alert_claims[key] = AlertClaim(True, state.sent_at, now, state.owner)

    async def publish_gateway_stats(self, gateway: str, stats: dict[str, Any], forget_after: float) -> None:
        db, now = await self._db(), time.time()
        db.gateway_stats[gateway] = (now, orjson.dumps(stats))
        for name, (at, _) in list(db.gateway_stats.items()):
            if at < now - forget_after:
                del db.gateway_stats[name]

    async def gateway_stats(self, max_age: float) -> list[GatewayStats]:
        db, now = await self._db(), time.time()
        return [
            GatewayStats(name, at, now - at, orjson.loads(stats))
            for name, (at, stats) in sorted(db.gateway_stats.items())
            if at >= now - max_age
        ]

    async def reset(self) -> None:
        """Forget the log, the catalog and the divergences; `seq` keeps counting from the old head."""
        db = await self._db()
        now = time.time()
        db.entries.clear()
        db.mappings.clear()
        db.raise_catalog_version()
        db.intents.clear()
        db.known_scopes.clear()
        db.divergences.clear()
        db.bootstrap_pages.clear()
        db.cursors = {i: Cursor(i, db.head, c.incarnation, now) for i, c in db.cursors.items()}
