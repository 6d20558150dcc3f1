"""One applier per instance: applies log entries to it in `seq` order and owns its cursor.

The loop waits for "new entries, or a nudge, or the lease falling due, or the idle look, or stop". A nudge is a
health change of the instance or an operator's request; the idle look, once a second at least, bounds what a lost
wake-up of the shared store costs. Each wake-up costs about 0.2 ms of CPU on a 2-core machine, so an applier that
polled five times a second cost an idle gateway 3.4 ms of CPU a second; now it looks once.
Transient failures (connection errors, timeouts, 5xx, 429) are retried with capped backoff: an entry never
vanishes. A deterministic rejection (a 4xx for the payload) is the entry's outcome on this instance. So is a
failure that is the entry's own: the same 5xx or timeout `GIVE_UP_AFTER` times in a row, alone (split out of its
batch), while the instance answers a heartbeat. Connection failures and 429 are retried as long as they last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import quote

import orjson

from ..catalog.ids import Catalog
from ..cluster.health import HealthMonitor
from ..cluster.limits import BatchLimits
from ..cluster.progress import Progress
from ..cluster.stats import ApplierStats
from ..errors import InstanceError, NoSource, StoreError
from ..pulse import Pulse
from ..store import Applied, Divergence, Entry, IdMapping, LogStore
from ..upstream.client import Upstream
from ..upstream.incarnation import Incarnation, ensure_marker
from ..upstream.paths import HEARTBEAT
from ..upstream.transport import Transport
from .backoff import backoff_delay
from .batching import Batch, plan_batches
from .bootstrap_plan import BOOTSTRAPPING
from .strikes import Strikes

log = logging.getLogger(__name__)

READ_CHUNK = 500  # entries read ahead at most; the batch limit's bytes bound them too
GIVE_UP_AFTER = 5  # the same failure of one entry, alone, while its instance answers: then it is its outcome
ALIVE_TIMEOUT_S = 2.0
# An idle applier looks at the log's head this often when nothing wakes it (or at its poll interval, if longer):
# PostgreSQL's `heard_head` asks the store when it last did a second ago or more, so a lost notification is found
# within a second.
IDLE_LOOK_S = 1.0


def idle_look(poll_interval: float) -> float:
    """How long an idle loop of replication (an applier, the cursor follower) waits when nothing wakes it."""
    return max(poll_interval, IDLE_LOOK_S)


# Writes whose replay is not naturally idempotent: an intent is recorded before they are sent.
CATALOG_WRITES = frozenset(
    {
        "create_tenant",
        "update_tenant",
        "create_database",
        "delete_database",
        "create_collection",
        "update_collection",
        "delete_collection",
    }
)
# Replaying a catalog write that already took effect answers these; they mean "already done".
_ALREADY_DONE = {
    "create_tenant": 409,
    "create_database": 409,
    "delete_database": 404,
    "delete_collection": 404,
}


class _Transient(InstanceError):
    """An answer to retry (5xx, 429), kept: it becomes the entry's outcome if the entry is given up."""

    def __init__(self, instance: str, response: Upstream) -> None:
        super().__init__(instance, f"answered {response.status}: {response.body[:200]!r}", retryable=True)
        self.response = response


# Retried for as long as they last, never given up: they say nothing of the entry. A Chroma server authenticates
# nobody, so a 401 or 407 comes from a proxy in front of it refusing the gateway's own credentials (missing, or
# rotated there first): the entry waits, as it waits for an instance that is down, until the credentials are right.
RETRIED_WHILE_THEY_LAST = frozenset({401, 407, 429})


def is_transient(response: Upstream) -> bool:
    """5xx, 429, 401 and 407 are retried; a few 5xx that Chroma gives deterministically for the payload are not."""
    if response.status in RETRIED_WHILE_THEY_LAST:
        return True
    if response.status == 501:
        return False
    if response.status >= 500:
        return b"constraint failed" not in response.body
    return False


class Applier:
    def __init__(
        self,
        instance: str,
        *,
        store: LogStore,
        catalog: Catalog,
        client: Transport,
        health: HealthMonitor,
        progress: Progress,
        limits: BatchLimits,
        stats: ApplierStats,
        owner: str,
        poll_interval: float,
        backoff_base: float,
        backoff_cap: float,
        lease_ttl: float,
        on_divergence: Callable[[Divergence], None] = lambda d: None,
        bootstrapper: Callable[[str], Awaitable[int]] | None = None,
        shared_store: bool = False,
    ) -> None:
        """`shared_store`: other gateways apply from the same store (PostgreSQL), so one of them may hold the source
        a bootstrap of this instance needs."""
        self.instance = instance
        self._store = store
        self._catalog = catalog
        self._client = client
        self._health = health
        self._progress = progress
        self._limits = limits
        self._owner = owner
        self._poll = poll_interval
        self._backoff = (backoff_base, backoff_cap)
        self._lease_ttl = lease_ttl
        self._on_divergence = on_divergence
        self._bootstrapper = bootstrapper
        self._shared_store = shared_store
        self.stats = stats
        self._cursor = 0
        self.state = "starting"
        self._incarnation: Incarnation | None = None
        self._lease_until = 0.0
        self._must_check = True
        self._rebuild = False  # asked for by an operator: clear and copy the instance even if it is in step
        self._paused = asyncio.Lock()
        self._strikes = Strikes(GIVE_UP_AFTER)
        self._nudged = Pulse()  # something other than an append for the idle loop to look at
        health.on_change(self._on_health_change)

    @property
    def cursor(self) -> int:
        """The last seq applied to the instance (as committed in the store)."""
        return self._cursor

    @property
    def incarnation(self) -> Incarnation | None:
        """The instance this applier checked it is applying to; None until it has checked."""
        return self._incarnation

    @contextlib.asynccontextmanager
    async def pause(self, timeout: float | None = None) -> AsyncIterator[int]:
        """Hold the applier between two batches for the block, which gets its cursor: nothing is applied to the
        instance meanwhile, so the instance holds exactly the log up to that seq. TimeoutError past `timeout`."""
        await asyncio.wait_for(self._paused.acquire(), timeout)
        try:
            yield self._cursor
        finally:
            self._paused.release()

    async def reset_to(self, seq: int, incarnation: Incarnation) -> None:
        """Take `seq` as applied on this incarnation of the instance (after a reset of it); call it paused."""
        await self._store.set_cursor(self.instance, seq, incarnation.id)
        self._cursor, self._incarnation = seq, incarnation
        self._progress.set_cursor(self.instance, seq)

    def request_rebuild(self) -> None:
        """Rebuild the instance at the next turn of the loop: forget its ids, clear it and copy every collection from
        an in-sync instance (a bootstrap, whatever the log still holds), then apply the log from the copy's seq.
        Until it has succeeded, each turn tries again."""
        self._rebuild = True
        self._check_soon()

    @property
    def rebuild_requested(self) -> bool:
        return self._rebuild

    def recheck(self) -> None:
        """The instance may have been wiped behind the applier's back (a reset that stopped half-way): hold its
        cursor, so no read is sent to it, until the applier has checked which incarnation it is, rebuilding it
        if it is not the one the cursor belongs to."""
        self._progress.hold(self.instance)
        self._check_soon()

    def _check_soon(self) -> None:
        """Check the instance at the next turn, and wake the loop for it if it is idle."""
        self._must_check = True
        self._nudged.fire()

    async def close(self) -> None:
        """Give the lease back, so another gateway can take this instance over at once; stop listening to health
        (a stopped applier of a removed member hears nothing more)."""
        self._health.off_change(self._on_health_change)
        try:
            await self._store.release_lease(self.instance, self._owner)
        except StoreError:
            log.warning("could not release the lease of %s", self.instance)

    def _on_health_change(self, instance: str, up: bool) -> None:
        if instance != self.instance:
            return
        if up:
            self._check_soon()  # the cursor is shown again once the check has found the same instance
        else:
            self._progress.hold(self.instance)

    # --- the loop -------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                if not await self._hold_lease():
                    self.state = "standby"
                    await self._sleep(stop, self._lease_ttl / 3)
                    continue
                async with self._paused:
                    applied = await self._under_lease(self._work())
                attempt = 0
                if not applied and await self._store.heard_head() <= self._cursor:
                    self.state = "idle"
                    await self._wait_for_work(stop)
            except (InstanceError, StoreError) as exc:
                if isinstance(exc, NoSource) and self._shared_store:
                    await self._hand_over(stop)
                    continue
                attempt += 1
                self.stats.failed(str(exc))
                if isinstance(exc, InstanceError):
                    self._health.mark_failure(self.instance, str(exc))
                    self._must_check = True
                self.state = "down" if not self._health.is_up(self.instance) else "retrying"
                await self._sleep(stop, backoff_delay(attempt, *self._backoff))
        await self.close()

    async def _work(self) -> int:
        if self._must_check:
            await self._check_incarnation()
        return await self._apply_available()

    async def _under_lease(self, work: Awaitable[int]) -> int:
        """`work`, while the lease is renewed every third of its TTL. A batch, a catch-up or a bootstrap can take
        longer than the lease: renewed only between two of them, it would lapse, and another gateway's applier
        would apply to the instance beside this one, in another order. Once the lease is lost (taken, or the
        store unreachable until it expired), `_apply_available` sends no further batch."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._lease_ttl / 3)
                if done:
                    return task.result()
                try:
                    await self._hold_lease()
                except StoreError as exc:
                    log.warning("could not renew the lease of %s: %s", self.instance, exc)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, InstanceError, StoreError):
                    await task

    async def _hand_over(self, stop: asyncio.Event) -> None:
        """No source to bootstrap the instance from here: give the lease up for a while, so that a gateway on the
        same store that applies to an in-sync instance (a source it can pause) takes the instance over."""
        with contextlib.suppress(StoreError):
            await self._store.release_lease(self.instance, self._owner)
        self._lease_until = 0.0
        self.state = "standby"
        await self._sleep(stop, self._lease_ttl)

    def _lease_lapsed(self) -> bool:
        return time.monotonic() >= self._lease_until

    async def _wait_for_work(self, stop: asyncio.Event) -> None:
        """Until the log grows past the cursor, the instance needs a check, the lease renewing, or stop.

        Each wait ends at an append, a nudge, the lease's renewal time or after the idle look; the log's head is
        then looked at as the store last heard it (SQLite knows it, PostgreSQL hears it from the commits'
        notifications), so an idle applier asks the store at most once a second.
        """
        while not (stop.is_set() or self._must_check or self._lease_due()):
            renew_in = self._lease_due_at - time.monotonic()
            await self._store.wait_for_append(min(idle_look(self._poll), renew_in), nudge=self._nudged)
            if await self._store.heard_head() > self._cursor:
                return

    @property
    def _lease_due_at(self) -> float:
        return self._lease_until - self._lease_ttl * 2 / 3

    def _lease_due(self) -> bool:
        return time.monotonic() >= self._lease_due_at

    @staticmethod
    async def _sleep(stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    async def _hold_lease(self) -> bool:
        now = time.monotonic()
        if not self._lease_due():
            return True
        if await self._store.acquire_lease(self.instance, self._owner, self._lease_ttl):
            if self._lease_until == 0.0 or now > self._lease_until:
                self._must_check = True  # we may take over from another gateway: reload our cursor
            self._lease_until = now + self._lease_ttl
            return True
        self._lease_until = 0.0
        return False

    # --- incarnation: is this the instance we think it is? ---------------------------------------------------

    async def _check_incarnation(self) -> None:
        marker = await ensure_marker(self._client, self.instance)
        assert marker is not None, "ensure_marker creates the marker when it is missing"
        await self._catalog.load()  # another gateway may have applied to this instance before us
        cursors = await self._store.cursors()
        known = cursors.get(self.instance)
        oldest = await self._store.oldest_seq()
        # pruned past its cursor: entries it never applied are gone, only a bootstrap brings it back
        behind = self._bootstrapper is not None and known is not None and known.seq + 1 < oldest
        if self._rebuild and self._bootstrapper is not None:
            # a rebuild asked for: a copy from an in-sync instance, also when the log could replay it
            log.warning("instance %s: rebuilding it, as asked", self.instance)
            self._catalog.forget(self.instance)
            await self._store.forget_instance(self.instance)
            await self._store.drop_bootstrap(self.instance)  # a copy asked for starts afresh, never resumes
            self.state = "bootstrapping"
            start = await self._bootstrapper(self.instance)
            await self._store.set_cursor(self.instance, start, marker.id)
            self._cursor = start
            self._rebuild = False
        elif known is not None and known.incarnation == marker.id and not behind:
            self._cursor = known.seq
        elif known is not None and not known.incarnation and known.seq == 0 and not behind:
            await self._store.set_cursor(self.instance, 0, marker.id)
            self._cursor = 0
        else:
            # new or wiped: everything this instance held is gone, so are its ids
            log.warning("instance %s is new, was wiped or is behind the log: rebuilding it", self.instance)
            self._catalog.forget(self.instance)
            await self._store.forget_instance(self.instance)
            start = 0
            # a copy was begun (the target may be half cleared or half copied), or one was asked for when the
            # instance was added (it may hold data of its own): only a copy makes it right, not a replay
            copying = known is not None and known.incarnation == BOOTSTRAPPING
            if (oldest > 1 or copying) and self._bootstrapper is not None:
                self.state = "bootstrapping"
                start = await self._bootstrapper(self.instance)
            await self._store.set_cursor(self.instance, start, marker.id)
            self._cursor = start
        self._incarnation = marker
        self._progress.set_cursor(self.instance, self._cursor)
        self._must_check = False

    async def _still_same_instance(self) -> bool:
        marker = await ensure_marker(self._client, self.instance, create=False)
        return marker is not None and self._incarnation is not None and marker.id == self._incarnation.id

    # --- applying -------------------------------------------------------------------------------------------

    async def _apply_available(self) -> int:
        limits = self._limits.current
        entries = await self._store.read_to_apply(self._cursor, READ_CHUNK, max_bytes=limits.max_bytes)
        if not entries:
            return 0
        if entries[0].seq > self._cursor + 1 and self._bootstrapper is not None:
            log.error("the log was pruned past %s (at seq %d): it needs a bootstrap", self.instance, self._cursor)
            self._must_check = True
            return 0
        self.state = "applying"
        for batch in plan_batches(entries, limits):
            if self._lease_lapsed():
                break  # another gateway may hold it now: what is left is its applier's to apply
            self._progress.attempt_started(self.instance)
            try:
                applied, mappings = await self._apply_batch(batch)
            except BaseException:
                self._progress.attempt_ended(self.instance, failed=True)
                raise
            self._progress.attempt_ended(self.instance, failed=False)
            divergences = await self._store.commit_batch(self.instance, applied, batch.last_seq, mappings)
            self._catalog.learn(mappings)
            self._cursor = batch.last_seq
            self._progress.record(self.instance, applied, self._cursor)
            committed = time.time()
            self.stats.batch_applied(
                len(batch.entries),
                len(batch.body),
                [committed - e.created_at for e in batch.entries],
                sum(1 for a in applied if not a.ok),
            )
            for divergence in divergences:
                log.error("divergence at seq %d on %s", divergence.seq, self.instance)
                self._on_divergence(divergence)
            self._health.mark_success(self.instance)
        return len(entries)

    async def _apply_batch(self, batch: Batch) -> tuple[list[Applied], list[IdMapping]]:
        if len(batch.entries) == 1:
            return await self._apply_one(batch.entries[0])
        first = batch.entries[0]
        try:
            response: Upstream | None = await self._send(first, batch.body)
        except InstanceError:
            response = None  # one entry may be the cause: apply them one by one to see
        if response is not None and response.ok:
            body = self._catalog.canonical_body(self.instance, first.op, response.status, response.body)
            return [Applied(e.seq, response.status, body) for e in batch.entries], []
        applied: list[Applied] = []
        for entry in batch.entries:  # rejected or failed as a whole: find each entry's own outcome
            one, _ = await self._apply_one(entry)
            applied.extend(one)
        return applied, []

    async def _apply_one(self, entry: Entry) -> tuple[list[Applied], list[IdMapping]]:
        replay = False
        if entry.op in CATALOG_WRITES:
            replay = await self._store.has_intent(self.instance, entry.seq)
            if not replay:
                await self._store.record_intent(self.instance, entry.seq)
        try:
            response = await self._send(entry, body_to_apply(entry))
        except InstanceError as exc:
            given_up = await self._given_up(entry, exc)
            if given_up is None:
                raise
            return [given_up], []
        if response.status == 404 and entry.collection_id and await self._learn_mapping(entry.collection_id):
            response = await self._send(entry, body_to_apply(entry))
        mappings: list[IdMapping] = []
        status, body = response.status, response.body
        if entry.op == "create_collection":
            status, body, mappings = await self._created(entry, response, replay)
        elif replay and _ALREADY_DONE.get(entry.op) == status:
            status, body = 200, b"{}"
        elif status == 404 and entry.collection_id and not await self._still_same_instance():
            raise InstanceError(self.instance, "instance was replaced or wiped", retryable=True)
        ids = {m.instance_id: m.canonical_id for m in mappings}
        body = _with_ids(body, ids) if ids else self._catalog.canonical_body(self.instance, entry.op, status, body)
        return [Applied(entry.seq, status, body)], mappings

    async def _given_up(self, entry: Entry, failure: InstanceError) -> Applied | None:
        """The entry's outcome when this failure is its own (see `Strikes`), else None: retry it."""
        answer = failure.response if isinstance(failure, _Transient) else None
        if answer is not None and answer.status in RETRIED_WHILE_THEY_LAST:
            return None
        signature = f"{answer.status} {answer.body[:200]!r}" if answer is not None else str(failure)
        if not self._strikes.failed(entry.seq, signature) or not await self._answers_heartbeat():
            return None
        log.error(
            "seq %d failed %d times on %s (%s) while it answers: recorded as its outcome there",
            entry.seq,
            GIVE_UP_AFTER,
            self.instance,
            signature,
        )
        if answer is not None:
            return Applied(entry.seq, answer.status, answer.body)
        message = f"The instance failed this write {GIVE_UP_AFTER} times: {failure}"
        return Applied(entry.seq, 504, orjson.dumps({"error": "GatewayTimeout", "message": message}))

    async def _answers_heartbeat(self) -> bool:
        try:
            return (await self._client.request(self.instance, "GET", HEARTBEAT, timeout=ALIVE_TIMEOUT_S)).ok
        except InstanceError:
            return False

    async def _learn_mapping(self, canonical_id: str) -> bool:
        """True when the store maps the collection to another id here than we knew: `repair` re-created it."""
        stored = {m.canonical_id: m for m in await self._store.mappings(self.instance)}.get(canonical_id)
        if stored is None or stored.instance_id == self._catalog.instance_id(self.instance, canonical_id):
            return False
        self._catalog.learn([stored])
        return True

    async def _created(self, entry: Entry, response: Upstream, replay: bool) -> tuple[int, bytes, list[IdMapping]]:
        """Map a created collection to its canonical id; a get_or_create keeps the id it already had."""
        if response.status == 409 and replay:
            # our earlier attempt may have created it just before a crash: look it up by name
            conflict = response
            name = orjson.loads(entry.body).get("name", "")
            response = await self._client.request(
                self.instance, "GET", f"{entry.path}/{quote(name, safe='')}", headers=entry.headers
            )
            if not response.ok:
                return response.status, response.body, []
            if self._catalog.canonical_id(self.instance, orjson.loads(response.body)["id"]) is not None:
                return conflict.status, conflict.body, []
        if not response.ok:
            return response.status, response.body, []
        own_id = orjson.loads(response.body)["id"]
        if self._catalog.canonical_id(self.instance, own_id) is not None:
            return response.status, response.body, []
        mapping = IdMapping(self.instance, entry.extra["canonical_id"], own_id)
        return response.status, response.body, [mapping]

    async def _send(self, entry: Entry, body: bytes) -> Upstream:
        path = self._catalog.path_for(self.instance, entry.path, entry.collection_id)
        # A data write sent twice changes nothing more; a catalog write's second answer (a 409, a 404) is only
        # read as "already done" on a replay its intent vouches for, so the applier retries it itself.
        response = await self._client.request(
            self.instance,
            entry.method,
            path,
            query=entry.query,
            headers=entry.headers,
            body=body,
            idempotent=entry.op not in CATALOG_WRITES,
        )
        if is_transient(response):
            raise _Transient(self.instance, response)
        return response


def body_to_apply(entry: Entry) -> bytes:
    """The body every instance applies: the client's, or the resolved form logged beside it (document-level
    deletion), so that every instance changes exactly the same records."""
    resolved = entry.extra.get("apply_body")
    return orjson.dumps(resolved) if resolved is not None else entry.body


def _with_ids(body: bytes, ids: dict[str, str]) -> bytes:
    for own, canonical in ids.items():
        body = body.replace(own.encode(), canonical.encode())
    return body
