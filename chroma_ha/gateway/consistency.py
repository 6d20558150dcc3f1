"""Read-your-writes bookkeeping: the last logged `seq` that each collection and each listing depends on.

A read may go to an instance whose cursor has reached the `seq` its target depends on. The index is rebuilt at
start from the part of the log that some instance has not applied yet, so it holds nothing the store does not.
"""

from __future__ import annotations

from ..store import Entry, NewEntry
from .routes import Route

_TENANT_OPS = frozenset({"create_tenant", "update_tenant"})
_DATABASE_OPS = frozenset({"create_database", "delete_database"})
_COLLECTION_OPS = frozenset({"create_collection", "update_collection", "delete_collection"})


class LogIndex:
    def __init__(self) -> None:
        self._collections: dict[str, int] = {}
        self._scopes: dict[str, int] = {}
        self.floor = 0  # every instance has applied up to here, so nothing below needs tracking
        self.position = 0  # the log has been read up to here (own appends are noted as they happen)

    def note(self, seq: int, entry: NewEntry) -> None:
        if entry.collection_id:
            self._collections[entry.collection_id] = seq
        if entry.op == "create_collection" and entry.extra.get("canonical_id"):
            self._collections[entry.extra["canonical_id"]] = seq
        if entry.op in _COLLECTION_OPS | _DATABASE_OPS | _TENANT_OPS or entry.op == "reset":
            self._raise_scopes(seq, entry.scope)

    def _raise_scopes(self, seq: int, scope: str) -> None:
        parts = scope.split("/") if scope else []
        for depth in range(len(parts) + 1):
            key = "/".join(parts[:depth])
            self._scopes[key] = max(seq, self._scopes.get(key, 0))

    def rebuild(self, entries: list[Entry], floor: int) -> None:
        self._collections.clear()
        self._scopes.clear()
        self.floor = floor
        self.position = max([floor, *(e.seq for e in entries)])
        for e in entries:
            self.note(e.seq, e)

    def required_seq(self, route: Route) -> int:
        """The seq an instance must have applied to answer this read as the client's own writes left it."""
        # Never below the floor: an instance rebuilding from scratch (wiped, new) holds nothing until it passes it.
        if route.collection_uuid:
            return max(self.floor, self._collections.get(route.collection_uuid, 0))
        return max(self.floor, self._scopes.get(route.scope, 0))
