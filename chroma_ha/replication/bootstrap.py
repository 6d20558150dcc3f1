"""Bootstrap: bring a new or wiped instance up when the log no longer holds everything it needs.

Called by the instance's applier (while it holds itself paused) when the instance is new or wiped and the log
starts after seq 1. It copies every tenant, database and collection from an in-sync source instance, then the
applier resumes from the log at the returned seq S.

Why S is exact: the copy of the catalog and the listing of every collection's ids happen while the source's applier
is paused, so S is the source's cursor and the listed ids are exactly the records at S. The records are then
fetched by id, in pages, with the source applying again: a record changed after S is copied in a later state, one
deleted after S is missing, one added after S is not listed. Replaying the log from S repairs all three, because
replay is idempotent (an add of an existing id changes nothing, metadata updates set keys, deletes of missing ids
succeed). Fetching by id, not by offset, keeps a concurrent delete from shifting a page over a record.

While it runs, the target's cursor in the store is 0 with a placeholder incarnation: pruning holds back, and a
gateway that crashes mid-copy finds an unknown incarnation and starts the bootstrap again (the target is cleared
first, so a half copy never survives). Progress is in `/wal/status` under `bootstrap`.

Limitation: the source must be an instance whose applier runs in this gateway (it is paused); with several gateways
on PostgreSQL, a bootstrap waits until such a source exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..catalog.ids import Catalog
from ..catalog.inventory import ALL_FIELDS, ChromaInstance, CollectionInfo, tenants_of
from ..cluster.health import HealthMonitor
from ..cluster.progress import Progress
from ..errors import InstanceError
from ..store import IdMapping, LogStore
from ..upstream.incarnation import ensure_marker
from ..upstream.transport import Transport

if TYPE_CHECKING:
    from .applier import Applier

log = logging.getLogger(__name__)

BOOTSTRAPPING = "bootstrapping"  # the incarnation recorded while a copy runs: never an instance's marker id
PAGE_SIZE = 500
ID_PAGE_SIZE = 5000
SOURCE_LOCK_TIMEOUT_S = 60.0
_UNUSABLE_STATES = frozenset({"starting", "bootstrapping", "standby", "down"})


@dataclass
class BootstrapStatus:
    state: str = "starting"
    source: str = ""
    start_seq: int | None = None
    collections_total: int = 0
    collections_done: int = 0
    records_total: int = 0
    records_copied: int = 0
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Candidate:
    instance: str
    up: bool
    state: str
    verified: bool  # its applier has checked its incarnation
    cursor: int


def choose_source(target: str, candidates: list[Candidate]) -> str | None:
    """The most advanced instance that is up and known to be the instance its cursor belongs to. Pure."""
    usable = [c for c in candidates if c.instance != target and c.up and c.verified and c.state not in _UNUSABLE_STATES]
    if not usable:
        return None
    return max(usable, key=lambda c: c.cursor).instance  # max keeps the first of equals: the configured order


@dataclass(frozen=True)
class _Copy:
    source: CollectionInfo
    target: CollectionInfo
    ids: list[str]


class Bootstrapper:
    def __init__(
        self,
        *,
        store: LogStore,
        catalog: Catalog,
        client: Transport,
        health: HealthMonitor,
        progress: Progress,
        sources: Mapping[str, Applier],
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._client = client
        self._health = health
        self._progress = progress
        self._sources = sources  # every instance's applier: the copy's source is paused through its own
        self._page_size = page_size
        self.status: dict[str, BootstrapStatus] = {}

    def status_document(self) -> dict[str, Any]:
        return {instance: status.as_dict() for instance, status in self.status.items()}

    async def __call__(self, target: str) -> int:
        status = self.status[target] = BootstrapStatus()
        try:
            await self._store.set_cursor(target, 0, BOOTSTRAPPING)
            self._progress.set_cursor(target, 0)
            start = await self._bootstrap(target, status)
        except BaseException as exc:
            status.state, status.error, status.finished_at = "failed", str(exc) or type(exc).__name__, time.time()
            log.error("bootstrap of %s failed: %s", target, status.error)
            raise
        status.state, status.finished_at = "done", time.time()
        log.warning(
            "bootstrap of %s done: %d records from %s, resuming at seq %d",
            target,
            status.records_copied,
            status.source,
            start,
        )
        return start

    def _choose(self, target: str) -> str | None:
        candidates = [
            Candidate(i, self._health.is_up(i), a.state, a.incarnation is not None, self._progress.cursors.get(i, 0))
            for i, a in self._sources.items()
        ]
        return choose_source(target, candidates)

    async def _bootstrap(self, target: str, status: BootstrapStatus) -> int:
        source = self._choose(target)
        if source is None:
            raise InstanceError(target, "bootstrap: no up, in-sync instance to copy from yet", retryable=True)
        status.source = source
        src, dst = ChromaInstance(self._client, source), ChromaInstance(self._client, target)
        tenants = tenants_of(await self._store.scopes())
        status.state = "clearing target"
        await _clear(dst, tenants)
        status.state = "waiting for source"
        source_applier = self._sources[source]
        try:
            async with source_applier.pause(SOURCE_LOCK_TIMEOUT_S) as start:
                marker = await ensure_marker(self._client, source, create=False)
                known = source_applier.incarnation
                if marker is None or known is None or marker.id != known.id:
                    raise InstanceError(target, f"bootstrap: {source} was replaced meanwhile", retryable=True)
                status.start_seq, status.state = start, "copying collections"
                copies = await self._copy_catalog(src, dst, tenants, status)
        except TimeoutError:
            raise InstanceError(target, f"bootstrap: {source} stayed busy", retryable=True) from None
        status.state = "copying records"
        for copy in copies:
            await self._copy_records(src, dst, copy, status)
            status.collections_done += 1
        return start

    async def _copy_catalog(
        self, src: ChromaInstance, dst: ChromaInstance, tenants: list[str], status: BootstrapStatus
    ) -> list[_Copy]:
        copies: list[_Copy] = []
        mappings: list[IdMapping] = []
        for tenant in tenants:
            if not await src.tenant_exists(tenant):
                continue
            await dst.create_tenant(tenant)
            databases = await src.databases(tenant)
            for extra in set(await dst.databases(tenant)) - set(databases):
                await dst.delete_database(tenant, extra)
            for database in databases:
                await dst.create_database(tenant, database)
                for collection in await src.collections(tenant, database):
                    created = await dst.create_collection(collection)
                    canonical = self._catalog.canonical_id(src.url, collection.id)
                    if canonical is not None:
                        mappings.append(IdMapping(dst.url, canonical, created.id))
                    else:
                        log.warning("bootstrap: %s on %s is not in the catalog", collection.label, src.url)
                    ids = await src.all_ids(collection, ID_PAGE_SIZE)
                    copies.append(_Copy(collection, created, ids))
                    status.collections_total += 1
                    status.records_total += len(ids)
        await self._store.record_mappings(mappings)
        self._catalog.learn(mappings)
        return copies

    async def _copy_records(
        self, src: ChromaInstance, dst: ChromaInstance, copy: _Copy, status: BootstrapStatus
    ) -> None:
        for start in range(0, len(copy.ids), self._page_size):
            ids = copy.ids[start : start + self._page_size]
            page = await src.get(copy.source, ids=ids, include=list(ALL_FIELDS))
            if page is None:
                return  # deleted on the source after S: the log deletes it on the target too
            await dst.add(copy.target, page)
            status.records_copied += len(page)


async def _clear(instance: ChromaInstance, tenants: list[str]) -> None:
    """Remove every database and collection the target holds in the known tenants: it is rebuilt from scratch."""
    for tenant in tenants:
        if not await instance.tenant_exists(tenant):
            continue
        for database in await instance.databases(tenant):
            for collection in await instance.collections(tenant, database):
                await instance.delete_collection(collection)
