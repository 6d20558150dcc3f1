"""Log retention: entries that every instance has applied are pruned once they are older than the window, or once
the log holds more entries than its cap.

The floor is the lowest cursor in the store among the configured instances: an instance without a cursor, a
lagging one, or one being bootstrapped (its cursor is 0 then) holds pruning back, so no instance can lose entries
it still has to apply. The continuous archive's cursor (`holders`) holds it back too, and is never released: no
entry leaves the log before it is archived. Pruning cannot be held hostage, though: an instance behind the head
whose cursor has not moved for `rebuild_after` seconds (down, or stuck), or that has had no cursor that long, is
*released*: it no longer holds the floor, is shown in `/wal/status` under `retention.released`, and once the log is
pruned past its cursor, its applier bootstraps it when it answers again (a released instance the log still covers
just catches up). The decision reads only the store (cursors and their times), so every gateway on one store
takes the same one.

Pruning runs in steps of at most `PRUNE_STEP` entries, so one transaction never holds the store's writer for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..store import Cursor, LogStore

log = logging.getLogger(__name__)

READ_CHUNK = 200
PRUNE_STEP = 5000
MIN_INTERVAL_S = 0.25
MAX_INTERVAL_S = 60.0
NO_REBUILD = float("inf")


def prune_interval(retention: float) -> float:
    """How often to look: twice per window, within sensible bounds."""
    return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, retention / 2))


@dataclass(frozen=True)
class Floor:
    seq: int  # the highest seq every instance still holding pruning back has applied
    released: tuple[str, ...]  # instances that no longer hold it back


def pruning_floor(
    instances: Sequence[str],
    cursors: Mapping[str, Cursor],
    head: int,
    now: float,
    rebuild_after: float,
    missing_since: Mapping[str, float],
) -> Floor:
    """Which instances hold pruning back, and where. Pure.

    An instance at the head holds nothing back. One behind it whose cursor was last written more than
    `rebuild_after` seconds ago (or that has had no cursor for that long, by `missing_since`) is released."""
    floor, released = head, []
    for instance in instances:
        cursor = cursors.get(instance)
        seq = cursor.seq if cursor is not None else 0
        if seq >= head:
            continue
        since = cursor.updated_at if cursor is not None else missing_since.get(instance, now)
        if now - since > rebuild_after:
            released.append(instance)
            continue
        floor = min(floor, seq)
    return Floor(floor, tuple(released))


def capped_upto(oldest: int, head: int, floor: int, max_entries: int) -> int:
    """The last seq to prune so the log keeps at most `max_entries` entries (0: no cap), never past `floor`. Pure."""
    if max_entries <= 0 or head - oldest + 1 <= max_entries:
        return 0
    return min(floor, head - max_entries)


class Retention:
    def __init__(
        self,
        store: LogStore,
        instances: Sequence[str],
        retention: float,
        *,
        rebuild_after: float = NO_REBUILD,
        max_entries: int = 0,
        holders: Sequence[str] = (),
    ) -> None:
        self._store = store
        self._instances = tuple(instances)
        self._holders = tuple(holders)  # cursors that are not instances and are never released (the archive's)
        self._retention = retention
        self._rebuild_after = rebuild_after
        self._max_entries = max_entries
        self._missing_since: dict[str, float] = {}
        self.interval = prune_interval(retention)
        self.pruned = 0
        self.last_pruned_upto = 0
        self.released: tuple[str, ...] = ()

    def status_document(self) -> dict[str, Any]:
        return {"released": list(self.released), "pruned": self.pruned, "last_pruned_upto": self.last_pruned_upto}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.prune_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def floor(self, now: float | None = None) -> int:
        """The highest seq every instance that still holds pruning back has applied."""
        now = time.time() if now is None else now
        roster = await self._store.members()
        instances = roster.urls if roster.version else self._instances  # the store's list, once it has one
        cursors = await self._store.cursors()
        for instance in instances:
            if instance in cursors:
                self._missing_since.pop(instance, None)
            else:
                self._missing_since.setdefault(instance, now)
        found = pruning_floor(
            instances, cursors, await self._store.head(), now, self._rebuild_after, self._missing_since
        )
        for instance in set(found.released) - set(self.released):
            log.warning(
                "%s held back pruning for %gs: released, rebuilt when it returns", instance, self._rebuild_after
            )
        self.released = found.released
        held = [cursors[h].seq if h in cursors else 0 for h in self._holders]
        return min([found.seq, *held])

    async def prune_once(
        self, now: float | None = None, *, upto: int | None = None, window: float | None = None
    ) -> int:
        """Prune what every instance holding pruning back applied and is older than the window (`window` instead of
        the retention, for a manual prune) or beyond the size cap, and at most up to `upto`."""
        now = time.time() if now is None else now
        floor = await self.floor(now)
        if upto is not None:
            floor = min(floor, upto)
        retention = self._retention if window is None else window
        oldest, head = await self._store.oldest_seq(), await self._store.head()
        upto = max(
            await self._expired_upto(floor, now - retention), capped_upto(oldest, head, floor, self._max_entries)
        )
        pruned = 0
        for step in range(oldest - 1 + PRUNE_STEP, upto + PRUNE_STEP, PRUNE_STEP):
            pruned += await self._store.prune(min(step, upto))
        if pruned:
            self.pruned += pruned
            self.last_pruned_upto = upto
            log.info("pruned %d log entries up to seq %d", pruned, upto)
        return pruned

    async def _expired_upto(self, floor: int, cutoff: float) -> int:
        """The last seq at or below `floor` whose entry, and every one before it, is older than `cutoff`."""
        last = 0
        after = await self._store.oldest_seq() - 1
        while after < floor:
            entries = await self._store.read_keys(after, READ_CHUNK)
            if not entries:
                break
            for entry in entries:
                if entry.seq > floor or entry.created_at >= cutoff:
                    return last
                last = entry.seq
            after = entries[-1].seq
        return last
