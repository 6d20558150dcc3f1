"""Following the cursors of the instances whose applier runs in another gateway (a shared PostgreSQL store).

A stored cursor says what an instance applied *in the incarnation it names*. An instance that went down may come
back wiped or replaced, and until the gateway applying to it has checked it and reset its cursor, the store still
holds the old one: a read sent there on its strength would find the instance empty. So a cursor is followed only
once the instance's marker has been seen to name the cursor's incarnation, and checked again after each time the
instance was seen down (its applier holds it at 0 then) and whenever the stored incarnation changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from ..cluster.health import HealthMonitor
from ..cluster.progress import Progress
from ..errors import InstanceError, StoreError
from ..store import Cursor, LogStore
from ..upstream.incarnation import ensure_marker
from ..upstream.transport import Transport
from .applier import idle_look

# An instance whose marker did not name its stored cursor's incarnation (being rebuilt, say) is asked again at
# most this often: the follower is woken at every commit of another gateway.
RECHECK_INTERVAL_S = 1.0


async def _holds_incarnation(client: Transport, instance: str, incarnation: str) -> bool:
    """Is the instance the incarnation a cursor was written for? No when it cannot tell (down, say)."""
    try:
        marker = await ensure_marker(client, instance, create=False)
    except InstanceError:
        return False
    return marker is not None and marker.id == incarnation


class CursorFollower:
    def __init__(
        self,
        store: LogStore,
        client: Transport,
        health: HealthMonitor,
        progress: Progress,
        standby: Callable[[], Iterable[str]],
        poll_interval: float,
    ) -> None:
        """`standby`: the instances whose applier here waits while another gateway's applies."""
        self._store = store
        self._client = client
        self._health = health
        self._progress = progress
        self._standby = standby
        self._poll = poll_interval
        self._trusted: dict[str, str] = {}  # the incarnation each instance was seen to be, since it was last down
        self._downs: dict[str, int] = {}  # how often each was seen down: a check it overlapped proves nothing
        self._checked_at: dict[str, float] = {}
        health.on_change(self._on_health_change)

    def _on_health_change(self, instance: str, up: bool) -> None:
        if not up:
            self._trusted.pop(instance, None)
            self._downs[instance] = self._downs.get(instance, 0) + 1

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            following = await self.follow_once()
            # woken at once when another gateway's applier commits: a read or an ack waiting for it goes on; with
            # nothing to follow (every applier here holds its lease), it looks again once a second
            await self._store.wait_for_cursors(self._poll if following else idle_look(self._poll))

    async def follow_once(self) -> bool:
        """Take the stored cursors of the instances in standby here; False when there is none."""
        standby = list(self._standby())
        if not standby:
            return False  # nothing to follow: no question
        try:
            cursors = await self._store.cursors()
        except StoreError:
            return True
        for instance in standby:
            if instance in cursors:
                await self.take(cursors[instance])
        return True

    async def take(self, cursor: Cursor) -> None:
        """Show the stored cursor as the instance's, if the instance is the incarnation it names."""
        if await self._trust(cursor):
            self._progress.set_cursor(cursor.instance, cursor.seq)

    async def _trust(self, cursor: Cursor) -> bool:
        instance = cursor.instance
        if cursor.seq == 0 or self._trusted.get(instance) == cursor.incarnation:
            return True
        now = time.monotonic()
        if not self._health.is_up(instance) or now - self._checked_at.get(instance, -RECHECK_INTERVAL_S) < (
            RECHECK_INTERVAL_S
        ):
            return False
        self._checked_at[instance] = now
        downs = self._downs.get(instance, 0)
        if not await _holds_incarnation(self._client, instance, cursor.incarnation):
            return False
        if self._downs.get(instance, 0) != downs:
            return False  # seen down while it was asked: it may have come back as another
        self._trusted[instance] = cursor.incarnation
        return True
