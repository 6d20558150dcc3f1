"""The write path: check, log durably, wake the appliers, wait for the ack policy, answer as Chroma did."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Protocol

import orjson

from ..catalog.ids import Catalog
from ..cluster.health import HealthMonitor
from ..cluster.progress import Progress
from ..cluster.stats import WriteStats
from ..errors import RequestRejected
from ..store import EntryKey, LogStore, NewEntry, Outcome
from ..upstream.client import HeaderPairs
from .consistency import LogIndex
from .routes import Route
from .validation import parse_body

# Client headers kept with a logged write, so the applier sends them to every instance (auth included).
LOGGED_HEADERS = frozenset({"authorization", "x-chroma-token", "content-type", "x-chroma-tenant"})
# What Chroma answers for data writes, used by the `log` ack policy before any instance has applied them.
_LOGGED_ANSWERS: dict[str, tuple[int, bytes]] = {
    "add": (201, b"{}"),
    "upsert": (200, b"{}"),
    "update": (200, b"{}"),
    "delete": (200, b"{}"),
}


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
        self._index = index
        self._ack = ack
        self._timeout = write_timeout
        self._poll = poll_interval
        self._expander = expander
        self._stats = stats

    async def handle(
        self, route: Route, method: str, path: str, query: str, headers: HeaderPairs, body: bytes
    ) -> WriteResult:
        payload = parse_body(route.op, body)
        if payload is not None:
            # logged as parsed: an instance applying the entry alone, and one applying it merged into a batch,
            # see the same request (a duplicated key, say, cannot be refused by one and taken by the other)
            body = orjson.dumps(payload)
        canonical = route.collection_uuid
        if canonical is not None and not await self._catalog.refresh_if_unknown(canonical):
            raise RequestRejected(404, f"Collection [{canonical}] does not exist.", "NotFoundError")
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
        )
        [seq] = await self._store.append([entry])
        self._stats.appended_entries += 1
        self._stats.appended_bytes += len(body)
        self._stats.deletes_converted += "expanded_from" in extra
        self._index.note(EntryKey(seq, time.time(), route.op, canonical, entry.scope, created))
        if self._ack == "log" and route.op in _LOGGED_ANSWERS:
            status, answer = _LOGGED_ANSWERS[route.op]
            return WriteResult(status, answer, seq)
        outcome = await self._wait(seq)
        if outcome is None:
            raise RequestRejected(
                503,
                f"The write is logged as seq {seq} and will still be applied, but the '{self._ack}' ack "
                f"policy was not met: no instance made progress on it for {self._timeout:g}s. Retrying add, "
                "upsert or delete with the same ids is harmless.",
                "WriteLogged",
            )
        return WriteResult(outcome.status, outcome.body, seq)

    async def _wait(self, seq: int) -> Outcome | None:
        """Until the ack policy is met, or no instance that is up has made progress for the write timeout: a write
        an instance is busy applying is waited for, as a direct server makes its client wait."""
        started = last_progress = time.monotonic()
        while True:
            outcome = self._progress.outcome(seq) or await self._settled_elsewhere(seq)
            if outcome is not None and self._policy_met(seq):
                return outcome
            now = time.monotonic()
            if any(
                self._progress.progressing(i, since=started, window=self._timeout) for i in self._health.up_instances()
            ):
                last_progress = now
            remaining = last_progress + self._timeout - now
            if remaining <= 0:
                return None
            await self._progress.changed(min(remaining, self._poll))

    async def _settled_elsewhere(self, seq: int) -> Outcome | None:
        """Outcomes recorded by an applier in another gateway (shared store), or pruned from memory."""
        if any(cursor >= seq for cursor in self._progress.cursors.values()):
            return await self._store.outcome(seq)
        return None

    def _policy_met(self, seq: int) -> bool:
        if self._ack != "all":
            return True
        up = self._health.up_instances()
        return bool(up) and all(self._progress.cursors.get(i, 0) >= seq for i in up)


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
    """The client headers kept with a logged write (auth, tenant, content type), for the applier to send."""
    kept = ((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers)
    return {k: v for k, v in kept if k in LOGGED_HEADERS}


def rejection_body(error: RequestRejected) -> bytes:
    return orjson.dumps({"error": error.error, "message": error.message})
