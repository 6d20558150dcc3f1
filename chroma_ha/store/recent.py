"""The entries a store appended itself a moment ago, kept so that the appliers of its gateway read them without a
round trip to the database: under a steady stream of writes, each batch an applier sends is made of entries its
own gateway has just appended.

Only committed entries are kept (added once their transaction has committed), under the `seq` it gave them. A read
is answered from here only when the entry right after the cursor is held, and it stops at the first `seq` not held
(another gateway's append, one evicted), so it returns a prefix of what the database would: what is missing is read
from the database by the next read. The entries carry no outcome, and their `created_at` is this process's clock at
the append, a moment before the database's own: the applier's lag figures use it, nothing decides by it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields

from .base import Entry, NewEntry

RECENT_ENTRIES = 4096  # entries kept at most
RECENT_BYTES = 32 << 20  # of bodies kept at most


class RecentAppends:
    def __init__(self, max_entries: int = RECENT_ENTRIES, max_bytes: int = RECENT_BYTES) -> None:
        self._entries: dict[int, Entry] = {}  # by seq, in the order appended, which is seq order
        self._bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes

    def add(self, entries: Iterable[Entry]) -> None:
        """Entries just committed, with higher seqs than any held."""
        for entry in entries:
            self._entries[entry.seq] = entry
            self._bytes += len(entry.body)
        while self._entries and (len(self._entries) > self._max_entries or self._bytes > self._max_bytes):
            self._evict(next(iter(self._entries)))

    def read(self, after: int, limit: int, max_bytes: int | None) -> list[Entry]:
        """As `LogStore.read`, but only the entries held from `after + 1` on without a gap: empty when that first
        one is not held."""
        found: list[Entry] = []
        size = 0
        seq = after + 1
        while len(found) < limit and (entry := self._entries.get(seq)) is not None:
            size += len(entry.body)
            if found and max_bytes is not None and size > max_bytes:
                break
            found.append(entry)
            seq += 1
        return found

    def drop_through(self, seq: int) -> None:
        """Forget the entries up to `seq` (pruned from the log)."""
        while self._entries and next(iter(self._entries)) <= seq:
            self._evict(next(iter(self._entries)))

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _evict(self, seq: int) -> None:
        self._bytes -= len(self._entries.pop(seq).body)


def appended(entries: Sequence[NewEntry], seqs: Sequence[int], appended_at: float) -> list[Entry]:
    """The entries as the log holds them once appended under `seqs`."""
    return [
        Entry(**{f.name: getattr(e, f.name) for f in fields(NewEntry)}, seq=seq, created_at=appended_at)
        for e, seq in zip(entries, seqs, strict=True)
    ]
