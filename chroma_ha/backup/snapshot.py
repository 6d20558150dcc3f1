"""Taking a backup: a fuzzy snapshot of one in-sync instance, then the log after the seq it started from.

Why the result is exact: the snapshot starts at S0, the source's cursor in the store before anything is read, so
every record read holds the state of some seq at or after S0. The copy ends at S1 (`consistent_seq`), the log's
head once the last page is read, so no record read holds a state after S1. The backup keeps every entry after S0.
Replaying entries S0+1..N over the snapshot therefore gives exactly the state at N for any N >= S1, because replay
is idempotent (DESIGN.md, invariant 2), the same argument the bootstrap makes (`replication/bootstrap.py`).

Each collection is copied as the bootstrap copies one: its ids are listed first (`include: []`, thousands per
request, into the work folder, never all in memory), then its records are fetched by id, a page at a time, so a
record deleted meanwhile is only missing from its page (the log deletes it again) and nothing moves a page over
another record. A listing of one request is one read and skips nothing. A listing of several pages (limit/offset)
could skip a record if one before it was deleted between two requests (an add appends, an update stays in place,
neither can), so the log between the head before the listing and the head after it is searched for an entry that
removes records from the collection (a delete, the deletion of its collection or database, a reset); if one is
there, the ids are listed again.

Resumable: the manifest is rewritten (atomically) after every page and every log file, with `complete: false`.
A re-run with the same folder checks the manifest, keeps the finished collections, the listings and the pages
already written, and continues where the last run stopped, as long as the log still holds every entry after S0
(otherwise it starts again). A collection the source dropped during the copy is left out: its deletion is in the
log after S0.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import orjson

from .. import __version__
from ..catalog.inventory import ALL_FIELDS, ChromaInstance, CollectionInfo, Records, tenants_of
from ..catalog.survey import NoTracker, Tracker
from ..errors import BackupError, InstanceError
from ..store import LogStore
from ..upstream.incarnation import ensure_marker
from ..upstream.transport import Transport
from .format import FORMAT, VERSION, encode_entry, encode_records, load_manifest, record_file, save_manifest

log = logging.getLogger(__name__)

PAGE_SIZE = 500
ID_PAGE_SIZE = 5000
WORK = "work"  # the ids listed, page by page, while a backup runs; removed when it is complete
LOG_READ = 500
LOG_FILE_ENTRIES = 10_000
LOG_FILE_BYTES = 32 << 20
KEYS_READ = 2000
MAX_LISTINGS = 5  # a collection listed again this often, each time overtaken by a delete, fails the backup
# entries that can take records out of a collection, and so make a limit/offset page skip one
SHIFTING = frozenset({"delete", "delete_collection", "delete_database", "reset"})
# a page an instance failed to answer (a 5xx: a local Chroma under churn can answer `Error finding id` while its
# vector index catches up) is asked again this often, after these waits, before the backup fails (and can resume)
PAGE_RETRIES = (0.2, 0.5, 1.0, 2.0, 4.0)


async def _get(src: ChromaInstance, info: CollectionInfo, **request: Any) -> Records | None:
    """One `get` from the source, asked again after a retryable failure (a 5xx, the connection lost)."""
    for wait in PAGE_RETRIES:
        try:
            return await src.get(info, **request)
        except InstanceError as exc:
            if not exc.retryable:
                raise
            log.warning("backup: %s; asking again in %gs", exc, wait)
        await asyncio.sleep(wait)
    return await src.get(info, **request)


class BackupTaker:
    def __init__(
        self,
        *,
        store: LogStore,
        client: Transport,
        instances: list[str],
        folder: Path,
        page_size: int = PAGE_SIZE,
        tracker: Tracker | None = None,
    ) -> None:
        self._store = store
        self._client = client
        self._instances = instances
        self._folder = folder
        self._page_size = page_size
        self._tracker = tracker or NoTracker()
        self.resumed = False
        self._seen_head = 0

    async def run(self) -> dict[str, Any]:
        """The manifest of the complete backup in the folder."""
        manifest = await self._resumable()
        if manifest is None:
            manifest = await self._start()
        elif manifest["complete"]:
            return manifest
        src = ChromaInstance(self._client, manifest["source"])
        for c in manifest["collections"]:
            if c["state"] == "pending" and c["listed"] is not None:
                self._tracker.add_total(c["expected"])
                self._tracker.advance(min(c["expected"], c["pages"] * self._page_size))
        for c in manifest["collections"]:
            if c["state"] == "pending":
                await self._copy_collection(src, manifest, c)
        if manifest["consistent_seq"] is None:
            head = await self._head()
            if not await self._same_source(manifest):  # what it answered may be a partial copy: not a snapshot
                self._start_again(f"{manifest['source']} was wiped or replaced during the copy")
                (self._folder / "manifest.json").unlink()
                raise BackupError(f"{manifest['source']} was wiped or replaced during the backup: run it again")
            manifest["consistent_seq"] = head
            save_manifest(self._folder, manifest)
        await self._copy_log(manifest)
        manifest["complete"], manifest["finished_at"] = True, time.time()
        save_manifest(self._folder, manifest)
        shutil.rmtree(self._folder / WORK, ignore_errors=True)
        return manifest

    # --- starting, or resuming ----------------------------------------------------------------------------------

    async def _resumable(self) -> dict[str, Any] | None:
        if not (self._folder / "manifest.json").exists():
            return None
        manifest = load_manifest(self._folder)
        if manifest["complete"]:
            log.warning("%s already holds a complete backup", self._folder)
            return manifest
        if manifest["source"] not in self._instances:
            self._start_again(f"{manifest['source']}, its source, is no longer an instance")
            return None
        if await self._store.oldest_seq() > manifest["start_seq"] + 1:
            self._start_again(f"the log no longer holds every entry after seq {manifest['start_seq']}")
            return None
        if not await self._same_source(manifest):
            self._start_again(f"{manifest['source']} was wiped or replaced since the copy began")
            return None
        self.resumed = True
        log.warning("resuming the backup in %s", self._folder)
        return manifest

    def _start_again(self, reason: str) -> None:
        """Forget the unfinished backup in the folder (its caller then starts a new one)."""
        log.warning("the backup in %s starts again: %s", self._folder, reason)
        for part in ("records", "log", WORK):
            shutil.rmtree(self._folder / part, ignore_errors=True)

    async def _source(self) -> tuple[str, int, str]:
        """The instance with the highest cursor that answers and is the instance its cursor belongs to (its marker
        is the cursor's incarnation), that cursor (S0), and that incarnation."""
        cursors = await self._store.cursors()
        ranked = sorted(self._instances, key=lambda i: cursors[i].seq if i in cursors else -1, reverse=True)
        for url in ranked:
            cursor = cursors.get(url)
            try:
                marker = await ensure_marker(self._client, url, create=False)
            except InstanceError as exc:
                log.warning("backup: %s does not answer (%s), trying the next instance", url, exc)
                continue
            if cursor is not None and marker is not None and marker.id == cursor.incarnation:
                return url, cursor.seq, marker.id
            log.warning("backup: %s is not (yet) the instance its cursor was written for, trying the next", url)
        raise BackupError("no instance that answers is known to hold what its cursor says: nothing to copy from")

    async def _same_source(self, manifest: dict[str, Any]) -> bool:
        """Is the source still the instance the copy began on? A wiped or replaced one has another marker."""
        marker = await ensure_marker(self._client, manifest["source"], create=False)
        return marker is not None and marker.id == manifest["source_incarnation"]

    async def _start(self) -> dict[str, Any]:
        source, start_seq, incarnation = await self._source()
        self._folder.mkdir(parents=True, exist_ok=True)
        src = ChromaInstance(self._client, source)
        canonical = {m.instance_id: m.canonical_id for m in await self._store.mappings(source)}
        tenants: list[str] = []
        databases: list[list[str]] = []
        collections: list[dict[str, Any]] = []
        for tenant in tenants_of(await self._store.scopes()):
            if not await src.tenant_exists(tenant):
                continue
            tenants.append(tenant)
            for database in await src.databases(tenant):
                databases.append([tenant, database])
                for info in await src.collections(tenant, database):
                    collections.append(_collection_entry(len(collections), info, canonical.get(info.id)))
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "gateway_version": __version__,
            "created_at": time.time(),
            "finished_at": None,
            "complete": False,
            "source": source,
            "source_incarnation": incarnation,
            "start_seq": start_seq,
            "consistent_seq": None,
            "end_seq": start_seq,
            "tenants": tenants,
            "databases": databases,
            "collections": collections,
            "files": {},
        }
        save_manifest(self._folder, manifest)
        return manifest

    # --- one collection: its ids listed, then its records fetched by id, page by page -------------------------

    async def _copy_collection(self, src: ChromaInstance, manifest: dict[str, Any], c: dict[str, Any]) -> None:
        info = _info(c)
        self._tracker.describe(f"{c['tenant']}/{c['database']}/{c['name']}")
        if c["listed"] is None:
            await self._list(src, manifest, c, info)
            if c["state"] == "gone":
                return
        work = self._folder / WORK / str(c["n"])
        for number in range(c["pages"], c["listed"]):
            ids = orjson.loads((work / f"{number}.json").read_bytes())
            page = await _get(src, info, ids=ids, include=list(ALL_FIELDS))
            if page is None:
                self._gone(manifest, c, info)
                return
            relative = f"records/{c['n']}/{number}.json"
            (self._folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (self._folder / relative).write_bytes(encode_records(page))
            record_file(manifest, self._folder, relative, len(page))
            c["pages"], c["records"] = number + 1, c["records"] + len(page)
            save_manifest(self._folder, manifest)
            self._tracker.advance(len(ids))
        c["state"] = "done"
        save_manifest(self._folder, manifest)
        shutil.rmtree(work, ignore_errors=True)

    async def _list(
        self, src: ChromaInstance, manifest: dict[str, Any], c: dict[str, Any], info: CollectionInfo
    ) -> None:
        """The collection's ids into pages of `page_size` in the work folder, at most one listing request's ids in
        memory. One request is one read, and skips nothing; when it took several, the log is searched for a
        delete that could have made one skip a record, and the listing is made again."""
        work = self._folder / WORK / str(c["n"])
        for _ in range(MAX_LISTINGS):
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            copy_from, held, pages, listed, requests = await self._head(), [], 0, 0, 0
            while True:
                got = await _get(src, info, include=[], limit=ID_PAGE_SIZE, offset=listed)
                requests += 1
                if got is None:
                    self._gone(manifest, c, info)
                    return
                held.extend(got.ids)
                listed += len(got.ids)
                while len(held) >= self._page_size or (held and len(got.ids) < ID_PAGE_SIZE):
                    (work / f"{pages}.json").write_bytes(orjson.dumps(held[: self._page_size]))
                    held, pages = held[self._page_size :], pages + 1
                if len(got.ids) < ID_PAGE_SIZE:
                    break
            if requests == 1 or not await self._shifted(copy_from, c["canonical_id"]):
                c["listed"], c["expected"] = pages, listed
                save_manifest(self._folder, manifest)
                self._tracker.add_total(listed)
                return
            log.info("backup: %s lost records while its ids were listed: listing them again", info.label)
        raise BackupError(f"{info.label} kept losing records faster than its ids could be listed; try again later")

    def _gone(self, manifest: dict[str, Any], c: dict[str, Any], info: CollectionInfo) -> None:
        log.warning("backup: %s was dropped during the copy; the log replays its deletion", info.label)
        for page in range(c["pages"]):
            manifest["files"].pop(f"records/{c['n']}/{page}.json", None)
        shutil.rmtree(self._folder / "records" / str(c["n"]), ignore_errors=True)
        shutil.rmtree(self._folder / WORK / str(c["n"]), ignore_errors=True)
        c["state"], c["pages"], c["records"] = "gone", 0, 0
        save_manifest(self._folder, manifest)

    async def _shifted(self, after: int, canonical_id: str | None) -> bool:
        """Did an entry logged after `after` take records out of the collection?"""
        if await self._store.oldest_seq() > after + 1:
            return True  # the entries that would tell are pruned: assume the worst
        while keys := await self._store.read_keys(after, KEYS_READ):
            if any(k.op in SHIFTING and k.collection_id in (None, canonical_id) for k in keys):
                return True
            after = keys[-1].seq
        return False

    async def _head(self) -> int:
        """The last seq in the log, read forward from the last one seen: the store's `head` counts the entries
        appended through that store object, and the gateway appends from another process."""
        self._seen_head = max(self._seen_head, await self._store.oldest_seq() - 1)
        while keys := await self._store.read_keys(self._seen_head, KEYS_READ):
            self._seen_head = keys[-1].seq
        return self._seen_head

    # --- the log after S0 ---------------------------------------------------------------------------------------

    async def _copy_log(self, manifest: dict[str, Any]) -> None:
        """Every entry after the snapshot's start up to the head when this began (at least S1), in files."""
        self._tracker.describe("log entries")
        head = await self._head()
        while manifest["end_seq"] < head:
            after = manifest["end_seq"]
            if await self._store.oldest_seq() > after + 1:
                raise BackupError(
                    f"the log was pruned past seq {after} during the backup: run it again, or keep the log longer "
                    "(retention) while backups run"
                )
            lines: list[bytes] = []
            size = 0
            while after < head and len(lines) < LOG_FILE_ENTRIES and size < LOG_FILE_BYTES:
                entries = await self._store.read(after, LOG_READ, LOG_FILE_BYTES)
                if not entries:
                    break
                for entry in entries:
                    lines.append(encode_entry(entry))
                    size += len(lines[-1])
                after = entries[-1].seq
            if not lines:
                break
            relative = f"log/{manifest['end_seq'] + 1:012d}-{after:012d}.jsonl"
            (self._folder / "log").mkdir(exist_ok=True)
            (self._folder / relative).write_bytes(b"".join(lines))
            record_file(manifest, self._folder, relative, len(lines))
            manifest["end_seq"] = after
            save_manifest(self._folder, manifest)


def _collection_entry(n: int, info: CollectionInfo, canonical_id: str | None) -> dict[str, Any]:
    return {
        "n": n,
        "tenant": info.tenant,
        "database": info.database,
        "name": info.name,
        "canonical_id": canonical_id,
        "source_id": info.id,
        "metadata": info.metadata,
        "configuration": info.configuration,
        "schema": info.schema,
        "state": "pending",
        "listed": None,  # pages of ids in the work folder, once the listing is complete
        "expected": 0,
        "records": 0,
        "pages": 0,
    }


def _info(c: dict[str, Any]) -> CollectionInfo:
    return CollectionInfo(
        c["tenant"], c["database"], c["name"], c["source_id"], c["metadata"], c["configuration"], c["schema"]
    )
