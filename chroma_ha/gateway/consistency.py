"""Read-your-writes bookkeeping: the last logged `seq` that each collection and each listing depends on.

A read may go to an instance whose cursor has reached the `seq` its target depends on. The index is rebuilt at
start from the keys of the part of the log that some instance has not applied yet (never the bodies), so it holds
nothing the store does not. With a store shared by several gateways, `LogFollower` notes what the others appended.

A store that is down does not hold reads up: a catch-up waits for it `CATCH_UP_WAIT_S` at most, and says whether it
got to the head. A read that could not is served all the same, marked `UNPROVEN`: this gateway's own writes are
still in the index, but what the others appended since the last catch-up cannot be counted.
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
        self.unreachable: str | None = None  # why the last catch-up did not reach the head; None when it did

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
        attempt = asyncio.ensure_future(self._catch_up())
        attempt.add_done_callback(self._ended)
        await asyncio.wait([attempt], timeout=within)  # not cancelled past it: it goes on, as `_late`
        if not attempt.done():
            self._late = attempt
            return False
        return not attempt.cancelled() and attempt.exception() is None

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
        head = await self._store.head()
        async with self._lock:
            while self._index.position < head:
                chunk = await self._store.read_keys(self._index.position, KEYS_CHUNK)
                if not chunk:
                    break
                for key in chunk:
                    self._index.note(key)
                self._index.position = chunk[-1].seq
