"""What the appliers have done, as the request path needs it: cursors and first outcomes, with a wake-up, and
whether each applier is making progress (the write path waits as long as one is).

Cursors and outcomes are a cache of the store (committed there first), so a restarted gateway rebuilds them from the
store; the times of progress are this gateway's own observations and start empty.
"""

from __future__ import annotations

import math
import time

from ..pulse import Pulse
from ..store import Applied, Outcome

_KEEP_OUTCOMES = 100_000


class Progress:
    def __init__(self, instances: tuple[str, ...]) -> None:
        self.cursors: dict[str, int] = dict.fromkeys(instances, 0)
        self._outcomes: dict[int, Outcome] = {}
        self._changed = Pulse()
        self._advanced_at: dict[str, float] = {}  # when each cursor last moved forward (monotonic)
        self._applying: set[str] = set()  # instances whose applier is sending a batch now
        self._failed_at: dict[str, float] = {}  # when each applier last failed an attempt

    def record(self, instance: str, applied: list[Applied], cursor: int) -> None:
        for a in applied:
            if a.seq not in self._outcomes:
                self._outcomes[a.seq] = Outcome(a.status, a.body, instance)
        self.set_cursor(instance, cursor)
        if len(self._outcomes) > _KEEP_OUTCOMES:
            floor = min(self.cursors.values())
            self._outcomes = {s: o for s, o in self._outcomes.items() if s > floor}

    def set_cursor(self, instance: str, cursor: int) -> None:
        if cursor > self.cursors.get(instance, 0):
            self._advanced_at[instance] = time.monotonic()
        self.cursors[instance] = cursor
        self._changed.fire()

    def hold(self, instance: str) -> None:
        """Show the instance as having applied nothing until its applier says otherwise: it went down, and may come
        back wiped or replaced, so no read may count on what it held before its applier has checked it again."""
        self.cursors[instance] = 0
        self._changed.fire()

    def watch(self, instance: str) -> None:
        """A new member: shown as having applied nothing until its applier says otherwise."""
        self.cursors.setdefault(instance, 0)

    def forget(self, instance: str) -> None:
        """The instance is no longer a member: nothing of it may count (a write waiting on it, a floor)."""
        self.cursors.pop(instance, None)
        self._advanced_at.pop(instance, None)
        self._applying.discard(instance)
        self._failed_at.pop(instance, None)
        self._changed.fire()

    def attempt_started(self, instance: str) -> None:
        self._applying.add(instance)

    def attempt_ended(self, instance: str, *, failed: bool) -> None:
        self._applying.discard(instance)
        if failed:
            self._failed_at[instance] = time.monotonic()

    def progressing(self, instance: str, *, since: float, window: float) -> bool:
        """Is the instance's applier making progress: has its cursor moved within `window` seconds, or is it
        sending a batch with no attempt failed since `since` (a large batch takes as long as Chroma needs)?"""
        now = time.monotonic()
        if now - self._advanced_at.get(instance, -math.inf) < window:
            return True
        return instance in self._applying and self._failed_at.get(instance, -math.inf) < since

    def outcome(self, seq: int) -> Outcome | None:
        return self._outcomes.get(seq)

    def clear_outcomes(self) -> None:
        self._outcomes.clear()

    async def changed(self, timeout: float) -> None:
        await self._changed.wait(timeout)
