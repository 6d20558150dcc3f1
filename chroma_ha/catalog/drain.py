"""Watching the log from outside the gateway: is it drained for some instances, and what did it touch since?

`verify` and `repair` run as their own processes next to a running gateway and read the same store. They must not
race the appliers: they wait until the instances they compare have applied the whole log, and `repair` checks,
after fixing a collection, whether any entry logged meanwhile touched it (then it compares again).

The head is found by reading forward from the last seq seen, not from a cached counter: another process appends.
A gap in `seq` (entries pruned before we read them) counts as touching everything, to stay on the safe side.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ChromaHAError
from ..store import LogStore

READ_CHUNK = 500
POLL_S = 0.1
_ANYTHING = "*"


class NotDrained(ChromaHAError):
    def __init__(self, head: int, cursors: dict[str, int]) -> None:
        behind = ", ".join(f"{i} at {c}" for i, c in cursors.items() if c < head)
        super().__init__(f"the log (head {head}) is not applied everywhere: {behind}")
        self.head = head
        self.cursors = cursors


@dataclass(frozen=True)
class _Touch:
    seq: int
    collection_id: str | None
    scope: str


def touches(entry_collection: str | None, entry_scope: str, canonical_id: str | None, scope: str) -> bool:
    """Whether an entry may change a collection (known by canonical id) in `scope` (`tenant/database`). Pure.

    Entries of the collection itself touch it; so do catalog entries without a collection id in its database or
    above (creating, renaming or deleting collections by name, deleting the database, a reset).
    """
    if entry_collection == _ANYTHING:
        return True
    if entry_collection is not None:
        return entry_collection == canonical_id
    return entry_scope == "" or scope == entry_scope or scope.startswith(entry_scope + "/")


class LogWatch:
    def __init__(self, store: LogStore) -> None:
        self._store = store
        self.head = -1
        self._seen: list[_Touch] = []

    async def advance(self) -> int:
        """Read the entries appended since the last call; returns the head."""
        if self.head < 0:
            self.head = await self._store.head()
        while True:
            entries = await self._store.read_keys(self.head, READ_CHUNK)
            if not entries:
                return self.head
            if entries[0].seq != self.head + 1:
                self._seen.append(_Touch(entries[0].seq - 1, _ANYTHING, ""))
            self._seen.extend(_Touch(e.seq, e.collection_id, e.scope) for e in entries)
            self.head = entries[-1].seq

    async def cursors(self, instances: Sequence[str]) -> dict[str, int]:
        stored = await self._store.cursors()
        return {i: stored[i].seq if i in stored else 0 for i in instances}

    async def wait_drained(self, instances: Sequence[str], timeout: float) -> int:
        """Wait until every one of `instances` has applied the log as it is now; returns that head."""
        deadline = time.monotonic() + timeout
        while True:
            head = await self.advance()
            cursors = await self.cursors(instances)
            if all(c >= head for c in cursors.values()):
                self._seen = [t for t in self._seen if t.seq > head]
                return head
            if time.monotonic() >= deadline:
                raise NotDrained(head, cursors)
            await asyncio.sleep(POLL_S)

    async def touched(self, since: int, canonical_id: str | None, scope: str) -> bool:
        """Whether an entry after `since` may have changed the collection."""
        await self.advance()
        return any(t.seq > since and touches(t.collection_id, t.scope, canonical_id, scope) for t in self._seen)
