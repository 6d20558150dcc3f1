"""Read-your-writes bookkeeping: the last logged `seq` that each collection and each listing depends on.

A read may go to an instance whose cursor has reached the `seq` its target depends on. The index is rebuilt at
start from the keys of the part of the log that some instance has not applied yet (never the bodies), so it holds
nothing the store does not. With a store shared by several gateways, `LogFollower` notes what the others appended.
"""

from __future__ import annotations

import asyncio

from ..store import EntryKey, LogStore
from .routes import Route

_TENANT_OPS = frozenset({"create_tenant", "update_tenant"})
_DATABASE_OPS = frozenset({"create_database", "delete_database"})
_COLLECTION_OPS = frozenset({"create_collection", "update_collection", "delete_collection"})
_SCOPE_OPS = _COLLECTION_OPS | _DATABASE_OPS | _TENANT_OPS | {"reset"}
KEYS_CHUNK = 5000


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

    async def rebuild(self, floor: int) -> None:
        """From the keys of every entry after `floor` (the lowest cursor)."""
        keys: list[EntryKey] = []
        after = floor
        while chunk := await self._store.read_keys(after, KEYS_CHUNK):
            keys.extend(chunk)
            after = chunk[-1].seq
        self._index.rebuild(keys, floor)

    async def catch_up(self) -> None:
        """Note what was appended up to the head as it is now: writes other gateways acknowledged count too."""
        head = await self._store.head()
        async with self._lock:
            while self._index.position < head:
                chunk = await self._store.read_keys(self._index.position, KEYS_CHUNK)
                if not chunk:
                    break
                for key in chunk:
                    self._index.note(key)
                self._index.position = chunk[-1].seq
