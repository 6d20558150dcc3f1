"""Changing the instances while the gateways serve: the reconciler that keeps this gateway in step with the store's
list of members, and the operators' actions on that list (list, add, remove) behind the admin API.

Invariants:
- The store's list is the truth: `MemberSync` replaces this gateway's copy whole when the store's version moves
  (one indexed read per look), starts an applier for a member that needs one and stops the applier of one that is
  draining or gone. It alone changes `Members`; health and progress watch and forget through their own operations.
- An added member is `joining`: it is recorded with a bootstrap's placeholder cursor, so whichever gateway runs its
  applier copies it from an in-sync instance (clearing what it held first) rather than replaying the log onto
  data of its own, then applies the log from the copy's seq; it is made `active` by the
  gateway running its applier once its cursor has reached the head seen one look earlier. Until then it serves no
  read and counts for no `ack=all`.
- A removal drains first: the member is `draining` in the store (every gateway stops reading from it and stops its
  applier within a look), the remover waits for two looks and its own reads to it to end, then forgets it with
  everything the store holds for it in one transaction. The last active member is never removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..cluster.health import HealthMonitor
from ..cluster.membership import (
    ACTIVE,
    DRAINING,
    JOINING,
    Members,
    caught_up,
    check_add,
    check_remove,
    checked_url,
)
from ..cluster.progress import Progress
from ..errors import InstanceError, MembershipRefused, StoreError
from ..store import LogStore
from ..upstream.paths import HEARTBEAT
from ..upstream.transport import Transport
from .applier import Applier
from .bootstrap_plan import BOOTSTRAPPING

log = logging.getLogger(__name__)

_SERVING_ONCE = frozenset({"idle", "applying"})  # applier states in which a caught-up cursor is a real one
REACH_TIMEOUT_S = 2.0
DRAIN_STEP_S = 0.05


class MemberSync:
    def __init__(
        self,
        *,
        store: LogStore,
        members: Members,
        appliers: Mapping[str, Applier],
        health: HealthMonitor,
        progress: Progress,
        attach: Callable[[str], None],
        detach: Callable[[str], Awaitable[None]],
        poll: float,
        on_removed: Callable[[str], None] = lambda url: None,
    ) -> None:
        """`attach` starts an applier for a member, `detach` stops it: the composition root builds and supervises
        appliers; this decides when. `on_removed` hears of each member gone from the list (its alerts end)."""
        self._store = store
        self._members = members
        self._appliers = appliers
        self._health = health
        self._progress = progress
        self._attach = attach
        self._detach = detach
        self.poll = poll
        self._on_removed = on_removed
        self._lock = asyncio.Lock()
        self._heads: dict[str, int] = {}  # per joining member run here: the head at the previous look

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sync()
                await self._promote()
            except StoreError as exc:
                log.warning("could not read the members from the store: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll)

    async def sync(self) -> None:
        """Take the store's list if it changed, and start and stop appliers to match it."""
        async with self._lock:
            if await self._store.members_version() == self._members.version:
                return  # one small question a poll; the list is read only when it changed
            roster = await self._store.members()
            before = set(self._members.urls)
            self._members.update(roster)
            for url in roster.urls:
                self._health.watch(url)
                self._progress.watch(url)
            wanted = set(self._members.applied_to())
            for url in [u for u in roster.urls if u in wanted and u not in self._appliers]:
                self._attach(url)
            for url in [u for u in self._appliers if u not in wanted]:
                await self._detach(url)
            for url in before - set(roster.urls):
                self._health.forget(url)
                self._progress.forget(url)
                self._heads.pop(url, None)
                self._on_removed(url)
            log.info(
                "members (version %d): %s", roster.version, ", ".join(f"{m.url} {m.state}" for m in roster.members)
            )

    async def _promote(self) -> None:
        """Make active each joining member whose applier runs here and has caught up."""
        for member in self._members.roster.members:
            applier = self._appliers.get(member.url)
            if member.state != JOINING or applier is None or applier.state not in _SERVING_ONCE:
                self._heads.pop(member.url, None)
                continue
            if caught_up(applier.cursor, self._heads.get(member.url)):
                if await self._store.set_member_state(member.url, ACTIVE, JOINING):
                    log.warning("instance %s caught up (seq %d): it serves reads now", member.url, applier.cursor)
                self._heads.pop(member.url, None)
                await self.sync()
            else:
                self._heads[member.url] = await self._store.head()


class MemberActions:
    """List, add and remove members: each answers a document, or raises MembershipRefused saying why not."""

    def __init__(
        self,
        *,
        store: LogStore,
        members: Members,
        sync: MemberSync,
        client: Transport,
        health: HealthMonitor,
        progress: Progress,
        appliers: Mapping[str, Applier],
        drain_timeout: float,
    ) -> None:
        self._store = store
        self._members = members
        self._sync = sync
        self._client = client
        self._health = health
        self._progress = progress
        self._appliers = appliers
        self._drain_timeout = drain_timeout

    async def list(self) -> dict[str, Any]:
        await self._sync.sync()
        head = await self._store.head()
        rows = []
        for member in self._members.roster.members:
            cursor = self._progress.cursors.get(member.url, 0)
            applier = self._appliers.get(member.url)
            rows.append(
                {
                    "url": member.url,
                    "state": member.state,
                    "since": member.changed_at,
                    "up": self._health.is_up(member.url),
                    "cursor": cursor,
                    "lag": max(0, head - cursor),
                    "applier": applier.state if applier is not None else "stopped",
                }
            )
        return {"version": self._members.version, "head": head, "instances": rows}

    async def add(self, given: object) -> dict[str, Any]:
        url = checked_url(given)
        check_add(await self._store.members(), url)
        await self._reachable(url)
        if not await self._store.add_member(url, JOINING):
            raise MembershipRefused("duplicate", f"{url} is already an instance")
        # a copy, never a replay, brings it in: it may hold data of its own (a removed instance added back)
        await self._store.set_cursor(url, 0, BOOTSTRAPPING)
        log.warning("instance %s added: it joins (copied, then caught up) before it serves reads", url)
        await self._sync.sync()
        return {"url": url, "state": JOINING, "version": self._members.version}

    async def _reachable(self, url: str) -> None:
        try:
            answer = await self._client.request(url, "GET", HEARTBEAT, timeout=REACH_TIMEOUT_S)
        except InstanceError as exc:
            raise MembershipRefused("unreachable", f"cannot reach {url}: {exc}") from None
        if not answer.ok:
            raise MembershipRefused("unreachable", f"{url} answered its heartbeat with {answer.status}")

    async def remove(self, given: object) -> dict[str, Any]:
        url = checked_url(given)
        member = check_remove(await self._store.members(), url)
        started = time.monotonic()
        if member.state != DRAINING and not await self._store.set_member_state(url, DRAINING, member.state):
            raise MembershipRefused("changed", f"{url} changed while it was being removed: look and try again")
        log.warning("instance %s draining: no new reads, its applier stopped", url)
        await self._sync.sync()
        await self._drained(url, started)
        await self._store.remove_member(url)
        await self._sync.sync()
        log.warning("instance %s removed", url)
        return {"url": url, "state": "removed", "drained_seconds": round(time.monotonic() - started, 3)}

    async def _drained(self, url: str, started: float) -> None:
        """Until every gateway has had two looks to stop reading from it, and this one's reads to it have ended
        (at most the drain timeout: a read still under way then fails over to another instance)."""
        grace = 2 * self._sync.poll
        while time.monotonic() - started < self._drain_timeout:
            if time.monotonic() - started >= grace and self._health.state_of(url).outstanding == 0:
                return
            await asyncio.sleep(DRAIN_STEP_S)
