"""Log retention: entries that every instance has applied are pruned once they are older than the window.

The floor is the lowest cursor in the store among the configured instances: an instance without a cursor, a
lagging one, or one being bootstrapped (its cursor is 0 then) holds pruning back, so no instance can lose entries
it still has to apply. An instance that is wiped or new afterwards finds the log pruned and is bootstrapped.

Pruning runs in steps of at most `PRUNE_STEP` entries, so one transaction never holds the store's writer for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from ..store import LogStore

log = logging.getLogger(__name__)

READ_CHUNK = 200
PRUNE_STEP = 5000
MIN_INTERVAL_S = 0.25
MAX_INTERVAL_S = 60.0


def prune_interval(retention: float) -> float:
    """How often to look: twice per window, within sensible bounds."""
    return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, retention / 2))


class Retention:
    def __init__(self, store: LogStore, instances: Sequence[str], retention: float) -> None:
        self._store = store
        self._instances = tuple(instances)
        self._retention = retention
        self.interval = prune_interval(retention)
        self.pruned = 0
        self.last_pruned_upto = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.prune_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def floor(self) -> int:
        """The highest seq every configured instance has applied."""
        cursors = await self._store.cursors()
        return min((cursors[i].seq if i in cursors else 0 for i in self._instances), default=0)

    async def prune_once(
        self, now: float | None = None, *, upto: int | None = None, window: float | None = None
    ) -> int:
        """Prune what every instance applied and is older than the window (`window` instead of the retention,
        for a manual prune), and at most up to `upto`."""
        floor = await self.floor()
        if upto is not None:
            floor = min(floor, upto)
        retention = self._retention if window is None else window
        upto = await self._expired_upto(floor, (now or time.time()) - retention)
        pruned = 0
        oldest = await self._store.oldest_seq()
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
