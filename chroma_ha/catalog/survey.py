"""`verify`'s walk: every tenant, database and collection on every instance, compared with `get`, in pages.

First the inventory (tenants, databases, collections with metadata and configuration) of every instance, then one
pass over every collection's records per instance, kept as order-independent digests (constant memory). Only the
collections whose digests differ get a second pass with one digest per id, to name the records that differ; when
that pass finds them equal, the first difference came from writes in flight and is reported as a note.

An instance that cannot be read is a difference, never skipped silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from ..errors import InstanceError
from .compare import (
    CollectionDigest,
    Difference,
    RecordDiff,
    Report,
    catalog_ids,
    changed_records,
    collection_fields,
    diff_records,
    digests_differ,
    page_digests,
    presence,
    records_difference,
)
from .inventory import ALL_FIELDS, ChromaInstance, CollectionInfo

DEFAULT_PAGE = 500
T = TypeVar("T")


class Tracker(Protocol):
    """Where progress goes (a progress bar, or nothing)."""

    def add_total(self, records: int) -> None: ...
    def advance(self, records: int) -> None: ...
    def describe(self, text: str) -> None: ...


class NoTracker:
    def add_total(self, records: int) -> None:
        pass

    def advance(self, records: int) -> None:
        pass

    def describe(self, text: str) -> None:
        pass


Inventory = dict[tuple[str, str, str], dict[str, CollectionInfo]]  # (tenant, database, name) -> instance -> info


class Survey:
    def __init__(
        self,
        instances: Sequence[ChromaInstance],
        *,
        canonical: Mapping[str, Mapping[str, str]] | None = None,
        page_size: int = DEFAULT_PAGE,
        tracker: Tracker | None = None,
    ) -> None:
        self._canonical = canonical
        self._page = page_size
        self._tracker = tracker or NoTracker()
        self.report = Report([i.url for i in instances])
        self._reachable = list(instances)

    async def run(self, tenants: Sequence[str]) -> Report:
        self.report.scopes = list(tenants)
        inventory = await self._inventory(tenants)
        await self._count(inventory)
        for key in sorted(inventory):
            await self._collection(inventory[key])
        return self.report

    def _lost(self, instance: ChromaInstance, error: InstanceError) -> None:
        self.report.differences.append(Difference("unreachable", instance.url, {"error": str(error)}))
        self._reachable = [i for i in self._reachable if i is not instance]

    async def _each(self, fn: Callable[[ChromaInstance], Awaitable[T]]) -> dict[str, T]:
        """`fn(instance)` on every reachable instance; an instance that fails is reported and dropped."""
        results = await asyncio.gather(*(fn(i) for i in self._reachable), return_exceptions=True)
        answers: dict[str, T] = {}
        for instance, result in zip(list(self._reachable), results, strict=True):
            if isinstance(result, InstanceError):
                self._lost(instance, result)
            elif isinstance(result, BaseException):
                raise result
            else:
                answers[instance.url] = result
        return answers

    async def _inventory(self, tenants: Sequence[str]) -> Inventory:
        inventory: Inventory = {}
        for tenant in tenants:
            await self._tenant(tenant, inventory)
        return inventory

    async def _tenant(self, tenant: str, inventory: Inventory) -> None:
        self._tracker.describe(f"listing {tenant}")
        exists = await self._each(lambda i: i.tenant_exists(tenant))
        if found := presence(tenant, "tenant", exists):
            self.report.differences.append(found)
        databases = await self._each(lambda i: _databases_if(i, tenant, exists))
        for database in sorted({d for names in databases.values() for d in names}):
            holders = {url: database in names for url, names in databases.items() if exists.get(url)}
            if found := presence(f"{tenant}/{database}", "database", holders):
                self.report.differences.append(found)
            await self._database(tenant, database, holders, inventory)

    async def _database(self, tenant: str, database: str, holders: dict[str, bool], inventory: Inventory) -> None:
        listed = await self._each(lambda i: _collections_if(i, tenant, database, holders))
        for url, collections in listed.items():
            for c in collections:
                inventory.setdefault(c.key, {})[url] = c
        for name in sorted({c.name for collections in listed.values() for c in collections}):
            held = {url: any(c.name == name for c in cs) for url, cs in listed.items() if holders.get(url)}
            if found := presence(f"{tenant}/{database}/{name}", "collection", held):
                self.report.differences.append(found)

    async def _count(self, inventory: Inventory) -> None:
        for infos in inventory.values():
            for url, info in infos.items():
                instance = self._by_url(url)
                if instance is not None:
                    try:
                        self._tracker.add_total(await instance.count(info))
                    except InstanceError as exc:
                        self._lost(instance, exc)

    def _by_url(self, url: str) -> ChromaInstance | None:
        return next((i for i in self._reachable if i.url == url), None)

    async def _collection(self, infos: dict[str, CollectionInfo]) -> None:
        infos = {url: c for url, c in infos.items() if self._by_url(url) is not None}
        if not infos:
            return
        label = next(iter(infos.values())).label
        self._tracker.describe(label)
        entry: dict[str, object] = {"collection": label, "instances": {}}
        self.report.collections.append(entry)
        if len(infos) > 1:
            self.report.differences.extend(collection_fields(infos))
            if self._canonical is not None and (mismatch := catalog_ids(infos, self._canonical)):
                self.report.differences.append(mismatch)
        read = await self._each(lambda i: self._digest(i, infos.get(i.url)))
        digests = {url: d for url, d in read.items() if d is not None}
        entry["instances"] = {url: d.as_dict() for url, d in digests.items()}
        if len(digests) > 1 and digests_differ(digests):
            await self._detail(label, {url: infos[url] for url in digests})

    async def _digest(self, instance: ChromaInstance, info: CollectionInfo | None) -> CollectionDigest | None:
        if info is None:
            return None
        digest = CollectionDigest()
        async for page in instance.pages(info, self._page):
            digest.add(page)
            self._tracker.advance(len(page))
        return digest

    async def _detail(self, label: str, infos: dict[str, CollectionInfo]) -> None:
        self._tracker.describe(f"{label} (record by record)")
        read = await self._each(lambda i: _ids(i, infos.get(i.url), self._page))
        per_id = {url: d for url, d in read.items() if d is not None}
        if len(per_id) < 2:
            return
        reference = next(iter(per_id))
        diffs: dict[str, RecordDiff] = {}
        close = 0
        for url, digests in per_id.items():
            if url == reference:
                continue
            diff = diff_records(per_id[reference], digests)
            ref, other = self._by_url(reference), self._by_url(url)
            if ref is None or other is None:
                return
            changed = await confirm_changed(ref, infos[reference], other, infos[url], diff.changed, self._page)
            close += len(diff.changed) - len(changed)
            diffs[url] = RecordDiff(diff.missing, diff.extra, changed)
        if close:
            self.report.notes.append(
                f"{label}: {close} records differ only below float32 precision in their embeddings (copies of a "
                "cosine collection read back through Chroma's normalization)"
            )
        found = records_difference(label, reference, diffs)
        if found is not None:
            self.report.differences.append(found)
        elif not close:
            self.report.notes.append(f"{label}: digests differed while writes were in flight; equal on a second look")


async def _databases_if(instance: ChromaInstance, tenant: str, exists: Mapping[str, bool]) -> list[str]:
    return await instance.databases(tenant) if exists.get(instance.url) else []


async def _collections_if(
    instance: ChromaInstance, tenant: str, database: str, holders: Mapping[str, bool]
) -> list[CollectionInfo]:
    return await instance.collections(tenant, database) if holders.get(instance.url) else []


async def _ids(instance: ChromaInstance, info: CollectionInfo | None, page_size: int) -> dict[str, bytes] | None:
    if info is None:
        return None
    found: dict[str, bytes] = {}
    async for page in instance.pages(info, page_size):
        found.update(page_digests(page))
    return found


async def confirm_changed(
    reference: ChromaInstance,
    ref_info: CollectionInfo,
    other: ChromaInstance,
    other_info: CollectionInfo,
    candidates: Sequence[str],
    page_size: int,
) -> list[str]:
    """Of the ids whose digests differ, those whose records really differ (embeddings within tolerance)."""
    changed: list[str] = []
    for start in range(0, len(candidates), page_size):
        ids = list(candidates[start : start + page_size])
        mine = await reference.get(ref_info, ids=ids, include=list(ALL_FIELDS))
        theirs = await other.get(other_info, ids=ids, include=list(ALL_FIELDS))
        if mine is None or theirs is None:
            return list(candidates)  # a collection vanished meanwhile: everything is in doubt
        changed.extend(changed_records(mine, theirs))
        changed.extend(sorted(set(ids) - set(mine.ids)))  # deleted on the reference meanwhile
    return sorted(changed)
