"""The read path: choose an instance that already holds the client's writes, forward, fail over."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import orjson

from ..catalog.ids import Catalog
from ..cluster.health import HealthMonitor, HealthState
from ..cluster.membership import Members
from ..cluster.progress import Progress
from ..errors import InstanceError, RequestRejected, StaleConnection
from ..upstream.client import HeaderPairs, Upstream
from ..upstream.transport import Transport
from . import listings
from .consistency import RETRY_AFTER_S, UNPROVEN, LogFollower, LogIndex
from .routes import Route

log = logging.getLogger(__name__)

STALE_HEADER = "x-chroma-ha-stale-by"
# Answers that say the server cannot serve at all (as opposed to an error for this request).
_UNAVAILABLE = frozenset({502, 503, 504})


@dataclass(slots=True)
class ReadResult:
    upstream: Upstream
    body: bytes
    instance: str
    stale_by: int = 0


Delivered = Callable[["ReadResult | BaseException"], None]


# Choices in a row that put one instance first among equally loaded ones: each instance's caches stay warm for a
# run of reads (on instances that share a machine, switching at every read cost 0.2 ms a query), and over runs a
# client sending one read at a time is still shared by weight.
RUN_CHOICES = 16


class Leader:
    """Which of the equally loaded instances a read asks first: one drawn by weight, kept for `run` choices (or
    until it is no longer a candidate). `rng` is the random source (seeded in tests)."""

    def __init__(self, weights: Mapping[str, float], run: int = RUN_CHOICES, rng: random.Random | None = None) -> None:
        self._weights = weights
        self._run = run
        self._rng = rng or random.Random()
        self._current: str | None = None
        self._left = 0

    def among(self, candidates: list[str]) -> str:
        if self._left <= 0 or self._current not in candidates:
            weights = [self._weights.get(i, 1.0) for i in candidates]
            self._current = self._rng.choices(candidates, weights)[0]
            self._left = self._run
        self._left -= 1
        return self._current


def fresh_first(
    states: Mapping[str, HealthState],
    cursors: Mapping[str, int],
    weights: Mapping[str, float],
    required: int,
    leader: Callable[[list[str]], str] | None = None,
    serving: AbstractSet[str] | None = None,
) -> list[str]:
    """Instances that are up, serving (active members; None: all) and have applied `required`, in the order to ask
    them. Lean: every read asks it.

    The least loaded goes first: an instance's load is its outstanding requests divided by its weight, so under
    concurrency the reads are shared by weight. Among equally loaded ones (every one idle, for a client that sends
    one read at a time) the `leader` goes first (see `Leader`; none: the configured order)."""
    fresh = []
    for instance, state in states.items():
        if state.up and cursors.get(instance, 0) >= required and (serving is None or instance in serving):
            fresh.append(instance)
    if len(fresh) > 1:
        first = leader(fresh) if leader is not None else fresh[0]
        fresh.sort(key=lambda i: (states[i].outstanding / weights.get(i, 1.0), i != first))
    return fresh


class ReadPath:
    def __init__(
        self,
        *,
        members: Members,
        client: Transport,
        catalog: Catalog,
        health: HealthMonitor,
        progress: Progress,
        index: LogIndex,
        weights: Mapping[str, float],
        read_wait: float,
        stale_reads: str,
        follower: LogFollower | None = None,
        ignore_freshness: bool = False,
    ) -> None:
        """`follower`: given when other gateways append to the same store, whose writes a read must see too.
        `ignore_freshness`: the unsafe test setting; every read is served by any instance that is up, as if it
        depended on no write, so the history checker's own test can see it report stale reads."""
        self._members = members
        self._client = client
        self._catalog = catalog
        self._health = health
        self._progress = progress
        self._index = index
        self._weights = weights
        self._leader = Leader(weights)
        self._read_wait = read_wait
        self._stale_reads = stale_reads
        self._follower = follower
        self._ignore_freshness = ignore_freshness
        self._continuing: set[asyncio.Task[None]] = set()

    def _fresh(self, required: int, asked: AbstractSet[str] = frozenset()) -> list[str]:
        """Up instances that have applied `required`, best first, leaving out those already `asked`."""
        serving = self._members.serving
        fresh = fresh_first(
            self._health.states, self._progress.cursors, self._weights, required, self._leader.among, serving
        )
        return [i for i in fresh if i not in asked] if asked else fresh

    async def _choose(self, required: int, asked: AbstractSet[str] = frozenset()) -> tuple[list[str], int]:
        """Instances not yet `asked` to try in order, and by how many entries the first one lags (0 when fresh):
        fresh ones as soon as there are any (waiting up to `read_wait`), else stale ones as `stale_reads` says.
        Empty when no instance that is up is left to ask."""
        deadline = time.monotonic() + self._read_wait
        while True:
            fresh = self._fresh(required, asked)
            if fresh:
                return fresh, 0
            remaining = deadline - time.monotonic()
            if remaining <= 0 or all(i in asked for i in self._serving_up()):
                break
            await self._progress.changed(min(remaining, 0.05))
        candidates = [i for i in self._serving_up() if i not in asked]
        if not candidates and not asked:
            # none is up: one may be back before health has seen it
            candidates = [i for i in self._members.urls if i in self._members.serving]
        if not candidates:
            return [], 0
        if self._stale_reads == "refuse":
            raise RequestRejected(503, f"No instance has applied this read's writes (seq {required}) yet", "StaleRead")
        by_progress = sorted(candidates, key=lambda i: -self._progress.cursors.get(i, 0))
        return by_progress, max(0, required - self._progress.cursors.get(by_progress[0], 0))

    def _serving_up(self) -> list[str]:
        return [i for i in self._health.up_instances() if i in self._members.serving]

    async def _remapped(self, instance: str, route: Route, asked_by: str | None) -> bool:
        """After a 404 to a request that named the collection by `asked_by`: has it another id on this instance
        now (the instance rebuilt by another gateway, the collection re-created by `repair`)? Compared with the id
        the request was sent with, not with the cache: a concurrent read may have reloaded it meanwhile."""
        if not route.collection_uuid:
            return False
        await self._catalog.load()
        return self._catalog.instance_id(instance, route.collection_uuid) not in (asked_by, None)

    async def handle(
        self,
        route: Route,
        method: str,
        path: str,
        query: str,
        headers: HeaderPairs,
        body: bytes,
        *,
        fresh: bool = True,
    ) -> ReadResult:
        proven = True
        if self._ignore_freshness:
            fresh = False
        if fresh and self._follower is not None and not self._follower.fresh_enough():
            proven = await self._follower.catch_up()  # writes other gateways acknowledged count too
            if not proven and self._stale_reads == "refuse":
                raise RequestRejected(503, self._follower.why_unproven(), "StaleRead", retry_after=RETRY_AFTER_S)
        if not proven:
            # The store is unreachable: no cursor moves until it answers, so waiting for one is pointless. Read an
            # instance holding this gateway's own writes if one does, any instance that is up if none does; marked.
            fresh = bool(self._fresh(self._index.required_seq(route)))
        if route.op == "list_collections":
            result = await self._list_collections(route, path, query, headers, fresh=fresh)
        else:
            result = await self._read(route, method, path, query, headers, body, fresh=fresh)
        if not proven:
            result.stale_by = UNPROVEN
        return result

    async def _list_collections(
        self, route: Route, path: str, query: str, headers: HeaderPairs, *, fresh: bool
    ) -> ReadResult:
        """The client's page of the whole listing, in canonical-id order (see `listings`)."""
        asked = listings.window(query)
        if asked is None:
            return await self._read(route, "GET", path, query, headers, b"", fresh=fresh)
        models: list[Any] = []
        while True:
            part = f"limit={listings.PAGE}&offset={len(models)}"
            result = await self._read(route, "GET", path, part, headers, b"", fresh=fresh)
            if not result.upstream.ok:
                return result
            found = orjson.loads(result.body)
            models.extend(found)
            if len(found) < listings.PAGE:
                return ReadResult(
                    result.upstream, orjson.dumps(listings.page(models, *asked)), result.instance, result.stale_by
                )

    async def _read(
        self, route: Route, method: str, path: str, query: str, headers: HeaderPairs, body: bytes, *, fresh: bool
    ) -> ReadResult:
        required = self._index.required_seq(route) if fresh else 0
        order, stale_by = self._fresh(required), 0
        if not order:
            order, stale_by = await self._choose(required)  # wait a little for an applier, or read stale
        return await self._try(route, method, path, query, headers, body, required, order, stale_by, fresh=fresh)

    def forward_now(
        self,
        route: Route,
        method: str,
        path: str,
        query: str,
        headers: HeaderPairs,
        body: bytes,
        deliver: Delivered,
    ) -> bool:
        """The fast path of a fresh read: forward it at once on a free connection and `deliver` the result (or the
        exception) by callback, with no task in between. False, with nothing sent, when the read needs `handle`:
        a shared store to catch up with (this gateway not its sole appender), no fresh instance right now, an
        unmapped collection, no idle connection. An answer that needs more (failure, 5xx, a 404, ids to learn)
        continues in `_try`, in a task.
        """
        if route.op == "list_collections" or (self._follower is not None and not self._follower.fresh_enough()):
            return False
        required = 0 if self._ignore_freshness else self._index.required_seq(route)
        order = self._fresh(required)
        if not order:
            return False
        instance = order[0]
        asked_by = self._catalog.instance_id(instance, route.collection_uuid) if route.collection_uuid else None
        if route.collection_uuid and asked_by is None:
            return False
        state = self._health.state_of(instance)

        def answered(upstream: Upstream | None, error: InstanceError | None) -> None:
            state.request_ended()
            try:
                if (
                    upstream is not None
                    and upstream.status < 400
                    and not self._catalog.names_unknown_ids(instance, route.op, upstream.status, upstream.body)
                ):
                    deliver(self._result(instance, route, upstream))
                    self._health.mark_success(instance)
                    return
                first = upstream if upstream is not None else error
                retry = self._try(
                    route,
                    method,
                    path,
                    query,
                    headers,
                    body,
                    required,
                    [instance],
                    0,
                    fresh=True,
                    first=first,
                    first_asked_by=asked_by,
                )
                self._continue(retry, deliver)
            except Exception as exc:
                deliver(exc)

        sent = self._client.send_now(
            instance,
            method,
            self._catalog.path_for(instance, path, route.collection_uuid),
            query=query,
            headers=headers,
            body=body,
            answered=answered,
        )
        if sent:
            state.request_started()
        return sent

    def _continue(self, work: Coroutine[Any, Any, ReadResult], deliver: Delivered) -> None:
        async def run() -> None:
            try:
                result = await work
            except Exception as exc:
                deliver(exc)
                return
            deliver(result)

        task = asyncio.get_running_loop().create_task(run())
        self._continuing.add(task)
        task.add_done_callback(self._continuing.discard)

    async def _try(
        self,
        route: Route,
        method: str,
        path: str,
        query: str,
        headers: HeaderPairs,
        body: bytes,
        required: int,
        order: list[str],
        stale_by: int,
        *,
        fresh: bool,
        first: Upstream | InstanceError | None = None,
        first_asked_by: str | None = None,
    ) -> ReadResult:
        """Ask the instances in `order` until one answers; `first` is what the first one already answered. When
        none of them can, choose again among those not asked yet: the fresh instance that just died may have been
        the only one holding this read's writes, and another one is about to (or may be read stale).
        `first_asked_by`: the collection id the first request was sent with."""
        failure: Upstream | None = None
        missing: ReadResult | None = None  # a 404 for a collection the catalog knows: another instance may hold it
        missing_proven = False  # and one that had applied this read's writes said so too: the collection is gone
        errors: list[str] = []
        asked: set[str] = set()
        while order:
            for instance in order:
                asked.add(instance)
                outcome, first = first, None
                asked_by, first_asked_by = first_asked_by, None
                if outcome is None or isinstance(outcome, StaleConnection):
                    outcome, asked_by = await self._ask(instance, route, method, path, query, headers, body)
                if isinstance(outcome, InstanceError):
                    self._health.mark_failure(instance, str(outcome))
                    errors.append(str(outcome))
                    continue
                upstream = outcome
                if upstream.status >= 500:
                    if upstream.status in _UNAVAILABLE:
                        self._health.mark_failure(instance, f"answered {upstream.status}")
                    failure = upstream
                    continue
                self._health.mark_success(instance)
                if upstream.status == 404 and await self._remapped(instance, route, asked_by):
                    return await self.handle(route, method, path, query, headers, body, fresh=fresh)
                if upstream.status == 404 and self._holds_elsewhere(route):
                    # being rebuilt (by another gateway, say), it has not the collection yet: ask the next one
                    missing = missing or self._result(instance, route, upstream, stale_by)
                    missing_proven = missing_proven or self._progress.cursors.get(instance, 0) >= required
                    continue
                if self._catalog.names_unknown_ids(instance, route.op, upstream.status, upstream.body):
                    await self._catalog.load()
                return self._result(instance, route, upstream, stale_by)
            if missing is not None and (missing_proven or self._all_holders_asked(route, asked)):
                return missing  # it is gone (deleted, say), as the first one said
            if failure is not None and failure.status not in _UNAVAILABLE:
                break  # an instance answered with an error of its own making: the others would too
            order, stale_by = await self._choose(required, asked)
        if failure is not None:
            return ReadResult(failure, failure.body, "", stale_by)
        if missing is not None:
            # Only instances that lag lack it, and those holding it are down: a 404 would tell the client that a
            # collection which exists is gone.
            uuid = route.collection_uuid or ""
            log.warning(
                "read of collection %s answered 503: %s said 404 (its id there %s, applied up to %s, the read needs %d)"
                " and the instances holding the collection are down",
                uuid,
                missing.instance,
                self._catalog.instance_id(missing.instance, uuid),
                self._progress.cursors.get(missing.instance),
                required,
            )
            raise RequestRejected(
                503,
                f"No instance holding collection {uuid} is up; those up have not caught up",
                "ServiceUnavailable",
                retry_after=RETRY_AFTER_S,
            )
        raise RequestRejected(503, "No instance could answer: " + "; ".join(errors), "ServiceUnavailable")

    def _holds_elsewhere(self, route: Route) -> bool:
        """Is the collection this read names one the catalog maps on some instance (so a 404 may be one
        instance's alone)?"""
        return route.collection_uuid is not None and self._catalog.is_known(route.collection_uuid)

    def _all_holders_asked(self, route: Route, asked: AbstractSet[str]) -> bool:
        """Has every serving instance the catalog maps this read's collection on been asked?"""
        uuid = route.collection_uuid
        return uuid is not None and all(
            i in asked for i in self._members.serving if self._catalog.instance_id(i, uuid) is not None
        )

    def _result(self, instance: str, route: Route, upstream: Upstream, stale_by: int = 0) -> ReadResult:
        """The instance's answer, its collection ids made canonical."""
        canonical = self._catalog.canonical_body(instance, route.op, upstream.status, upstream.body)
        return ReadResult(upstream, canonical, instance, stale_by)

    async def _ask(
        self, instance: str, route: Route, method: str, path: str, query: str, headers: HeaderPairs, body: bytes
    ) -> tuple[Upstream | InstanceError, str | None]:
        """The instance's answer, and the id it was asked for the collection by (None: no collection, or unmapped)."""
        uuid = route.collection_uuid
        if uuid and self._catalog.instance_id(instance, uuid) is None:
            await self._catalog.load()  # another gateway's applier may have mapped it
        asked_by = self._catalog.instance_id(instance, uuid) if uuid else None
        state = self._health.state_of(instance)
        state.request_started()
        try:
            answer = await self._client.request(
                instance,
                method,
                self._catalog.path_for(instance, path, route.collection_uuid),
                query=query,
                headers=headers,
                body=body,
                idempotent=True,  # a read, POST get/query/search too
            )
        except InstanceError as exc:
            return exc, asked_by
        finally:
            state.request_ended()
        return answer, asked_by
