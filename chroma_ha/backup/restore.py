"""Restoring a backup through a gateway: the snapshot, then the log replayed up to the point asked for.

Everything goes through the gateway's client API, as writes of a client: so the restored state is in the new
deployment's log, every instance gets it, and the gateway's catalog gives each collection a canonical id of its
own. The restorer keeps the map from the backup's canonical ids to the new ones and rewrites the collection
segment of each replayed entry's path with it; a collection the replay creates is mapped from the id its entry
was logged with to the id the gateway answers.

Invariant: the result is the state at `to_seq` (see `snapshot.py` for why the snapshot plus the entries after its
start seq, up to any seq at or after its consistent seq, gives exactly that state). An entry that the gateway
refuses now with a 4xx (a create of what the snapshot already holds answers 409, a write to a collection that a
later entry deletes answers 404) is the same no-op it was, or will be undone by a later entry: replay goes on.
An entry of a collection that neither the snapshot nor the replay created is skipped for the same reason: that
collection was dropped after the snapshot's start, and its deletion is among the entries replayed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import orjson

from ..catalog.inventory import ChromaInstance, CollectionInfo
from ..catalog.survey import NoTracker, Tracker
from ..errors import BackupError, InstanceError
from ..upstream.paths import API
from ..upstream.transport import Transport
from .format import add_payload, entry_body
from .segments import archived_lines, check_segments, last_seq, load_archive

log = logging.getLogger(__name__)

_JSON = {"content-type": "application/json"}
RETRIES = 10
RETRY_S = 1.0
_COLLECTIONS = re.compile(re.escape(API) + r"/tenants/([^/]+)/databases/([^/]+)/collections")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass
class RestoreReport:
    to_seq: int
    collections: int = 0
    records: int = 0
    entries: int = 0  # replayed
    refused: int = 0  # replayed entries the gateway answered with a 4xx
    skipped: int = 0  # entries of a collection dropped after the snapshot began
    notes: list[str] = field(default_factory=list)


class EntrySource:
    """The entries a backup (and an archive beside it) holds, checked, in seq order."""

    def __init__(self, folder: Path, manifest: dict[str, Any], archive: Path | None) -> None:
        self._folder, self._manifest, self._archive = folder, manifest, archive
        self.first, self.last = int(manifest["start_seq"]) + 1, int(manifest["end_seq"])
        self._archived: dict[str, Any] | None = None
        if archive is not None:
            self._archived = load_archive(archive)
            if self._archived is None:
                raise BackupError(f"{archive} holds no archive (no archive.json)")
            check_segments(archive, self._archived)
            if int(self._archived["first_seq"]) > self.last + 1:
                raise BackupError(
                    f"the archive in {archive} starts at seq {self._archived['first_seq']}, after the backup's "
                    f"last entry {self.last}: the entries in between are in neither"
                )
            self.last = max(self.last, last_seq(self._archived))

    def lines(self, to_seq: int) -> Iterator[dict[str, Any]]:
        after = int(self._manifest["start_seq"])
        for relative in sorted(f for f in self._manifest["files"] if f.startswith("log/")):
            with (self._folder / relative).open("rb") as f:
                for raw in f:
                    line = orjson.loads(raw)
                    if line["seq"] > to_seq:
                        return
                    after = line["seq"]
                    yield line
        if self._archived is not None and self._archive is not None:
            for line in archived_lines(self._archive, self._archived, after):
                if line["seq"] > to_seq:
                    return
                yield line

    def seq_at(self, when: float) -> int:
        """The last seq logged at or before `when` (the start seq when none is)."""
        found = int(self._manifest["start_seq"])
        for line in self.lines(self.last):
            if line["created_at"] > when:
                break
            found = line["seq"]
        return found


class Restorer:
    def __init__(self, client: Transport, gateway_url: str, *, tracker: Tracker | None = None) -> None:
        self._client = client
        self._gateway = ChromaInstance(client, gateway_url)
        self._url = gateway_url
        self._tracker = tracker or NoTracker()
        self._ids: dict[str, str] = {}  # the backup's canonical ids -> the new gateway's

    async def refuse_non_empty(self, tenants: list[str]) -> None:
        for tenant in sorted({*tenants, "default_tenant"}):
            if not await self._gateway.tenant_exists(tenant):
                continue
            for database in await self._gateway.databases(tenant):
                held = await self._gateway.collections(tenant, database)
                if held:
                    raise BackupError(
                        f"the target is not empty: {tenant}/{database} holds {len(held)} collections "
                        f"({', '.join(c.name for c in held[:3])}); restore only into empty instances"
                    )

    async def run(self, folder: Path, manifest: dict[str, Any], entries: EntrySource, to_seq: int) -> RestoreReport:
        report = RestoreReport(to_seq)
        await self.refuse_non_empty(manifest["tenants"])
        await self._snapshot(folder, manifest, report)
        self._tracker.describe("log entries")
        self._tracker.add_total(max(0, to_seq - entries.first + 1))
        for line in entries.lines(to_seq):
            await self._replay(line, report)
            self._tracker.advance(1)
        return report

    async def _snapshot(self, folder: Path, manifest: dict[str, Any], report: RestoreReport) -> None:
        for tenant in manifest["tenants"]:
            await self._gateway.create_tenant(tenant)
        for tenant, database in manifest["databases"]:
            await self._gateway.create_database(tenant, database)
        kept = [c for c in manifest["collections"] if c["state"] == "done"]
        self._tracker.add_total(sum(c["records"] for c in kept))
        for c in kept:
            self._tracker.describe(f"{c['tenant']}/{c['database']}/{c['name']}")
            like = CollectionInfo(
                c["tenant"], c["database"], c["name"], "", c["metadata"], c["configuration"], c["schema"]
            )
            created = await self._gateway.create_collection(like)
            if c["canonical_id"] is not None:
                self._ids[c["canonical_id"]] = created.id
            report.collections += 1
            path = f"{API}/tenants/{quote(c['tenant'], safe='')}/databases/{quote(c['database'], safe='')}"
            for page in range(c["pages"]):
                body, count = add_payload((folder / "records" / str(c["n"]) / f"{page}.json").read_bytes())
                if count:
                    status, answer = await self._send("POST", f"{path}/collections/{created.id}/add", "", _JSON, body)
                    if status >= 400:
                        raise BackupError(f"the gateway refused records of {created.label}: {answer[:300]!r}")
                report.records += count
                self._tracker.advance(count)

    async def _replay(self, line: dict[str, Any], report: RestoreReport) -> None:
        path = line["path"]
        collection = line.get("collection_id")
        if collection is not None:
            if collection not in self._ids:
                report.skipped += 1
                return
            path = "/".join(self._ids.get(part, part) if _UUID.fullmatch(part) else part for part in path.split("/"))
        status, body = await self._send(line["method"], path, line["query"], line["headers"], entry_body(line))
        report.entries += 1
        if 400 <= status < 500:
            report.refused += 1
        if line["op"] == "create_collection":
            await self._map_created(line, path, status, body)

    async def _map_created(self, line: dict[str, Any], path: str, status: int, body: bytes) -> None:
        logged_as = (line.get("extra") or {}).get("canonical_id")
        if logged_as is None:
            return
        if 200 <= status < 300:
            self._ids[logged_as] = orjson.loads(body)["id"]
            return
        match = _COLLECTIONS.fullmatch(path)
        name = orjson.loads(entry_body(line)).get("name") if match else None
        if status == 409 and match and isinstance(name, str):
            # the snapshot holds it already (created after the snapshot began): the same collection
            found = await self._gateway.collection(unquote(match[1]), unquote(match[2]), name)
            if found is not None:
                self._ids[logged_as] = found.id

    async def _send(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """The gateway's answer; a 5xx or no answer is tried again (the gateway logs a write before it answers
        503, and replaying an entry twice is harmless), a 4xx is an answer."""
        problem = ""
        for _ in range(RETRIES):
            try:
                got = await self._client.request(
                    self._url, method, path, query=query, headers=headers, body=body, idempotent=False
                )
            except InstanceError as exc:
                problem = str(exc)
            else:
                if got.status < 500:
                    return got.status, bytes(got.body)
                problem = f"{got.status}: {bytes(got.body)[:200].decode('utf-8', 'replace')}"
            await asyncio.sleep(RETRY_S)
        raise BackupError(f"the gateway at {self._url} did not take {method} {path}: {problem}")
