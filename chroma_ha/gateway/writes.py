"""The write path: check, log durably, wake the appliers, wait for the ack policy, answer as Chroma did.

Nothing is acknowledged that the log has not taken. When the store fails, the write is refused (503, with
`Retry-After`) and says whether it is known not to be logged. A store that does not answer within `STORE_WAIT_S`
(an append, or its head asked beside it) is unreachable: clients get their refusal then, not after the store's own
timeout; and until it answers again, each write asks it first (its head, which logs nothing).

With `ack=log` and no instance up, a write is answered as Chroma answers it where that answer is known without an
instance (see `known_answers`), and otherwise refused before it is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson

from ..catalog.ids import Catalog
from ..cluster.health import HealthMonitor
from ..cluster.membership import Members
from ..cluster.progress import Progress
from ..cluster.stats import WriteStats
from ..errors import RequestRejected, StoreError
from ..store import EntryKey, LogStore, NewEntry, Outcome
from ..upstream.client import HeaderPairs
from .consistency import RETRY_AFTER_S, LogIndex
from .known_answers import CATALOG_ANSWERS, DATA_ANSWERS, CollectionModels
from .routes import Route
from .validation import parse_body

log = logging.getLogger(__name__)
T = TypeVar("T")

# Client headers kept with a logged write, so the applier sends them to every instance. Never a credential: the
# log keeps who wrote an entry (its author), and the appliers authenticate with the gateway's own credentials.
LOGGED_HEADERS = frozenset({"content-type", "x-chroma-tenant"})
STORE_WAIT_S = 1.0  # how long a write waits for the store to confirm an append, or to answer a question beside it
NEEDS_AN_INSTANCE = (
    "Creating a collection needs an instance: its answer (the collection's configuration and schema) comes from "
    "Chroma, and no instance is up. Nothing was logged; retry once an instance is back. A get_or_create of a "
    "collection the gateway already knows is answered while every instance is down."
)


@dataclass(frozen=True)
class WriteResult:
    status: int
    body: bytes
    seq: int


class WritePath:
    def __init__(
        self,
        *,
        store: LogStore,
        catalog: Catalog,
        progress: Progress,
        health: HealthMonitor,
        members: Members,
        index: LogIndex,
        ack: str,
        write_timeout: float,
        poll_interval: float,
        stats: WriteStats,
        expander: DeleteExpander | None = None,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._progress = progress
        self._health = health
        self._members = members
        self._index = index
        self._ack = ack
        self._timeout = write_timeout
        self._poll = poll_interval
        self._expander = expander
        self._stats = stats
        self._label = store_label(store)
        self._models = CollectionModels(store)
        self._store_failure: str | None = None  # why the store last failed a write; None once it answers again
        self._probe: asyncio.Future[int] | None = None
        self._probe_since = 0.0

    async def handle(
        self, route: Route, method: str, path: str, query: str, headers: HeaderPairs, body: bytes, *, author: str = ""
    ) -> WriteResult:
        """`author`: the name of the token that made the write, logged with it ("" when auth is off)."""
        payload = parse_body(route.op, body)
        if payload is not None:
            # logged as parsed: an instance applying the entry alone, and one applying it merged into a batch,
            # see the same request (a duplicated key, say, cannot be refused by one and taken by the other)
            body = orjson.dumps(payload)
        await self._store_answers()
        canonical = route.collection_uuid
        if canonical is not None and not await self._known(canonical):
            raise RequestRejected(404, f"Collection [{canonical}] does not exist.", "NotFoundError")
        known: tuple[int, bytes] | None = None
        if self._ack == "log" and not self._health.up_instances():
            known = await self._answer_without_instances(route, payload)
            if known is None:
                raise RequestRejected(503, NEEDS_AN_INSTANCE, "ServiceUnavailable", retry_after=RETRY_AFTER_S)
        extra: dict[str, object] = {}
        created = str(uuid.uuid4()) if route.op == "create_collection" else None
        if created is not None:
            extra["canonical_id"] = created
        if route.op == "delete" and self._expander is not None and payload is not None and canonical:
            extra.update(await self._expander.expand(canonical, payload, route=route, headers=headers))
        entry = NewEntry(
            op=route.op,
            method=method,
            path=path,
            body=body,
            query=query,
            headers=logged_headers(headers),
            collection_id=canonical,
            scope=_scope(route, payload),
            extra=extra,
            author=author,
        )
        seq = await self._append(entry, created)
        if self._ack == "log":
            known = known or DATA_ANSWERS.get(route.op)
            if known is not None:
                return WriteResult(*known, seq)
        outcome = await self._wait(seq)
        if outcome is None:
            return await self._without_outcome(route, payload, seq)
        self._models.learn(route, payload, seq, outcome.status, outcome.body)
        return WriteResult(outcome.status, outcome.body, seq)

    async def _without_outcome(self, route: Route, payload: dict[str, Any] | None, seq: int) -> WriteResult:
        """A logged write whose ack policy was not met: answered without an instance when every one went down while
        it waited under `ack=log` and its answer is known; else a 503 `WriteLogged` saying why."""
        if self._ack == "log" and not self._health.up_instances():
            known = await self._answer_once_logged(route, payload)
            if known is not None:
                return WriteResult(*known, seq)
            why = "every instance went down before one could answer it, and only Chroma can answer it (with the new "
            raise _logged_503(seq, why + "collection's model)", retry_after=RETRY_AFTER_S)
        if not await self._answers():  # what the instances did is in the store, which does not answer
            why = f"the write-ahead log ({self._label}) is unreachable ({self._store_failure}), so whether an instance"
            raise _logged_503(seq, why + " applied it cannot be learned", retry_after=RETRY_AFTER_S)
        why = f"the '{self._ack}' ack policy was not met: no instance made progress on it for {self._timeout:g}s"
        raise _logged_503(seq, why)

    async def _answer_without_instances(self, route: Route, payload: dict[str, Any] | None) -> tuple[int, bytes] | None:
        """Chroma's answer to this write, when it is known without asking an instance (`known_answers`)."""
        known = DATA_ANSWERS.get(route.op) or CATALOG_ANSWERS.get(route.op)
        if known is None and route.op == "create_collection":
            model = await self._guarded(self._models.answer(route, payload))
            known = (200, model) if model is not None else None
        return known

    async def _answer_once_logged(self, route: Route, payload: dict[str, Any] | None) -> tuple[int, bytes] | None:
        """The same, for a write already logged: a store that fails the question leaves the answer unknown."""
        try:
            return await self._answer_without_instances(route, payload)
        except RequestRejected:
            return None

    # --- the store ------------------------------------------------------------------------------------------

    async def _append(self, entry: NewEntry, created: str | None) -> int:
        """Log the entry; a 503 when the store fails it, or neither confirms it nor answers a question beside it
        within `STORE_WAIT_S` each, or takes past the write timeout: the append goes on then, and may still log
        it (the answer says so). A store that answers, busy with a large append, is waited for."""
        started = time.monotonic()
        attempt = asyncio.ensure_future(self._store.append([entry]))
        try:
            await asyncio.wait([attempt], timeout=min(STORE_WAIT_S, self._timeout))
            if not attempt.done() and not await self._answers():
                raise TimeoutError
            [seq] = await asyncio.wait_for(asyncio.shield(attempt), started + self._timeout - time.monotonic())
        except StoreError as exc:
            self._store_failure = str(exc)
            raise self._unreachable(str(exc)) from exc
        except TimeoutError:
            waited = time.monotonic() - started
            self._store_failure = f"an append was not confirmed within {waited:.1f}s"
            attempt.add_done_callback(functools.partial(self._appended_late, entry, created))
            raise RequestRejected(
                503,
                f"The write-ahead log ({self._label}) is unreachable: it did not confirm the append within "
                f"{waited:.1f}s. The write is not acknowledged; should the log still take it, it is applied. "
                "Retrying add, upsert or delete with the same ids is harmless.",
                "ServiceUnavailable",
                retry_after=RETRY_AFTER_S,
            ) from None
        self._store_failure = None
        self._logged(seq, entry, created)
        return seq

    def _appended_late(self, entry: NewEntry, created: str | None, attempt: asyncio.Future[list[int]]) -> None:
        if attempt.cancelled() or attempt.exception() is not None:
            return  # not logged: as the client was told it might not be
        [seq] = attempt.result()
        log.warning("an append answered 503 for want of confirmation was logged after all, as seq %d", seq)
        self._store_failure = None
        self._logged(seq, entry, created)

    def _logged(self, seq: int, entry: NewEntry, created: str | None) -> None:
        self._stats.appended_entries += 1
        self._stats.appended_bytes += len(entry.body)
        self._stats.deletes_converted += "expanded_from" in entry.extra
        self._index.note(EntryKey(seq, time.time(), entry.op, entry.collection_id, entry.scope, created))

    async def _store_answers(self) -> None:
        """After the store failed a write, ask it before logging the next one: refused at once if it does not
        answer (nothing logged)."""
        if self._store_failure is not None and not await self._answers():
            raise self._unreachable(self._store_failure)

    async def _answers(self) -> bool:
        """Does the store answer a question that logs nothing (its head) within `STORE_WAIT_S`? One question at a
        time, shared by every write: one still unanswered past that is a no at once. Sets `_store_failure`."""
        probe = self._probe
        if probe is None or probe.done():
            probe = self._probe = asyncio.ensure_future(self._store.head())
            probe.add_done_callback(self._probed)
            self._probe_since = time.monotonic()
        wait = self._probe_since + STORE_WAIT_S - time.monotonic()
        if wait > 0 and not probe.done():
            await asyncio.wait([probe], timeout=wait)
        if not probe.done():
            self._store_failure = f"it has not answered for {time.monotonic() - self._probe_since:.1f}s"
            return False
        return self._probed(probe)

    def _probed(self, probe: asyncio.Future[int]) -> bool:
        failure = StoreError("the question was cancelled") if probe.cancelled() else probe.exception()
        self._store_failure = None if failure is None else str(failure) or type(failure).__name__
        return failure is None

    async def _known(self, canonical: str) -> bool:
        return await self._guarded(self._catalog.refresh_if_unknown(canonical))

    async def _guarded(self, asking: Awaitable[T]) -> T:
        """A question to the store before the entry is logged (it changes nothing, so it may be abandoned): a 503
        saying nothing was logged when the store fails it or takes longer than the write timeout."""
        try:
            return await asyncio.wait_for(asking, self._timeout)
        except StoreError as exc:
            self._store_failure = str(exc)
            raise self._unreachable(str(exc)) from exc
        except TimeoutError:
            self._store_failure = f"no answer within {self._timeout:g}s"
            raise self._unreachable(self._store_failure) from None

    def _unreachable(self, reason: str) -> RequestRejected:
        return RequestRejected(
            503,
            f"The write-ahead log ({self._label}) is unreachable: {reason}; nothing was logged, retry",
            "ServiceUnavailable",
            retry_after=RETRY_AFTER_S,
        )

    # --- the ack policy -------------------------------------------------------------------------------------

    async def _wait(self, seq: int) -> Outcome | None:
        """Until the ack policy is met, or no instance that is up has made progress for the write timeout, or the
        store stops answering (every outcome is committed through it, so none can arrive): a write an instance is
        busy applying is waited for, as a direct server makes its client wait."""
        started = last_progress = store_asked = time.monotonic()
        while True:
            within = last_progress + self._timeout - time.monotonic()
            outcome = self._progress.outcome(seq) or await self._settled_elsewhere(seq, within)
            if outcome is not None and self._policy_met(seq):
                return outcome
            if self._ack == "log" and not self._health.up_instances():
                return None  # no instance will answer before one is back: the caller answers without them
            now = time.monotonic()
            if now - store_asked >= STORE_WAIT_S:
                if not await self._answers():
                    return None
                now = store_asked = time.monotonic()
            if any(
                self._progress.progressing(i, since=started, window=self._timeout) for i in self._health.up_instances()
            ):
                last_progress = now
            remaining = last_progress + self._timeout - now
            if remaining <= 0:
                return None
            await self._progress.changed(min(remaining, self._poll))

    async def _settled_elsewhere(self, seq: int, within: float) -> Outcome | None:
        """Outcomes recorded by an applier in another gateway (shared store), or pruned from memory; None while
        the store does not tell within `within` seconds (the write is logged: it waits on for its outcome)."""
        if any(cursor >= seq for cursor in self._progress.cursors.values()):
            with contextlib.suppress(StoreError, TimeoutError):
                return await asyncio.wait_for(self._store.outcome(seq), max(within, self._poll))
        return None

    def _policy_met(self, seq: int) -> bool:
        if self._ack != "all":
            return True
        # the members that serve reads: a joining one catching up would hold every write back until it has
        up = [i for i in self._health.up_instances() if i in self._members.serving]
        return bool(up) and all(self._progress.cursors.get(i, 0) >= seq for i in up)


def _logged_503(seq: int, why: str, *, retry_after: int | None = None) -> RequestRejected:
    return RequestRejected(
        503,
        f"The write is logged as seq {seq} and will still be applied, but {why}. Retrying add, upsert or delete "
        "with the same ids is harmless.",
        "WriteLogged",
        retry_after=retry_after,
    )


def _scope(route: Route, payload: dict[str, object] | None) -> str:
    if route.op == "create_tenant" and payload is not None:
        return str(payload.get("name", ""))
    if route.op == "create_database" and payload is not None:
        return f"{route.tenant}/{payload.get('name', '')}"
    return route.scope


class DeleteExpander(Protocol):
    """Document-level deletion: resolves a delete by ids into every record of the same documents."""

    async def expand(
        self, collection_id: str, payload: dict[str, object], *, route: Route, headers: HeaderPairs
    ) -> dict[str, object]: ...


def logged_headers(headers: HeaderPairs) -> dict[str, str]:
    """The client headers kept with a logged write (tenant, content type), for the applier to send."""
    kept = ((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers)
    return {k: v for k, v in kept if k in LOGGED_HEADERS}


def store_label(store: LogStore) -> str:
    """How a message names the store: the SQLite file, or the PostgreSQL host and database; never a user or a
    password. Read from what the backends expose (`path`, `dsn`), as the write path is given the store only."""
    dsn = getattr(store, "dsn", None)
    if isinstance(dsn, str):
        try:
            parts = urlsplit(dsn)
            host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            return "PostgreSQL"
        return f"PostgreSQL {host}{port}/{parts.path.lstrip('/')}"
    path = getattr(store, "path", None)
    if isinstance(path, str):
        return f"SQLite {path}"
    return type(store).__name__


def rejection_body(error: RequestRejected) -> bytes:
    return orjson.dumps({"error": error.error, "message": error.message})
