"""Bootstrap: bring a new or wiped instance up when the log no longer holds everything it needs.

Called by the instance's applier (while it holds itself paused) when the instance is new or wiped and the log
starts after seq 1. It copies every tenant, database and collection from an in-sync source instance, then the
applier resumes from the log at the returned seq S.

Why S is exact: the copy of the catalog and the listing of every collection's ids happen while the source's applier
is paused, so S is the source's cursor and the listed ids are exactly the records at S. The listing pages with
limit/offset, and that order is stable: the source takes writes only from its applier, which is paused, so no record
moves between two pages. The ids go to the store page by page (`bootstrap_plan`), never all into memory. The
records are then fetched by id, a page at a time, with the source applying again: a record changed after S is
copied in a later state, one deleted after S is missing, one added after S is not listed. Replaying the log from S
repairs all three, because replay is idempotent (an add of an existing id changes nothing, metadata updates set
keys, deletes of missing ids succeed). Fetching by id, not by offset, keeps a concurrent delete from shifting a
page over a record.

While it runs, the target's cursor in the store is 0 with a placeholder incarnation: pruning holds back. A gateway
that crashes mid-copy (or another gateway taking the instance over) finds the plan in the store and resumes after
the last page the target acknowledged, as long as the target and the source are the same instances (their markers)
and the source is still usable; otherwise the target is cleared and copied again. Progress is in `/wal/status`
under `bootstrap`.

Limitation: the source must be an instance whose applier runs in this gateway (it is paused); with several gateways
on PostgreSQL, a bootstrap waits until such a source exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..catalog.ids import Catalog
from ..catalog.inventory import ALL_FIELDS, ChromaInstance, tenants_of
from ..cluster.health import HealthMonitor
from ..cluster.progress import Progress
from ..errors import InstanceError, NoSource, StoreError
from ..store import IdMapping, LogStore
from ..upstream.incarnation import ensure_marker
from ..upstream.transport import Transport
from .bootstrap_plan import BOOTSTRAPPING, IdsPage, Pair, Plan, PlanBook, split

if TYPE_CHECKING:
    from .applier import Applier

log = logging.getLogger(__name__)

PAGE_SIZE = 500
ID_PAGE_SIZE = 5000
SOURCE_LOCK_TIMEOUT_S = 60.0
CURSOR_TOUCH_S = 60.0  # the placeholder cursor is rewritten this often, so retention sees the copy is alive
SOURCE_WAIT_S = 30.0  # how long a resumable copy waits for its source before it starts again from another
_UNUSABLE_STATES = frozenset({"starting", "bootstrapping", "standby", "down"})


@dataclass
class BootstrapStatus:
    state: str = "starting"
    source: str = ""
    start_seq: int | None = None
    collections_total: int = 0
    collections_done: int = 0  # those whose every page the target holds
    records_total: int = 0
    records_copied: int = 0  # by this gateway, in this run
    pages_total: int = 0
    pages_copied: int = 0  # by this gateway, in this run
    resumed_after_page: int | None = None  # the page a crashed run had reached, when this run resumed it
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
        self._waiting_since: dict[str, float] = {}

    def status_document(self) -> dict[str, Any]:
        return {instance: status.as_dict() for instance, status in self.status.items()}

    async def __call__(self, target: str) -> int:
        status = self.status[target] = BootstrapStatus()
        book = PlanBook(self._store, target)
        await self._store.set_cursor(target, 0, BOOTSTRAPPING)
        keeping = asyncio.create_task(self._keep_holding(target), name=f"bootstrap-cursor {target}")
        try:
            self._progress.set_cursor(target, 0)
            found = await book.load()
            resumable = found is not None and await self._resumable(target, found[0])
            if found is not None and resumable:
                plan, position = found
                await self._resume(target, plan, position, status)
            else:
                plan, position = await self._plan(target, book, status), 0
            await self._copy_records(plan, book, position, status)
            await book.drop()
        except BaseException as exc:
            # a retryable failure (no source yet, a source to wait for) is tried again by the applier
            retried = isinstance(exc, InstanceError) and exc.retryable
            status.state, status.error = "retrying" if retried else "failed", str(exc) or type(exc).__name__
            status.finished_at = None if retried else time.time()
            log.error("bootstrap of %s failed: %s", target, status.error)
            raise
        finally:
            keeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeping
        status.state, status.finished_at = "done", time.time()
        log.warning(
            "bootstrap of %s done: %d records in %d pages from %s, resuming at seq %d",
            target,
            status.records_copied,
            status.pages_copied,
            status.source,
            plan.start_seq,
        )
        return plan.start_seq

    async def _keep_holding(self, target: str) -> None:
        """The placeholder cursor, written now and again every `CURSOR_TOUCH_S`: retention releases a cursor that
        has not moved for `rebuild_after`, and a copy that long must keep the log after S, which it resumes from."""
        while True:
            await asyncio.sleep(CURSOR_TOUCH_S)
            try:
                await self._store.set_cursor(target, 0, BOOTSTRAPPING)
            except StoreError as exc:
                log.warning("bootstrap of %s: could not rewrite its cursor: %s", target, exc)

    def _choose(self, target: str) -> str | None:
        candidates = [
            Candidate(i, self._health.is_up(i), a.state, a.incarnation is not None, self._progress.cursors.get(i, 0))
            for i, a in self._sources.items()
        ]
        return choose_source(target, candidates)

    # --- a new plan: clear the target, copy the catalog and list the ids at S, the source paused -------------

    async def _plan(self, target: str, book: PlanBook, status: BootstrapStatus) -> Plan:
        source = self._choose(target)
        if source is None:
            raise NoSource(target)
        status.source = source
        target_marker = await ensure_marker(self._client, target, create=False)
        if target_marker is None:
            raise InstanceError(target, "bootstrap: the target lost its marker", retryable=True)
        await book.drop()
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
                pairs = await self._copy_catalog(src, dst, tenants, status)
                status.state = "listing records"
                pages, records = await self._list_ids(src, pairs, book)
                plan = Plan(source, marker.id, target_marker.id, start, tuple(pairs), pages, records)
                await book.commit(plan)
        except TimeoutError:
            raise InstanceError(target, f"bootstrap: {source} stayed busy", retryable=True) from None
        status.pages_total, status.records_total = pages, records
        return plan

    async def _copy_catalog(
        self, src: ChromaInstance, dst: ChromaInstance, tenants: list[str], status: BootstrapStatus
    ) -> list[Pair]:
        pairs: list[Pair] = []
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
                    if canonical is None:
                        log.warning("bootstrap: %s on %s is not in the catalog", collection.label, src.url)
                    pairs.append(Pair(collection, created, canonical))
                    status.collections_total += 1
        await self._remember(dst.url, pairs)
        return pairs

    async def _list_ids(self, src: ChromaInstance, pairs: list[Pair], book: PlanBook) -> tuple[int, int]:
        """Every collection's ids at S into the store, in the source's order, in pages of `page_size` (the last
        of a collection shorter); (pages, records). At most one listing request's ids are held at a time."""
        pages = records = 0
        for index, pair in enumerate(pairs):
            held: list[str] = []
            async for listed in src.pages(pair.source, ID_PAGE_SIZE, include=()):
                held.extend(listed.ids)
                records += len(listed.ids)
                whole = len(held) - len(held) % self._page_size
                for ids in split(held[:whole], self._page_size):
                    pages += 1
                    await book.add_ids(IdsPage(pages, index, ids))
                held = held[whole:]
            if held:
                pages += 1
                await book.add_ids(IdsPage(pages, index, held))
        return pages, records

    async def _remember(self, target: str, pairs: list[Pair] | tuple[Pair, ...]) -> None:
        mappings = [IdMapping(target, p.canonical_id, p.target.id) for p in pairs if p.canonical_id is not None]
        await self._store.record_mappings(mappings)
        self._catalog.learn(mappings)

    # --- resuming a plan a crashed run left -------------------------------------------------------------------

    async def _resumable(self, target: str, plan: Plan) -> bool:
        """The same target and source as the plan's, the source usable and at or past S. A source not checked
        yet, or not up, is waited for (a retryable error) for `SOURCE_WAIT_S`; after that the copy starts again."""
        target_marker = await ensure_marker(self._client, target, create=False)
        if target_marker is None or target_marker.id != plan.target_incarnation:
            return self._start_again(target, "the target is not the instance the plan copied to")
        if await self._store.oldest_seq() > plan.start_seq + 1:
            return self._start_again(target, f"the log was pruned past seq {plan.start_seq}, where the copy starts")
        applier = self._sources.get(plan.source)
        if applier is None:
            return self._start_again(target, f"{plan.source} is no longer an instance")
        known = applier.incarnation
        if known is not None and known.id != plan.source_incarnation:
            return self._start_again(target, f"{plan.source} is not the instance it was")
        usable = self._health.is_up(plan.source) and applier.state not in _UNUSABLE_STATES
        if known is None or not usable or applier.cursor < plan.start_seq:
            waited = time.monotonic() - self._waiting_since.setdefault(target, time.monotonic())
            if waited > SOURCE_WAIT_S:
                return self._start_again(target, f"{plan.source} stayed unusable for {waited:.0f}s")
            raise InstanceError(target, f"bootstrap: waiting for {plan.source} to resume the copy", retryable=True)
        self._waiting_since.pop(target, None)
        return True

    def _start_again(self, target: str, reason: str) -> bool:
        self._waiting_since.pop(target, None)
        log.warning("bootstrap of %s starts again: %s", target, reason)
        return False

    async def _resume(self, target: str, plan: Plan, position: int, status: BootstrapStatus) -> None:
        status.source, status.start_seq, status.resumed_after_page = plan.source, plan.start_seq, position
        status.collections_total, status.pages_total, status.records_total = len(plan.pairs), plan.pages, plan.records
        await self._remember(target, plan.pairs)  # the applier forgot the target's ids before calling us
        log.warning("bootstrap of %s resumes after page %d of %d", target, position, plan.pages)

    # --- records, by id, the source applying again ------------------------------------------------------------

    async def _copy_records(self, plan: Plan, book: PlanBook, position: int, status: BootstrapStatus) -> None:
        status.state = "copying records"
        src = ChromaInstance(self._client, plan.source)
        dst = ChromaInstance(self._client, book.target)
        gone: set[int] = set()
        async for page in book.pages_after(position):
            status.collections_done = page.collection  # pages come in the order of the collections
            pair = plan.pairs[page.collection]
            if page.collection not in gone:
                records = await src.get(pair.source, ids=page.ids, include=list(ALL_FIELDS))
                if records is None:
                    gone.add(page.collection)  # deleted on the source after S: the log deletes it on the target too
                else:
                    await dst.add(pair.target, records)
                    status.records_copied += len(records)
            await book.reached(page.number)
            status.pages_copied += 1
        status.collections_done = len(plan.pairs)


async def _clear(instance: ChromaInstance, tenants: list[str]) -> None:
    """Remove every database and collection the target holds in the known tenants: it is rebuilt from scratch."""
    for tenant in tenants:
        if not await instance.tenant_exists(tenant):
            continue
        for database in await instance.databases(tenant):
            for collection in await instance.collections(tenant, database):
                await instance.delete_collection(collection)
