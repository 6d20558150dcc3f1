"""What the appliers have done, as the request path needs it: cursors and first outcomes, with a wake-up.

Everything here is a cache of the store (cursors and outcomes are committed there first), so a restarted gateway
rebuilds it from the store.
"""

from __future__ import annotations

from ..pulse import Pulse
from ..store import Applied, Outcome

_KEEP_OUTCOMES = 100_000


class Progress:
    def __init__(self, instances: tuple[str, ...]) -> None:
        self.cursors: dict[str, int] = dict.fromkeys(instances, 0)
        self._outcomes: dict[int, Outcome] = {}
        self._changed = Pulse()

    def record(self, instance: str, applied: list[Applied], cursor: int) -> None:
        for a in applied:
            if a.seq not in self._outcomes:
                self._outcomes[a.seq] = Outcome(a.status, a.body, instance)
        self.set_cursor(instance, cursor)
        if len(self._outcomes) > _KEEP_OUTCOMES:
            floor = min(self.cursors.values())
            self._outcomes = {s: o for s, o in self._outcomes.items() if s > floor}

    def set_cursor(self, instance: str, cursor: int) -> None:
        self.cursors[instance] = cursor
        self._changed.fire()

    def outcome(self, seq: int) -> Outcome | None:
        return self._outcomes.get(seq)

    def clear_outcomes(self) -> None:
        self._outcomes.clear()

    async def changed(self, timeout: float) -> None:
        await self._changed.wait(timeout)
