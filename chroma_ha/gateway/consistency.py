"""Read-your-writes bookkeeping: the last logged `seq` that each collection and each listing depends on.

A read may go to an instance whose cursor has reached the `seq` its target depends on. The index is rebuilt at
start from the keys of the part of the log that some instance has not applied yet (never the bodies), so it holds
nothing the store does not. With a store shared by several gateways, `LogFollower` notes what the others appended.

The guarantee: a read that arrives after a write was acknowledged, through any gateway on the store, is answered
by an instance that has applied it, or is marked stale. `LogFollower.fresh_enough()` proves it without the store
while the store is this gateway's sole appender (`LogStore.sole_appender`, the writer lease on PostgreSQL): every
entry since the lease's epoch began was appended here and noted before its write was acknowledged, and a
catch-up that began under that epoch noted everything before it. Otherwise a read catches up first: with the
log's head as the store tells it *after the read arrived*, so every write acknowledged before the read counts.
Concurrent reads share catch-ups: a read joins the next one to start, never one that was already under way.

A store that is down does not hold reads up: a catch-up waits for it `CATCH_UP_WAIT_S` at most, and says whether it
got to the head. A read that could not is served all the same, marked `UNPROVEN`: this gateway's own writes are
still in the index, but what the others appended since the last catch-up cannot be counted. A lease holder that
loses the store stops trusting its lease within `postgres_lease.LEASE_TTL_S` (before any other store can append),
and its reads then catch up like any other's.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import StoreError
from ..store import EntryKey, LogStore
from .routes import Route

log = logging.getLogger(__name__)

_TENANT_OPS = frozenset({"create_tenant", "update_tenant"})
_DATABASE_OPS = frozenset({"create_database", "delete_database"})
_COLLECTION_OPS = frozenset({"create_collection", "update_collection", "delete_collection"})
_SCOPE_OPS = _COLLECTION_OPS | _DATABASE_OPS | _TENANT_OPS | {"reset"}
KEYS_CHUNK = 5000
CATCH_UP_WAIT_S = 0.5  # how long a read waits for the store to tell it the log's head
RETRY_AFTER_S = 1  # what a refusal for want of the store (or of an instance) tells clients to wait
UNPROVEN = -1  # the stale count of a read that could not learn the head: how many entries it may miss is unknown


def _retrieved(attempt: asyncio.Future[None]) -> None:
    """Its failure is logged by `_ended`, on the catch-up it waited for; readers that stopped waiting never ask."""
    if not attempt.cancelled():
        attempt.exception()


class LogIndex:
    def __init__(self) -> None:
        self._collections: dict[str, int] = {}
        self._scopes: dict[str, int] = {}
        self.floor = 0  # every instance has applied up to here, so nothing below needs tracking
        self.position = 0  # the log has been noted up to here (own appends are noted as they happen)

    def note(self, key: EntryKey) -> None:
        if key.collection_id:
            self._collections[key.collection_id] = key.seq
        if key.canonical_id:
            self._collections[key.canonical_id] = key.seq
        if key.op in _SCOPE_OPS:
            self._raise_scopes(key.seq, key.scope)

    def _raise_scopes(self, seq: int, scope: str) -> None:
        parts = scope.split("/") if scope else []
        for depth in range(len(parts) + 1):
            name = "/".join(parts[:depth])
            self._scopes[name] = max(seq, self._scopes.get(name, 0))

    def rebuild(self, keys: list[EntryKey], floor: int) -> None:
        self._collections.clear()
        self._scopes.clear()
        self.floor = floor
        self.position = max([floor, *(k.seq for k in keys)])
        for key in keys:
            self.note(key)

    def required_seq(self, route: Route) -> int:
        """The seq an instance must have applied to answer this read as the client's own writes left it."""
        # Never below the floor: an instance rebuilding from scratch (wiped, new) holds nothing until it passes it.
        if route.collection_uuid:
            return max(self.floor, self._collections.get(route.collection_uuid, 0))
        return max(self.floor, self._scopes.get(route.scope, 0))


class LogFollower:
    """Keeps a `LogIndex` level with the store: rebuilt at start, and caught up with the log's head before a read
    when other gateways append to the same store."""

    def __init__(self, store: LogStore, index: LogIndex) -> None:
        self._store = store
        self._index = index
        self._lock = asyncio.Lock()
        self._late: asyncio.Future[None] | None = None  # a catch-up that outlived its wait, still asking the store
        self._running: asyncio.Future[None] | None = None  # the catch-up under way: it may have asked the head
        self._next: asyncio.Future[None] | None = None  # the one that starts when it ends, shared by new readers
        self._proven_epoch: int | None = None  # the sole-appender epoch a completed catch-up began under
        self.unreachable: str | None = None  # why the last catch-up did not reach the head; None when it did
        self.catch_ups = 0  # head questions asked for reads (the rest were proven without the store)

    def fresh_enough(self) -> bool:
        """Does the index already hold every write acknowledged until now, with no question to the store? True
        while the store is the sole appender, under the epoch a completed catch-up began in."""
        epoch = self._store.sole_appender()
        return epoch is not None and epoch == self._proven_epoch

    async def rebuild(self, floor: int) -> None:
        """From the keys of every entry after `floor` (the lowest cursor)."""
        keys: list[EntryKey] = []
        after = floor
        while chunk := await self._store.read_keys(after, KEYS_CHUNK):
            keys.extend(chunk)
            after = chunk[-1].seq
        self._index.rebuild(keys, floor)

    async def catch_up(self, within: float = CATCH_UP_WAIT_S) -> bool:
        """Note what was appended up to the head as it is now: writes other gateways acknowledged count too. True
        when done; False when the store failed, or did not answer within `within` seconds. An attempt that outlives
        its wait goes on by itself, and until it ends later calls return False at once, without asking the store
        (it is down, or too slow to hold reads up for); its head, asked before they came, proves nothing to them."""
        if self._late is not None and not self._late.done():
            return False
        attempt = self._attempt()
        await asyncio.wait([attempt], timeout=within)  # not cancelled past it: it goes on, as `_late`
        if not attempt.done():
            self._late = attempt
            return False
        return not attempt.cancelled() and attempt.exception() is None

    def _attempt(self) -> asyncio.Future[None]:
        """A catch-up that asks the head after now: a new one, or the one queued behind the catch-up under way
        (which may have asked before this read arrived), shared by every read that comes meanwhile."""
        running = self._running
        if running is None or running.done():
            self._running = self._started()
            return self._running
        if self._next is None:
            self._next = asyncio.ensure_future(self._after(running))
            self._next.add_done_callback(_retrieved)
        return self._next

    def _started(self) -> asyncio.Future[None]:
        attempt = asyncio.ensure_future(self._catch_up())
        attempt.add_done_callback(self._ended)
        return attempt

    async def _after(self, running: asyncio.Future[None]) -> None:
        await asyncio.wait([running])
        self._next = None
        self._running = attempt = self._started()
        await attempt

    def why_unproven(self) -> str:
        reason = self.unreachable or f"it did not answer within {CATCH_UP_WAIT_S:g}s"
        return f"The write-ahead log is unreachable ({reason}): no instance can be proven to hold every write"

    def _ended(self, attempt: asyncio.Future[None]) -> None:
        failure = None if attempt.cancelled() else attempt.exception()
        if failure is not None and not isinstance(failure, StoreError):
            log.error("catching up with the log failed", exc_info=failure)
        if failure is None:
            if self.unreachable is not None:
                log.info("the log store answers again: reads prove their freshness again")
            self.unreachable = None
        elif self.unreachable is None:
            self.unreachable = str(failure) or type(failure).__name__
            log.warning("cannot catch up with the log (%s): reads are served, marked unproven", self.unreachable)

    async def _catch_up(self) -> None:
        self.catch_ups += 1
        epoch = self._store.sole_appender()  # before the head: the head then covers the epoch's start
        head = await self._store.head()
        async with self._lock:
            while self._index.position < head:
                chunk = await self._store.read_keys(self._index.position, KEYS_CHUNK)
                if not chunk:
                    break
                for key in chunk:
                    self._index.note(key)
                self._index.position = chunk[-1].seq
        if epoch is not None:
            self._proven_epoch = epoch
