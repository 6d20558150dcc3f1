"""`repair`: bring a divergent target instance to the state of an in-sync reference, without racing the log.

How it stays out of the appliers' way (the gateway keeps running and serving):
1. Before looking at a collection it waits until the reference and the target have applied the whole log
   (`LogWatch.wait_drained`), so both show the same point of the log.
2. It compares the collection (inventory, then one digest per record id) and fixes the target directly: adds what
   is missing, deletes what is extra, deletes and re-adds what differs (an upsert would merge metadata, not
   replace it), creates, re-creates or deletes the collection, and records the target's collection id in the
   store when it changed (the applier learns it on its next write there).
3. Afterwards it checks whether any entry logged since step 1 may have touched that collection. If one did, its
   writes and ours may have crossed on the target, so the collection is compared and fixed again, from step 1,
   up to `attempts` times. Entries of other collections do not matter, so a busy gateway does not stall repair.

`dry_run` does steps 1 and 2 without writing anything and lists the actions it would take.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..catalog.drain import LogWatch
from ..errors import ChromaHAError
from ..store import IdMapping, LogStore
from .compare import RecordDiff, diff_records, page_digests
from .inventory import ALL_FIELDS, ChromaInstance, CollectionInfo
from .survey import NoTracker, Tracker, confirm_changed

DEFAULT_ATTEMPTS = 5
DEFAULT_PAGE = 500


@dataclass(frozen=True)
class Action:
    kind: str
    where: str
    count: int = 0

    def describe(self) -> str:
        return f"{self.kind} {self.where}" + (f" ({self.count} records)" if self.count else "")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "where": self.where, "count": self.count}


@dataclass
class RepairResult:
    target: str
    reference: str
    actions: list[Action] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


class RepairFailed(ChromaHAError):
    pass


class Repair:
    def __init__(
        self,
        reference: ChromaInstance,
        target: ChromaInstance,
        *,
        store: LogStore,
        watch: LogWatch,
        dry_run: bool = False,
        drain_timeout: float = 60.0,
        attempts: int = DEFAULT_ATTEMPTS,
        page_size: int = DEFAULT_PAGE,
        tracker: Tracker | None = None,
    ) -> None:
        self.ref, self.target = reference, target
        self._store = store
        self._watch = watch
        self._dry = dry_run
        self._drain_timeout = drain_timeout
        self._attempts = attempts
        self._page = page_size
        self._tracker = tracker or NoTracker()
        self.result = RepairResult(target.url, reference.url)

    async def run(self, tenants: Sequence[str]) -> RepairResult:
        for tenant in tenants:
            try:
                await self._tenant(tenant)
            except ChromaHAError as exc:
                self.result.failures.append(f"{tenant}: {exc}")
        if self.result.ok and not self._dry:
            await self._store.resolve_divergences(self.target.url)
        return self.result

    def _do(self, action: Action) -> bool:
        """Record an action; True when it must also be carried out."""
        self.result.actions.append(action)
        return not self._dry

    async def _drained(self) -> int:
        return await self._watch.wait_drained([self.ref.url, self.target.url], self._drain_timeout)

    async def _tenant(self, tenant: str) -> None:
        await self._drained()
        if not await self.ref.tenant_exists(tenant):
            return  # tenants cannot be deleted; a tenant only the target has holds nothing the log knows
        if not await self.target.tenant_exists(tenant) and self._do(Action("create tenant", tenant)):
            await self.target.create_tenant(tenant)
        ref_dbs = set(await self.ref.databases(tenant))
        target_dbs = set(await self.target.databases(tenant)) if await self.target.tenant_exists(tenant) else set()
        for database in sorted(ref_dbs | target_dbs):
            try:
                await self._database(tenant, database, database in ref_dbs, database in target_dbs)
            except ChromaHAError as exc:
                self.result.failures.append(f"{tenant}/{database}: {exc}")

    async def _database(self, tenant: str, database: str, on_ref: bool, on_target: bool) -> None:
        scope = f"{tenant}/{database}"
        if not on_ref:
            await self._guarded(scope, None, lambda: self._drop_database(tenant, database))
            return
        if not on_target and self._do(Action("create database", scope)):
            await self.target.create_database(tenant, database)
        names = {c.name for c in await self.ref.collections(tenant, database)}
        if on_target or not self._dry:
            names |= {c.name for c in await self.target.collections(tenant, database)}
        for name in sorted(names):
            try:
                canonical = await self._canonical(tenant, database, name)
                await self._guarded(scope, canonical, lambda n=name: self._collection(tenant, database, n))  # type: ignore[misc]
            except ChromaHAError as exc:
                self.result.failures.append(f"{scope}/{name}: {exc}")

    async def _drop_database(self, tenant: str, database: str) -> bool:
        if await self.ref.tenant_exists(tenant) and database in await self.ref.databases(tenant):
            return False  # created meanwhile, through the log
        if self._do(Action("delete database", f"{tenant}/{database}")):
            await self.target.delete_database(tenant, database)
            return True
        return False

    async def _guarded(self, scope: str, canonical: str | None, fix: Any) -> None:
        """Run `fix` between two looks at the log; again if an entry may have touched what it fixed."""
        for _ in range(self._attempts):
            since = await self._drained()
            wrote = await fix()
            if not wrote or not await self._watch.touched(since, canonical, scope):
                return
            self._tracker.describe(f"{scope}: the log moved meanwhile, comparing again")
        raise RepairFailed(f"writes kept arriving; gave up after {self._attempts} attempts")

    async def _canonical(self, tenant: str, database: str, name: str) -> str | None:
        info = await self.ref.collection(tenant, database, name)
        if info is None:
            return None
        return {m.instance_id: m.canonical_id for m in await self._store.mappings(self.ref.url)}.get(info.id)

    async def _collection(self, tenant: str, database: str, name: str) -> bool:
        """Compare and fix one collection; True when the target was written to."""
        where = f"{tenant}/{database}/{name}"
        self._tracker.describe(where)
        ref = await self.ref.collection(tenant, database, name)
        target = await self.target.collection(tenant, database, name)
        if ref is None:
            if target is not None and self._do(Action("delete collection", where)):
                await self.target.delete_collection(target)
                return True
            return False
        wrote = False
        if target is None or _must_recreate(ref, target):
            kind = "create collection" if target is None else "re-create collection (configuration differs)"
            count = await self.ref.count(ref)
            if not self._do(Action(kind, where, count)):
                return False
            if target is not None:
                await self.target.delete_collection(target)
            target, wrote = await self.target.create_collection(ref), True
        elif ref.metadata != target.metadata and self._do(Action("set metadata", where)):
            await self.target.set_metadata(target, ref.metadata)
            wrote = True
        wrote |= await self._mapping(ref, target, where)
        return await self._records(ref, target, where) or wrote

    async def _mapping(self, ref: CollectionInfo, target: CollectionInfo, where: str) -> bool:
        canonical = {m.instance_id: m.canonical_id for m in await self._store.mappings(self.ref.url)}.get(ref.id)
        if canonical is None:
            return False
        known = {m.canonical_id: m.instance_id for m in await self._store.mappings(self.target.url)}
        if known.get(canonical) == target.id or not self._do(Action("record collection id", where)):
            return False
        await self._store.record_mappings([IdMapping(self.target.url, canonical, target.id)])
        return True

    async def _records(self, ref: CollectionInfo, target: CollectionInfo, where: str) -> bool:
        wanted = await self._digests(self.ref, ref)
        held = await self._digests(self.target, target)
        diff = diff_records(wanted, held)
        diff = RecordDiff(
            diff.missing,
            diff.extra,
            await confirm_changed(self.ref, ref, self.target, target, diff.changed, self._page),
        )
        wrote = False
        if diff.extra and self._do(Action("delete records", where, len(diff.extra))):
            for part in _pages(diff.extra, self._page):
                await self.target.delete_ids(target, part)
            wrote = True
        if diff.changed and self._do(Action("replace records", where, len(diff.changed))):
            for part in _pages(diff.changed, self._page):
                await self.target.delete_ids(target, part)
                await self._copy(ref, target, part)
            wrote = True
        if diff.missing and self._do(Action("add records", where, len(diff.missing))):
            for part in _pages(diff.missing, self._page):
                await self._copy(ref, target, part)
            wrote = True
        return wrote

    async def _digests(self, instance: ChromaInstance, info: CollectionInfo) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        async for page in instance.pages(info, self._page):
            found.update(page_digests(page))
            self._tracker.advance(len(page))
        return found

    async def _copy(self, ref: CollectionInfo, target: CollectionInfo, ids: list[str]) -> None:
        page = await self.ref.get(ref, ids=ids, include=list(ALL_FIELDS))
        if page is None:
            raise RepairFailed(f"{ref.label} vanished from the reference")
        await self.target.add(target, page)


def _must_recreate(ref: CollectionInfo, target: CollectionInfo) -> bool:
    """Configuration cannot be changed in place, and metadata cannot be set back to none."""
    if (ref.configuration, ref.schema) != (target.configuration, target.schema):
        return True
    return ref.metadata != target.metadata and not ref.metadata


def _pages(ids: list[str], size: int) -> list[list[str]]:
    return [ids[n : n + size] for n in range(0, len(ids), size)]
