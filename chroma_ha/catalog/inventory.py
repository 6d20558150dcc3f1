"""What one instance holds (tenants, databases, collections, records), read and written through Chroma's HTTP API.

Used by verify, repair and bootstrap: tools that look at instances one by one, by their own collection ids, as
opposed to the gateway's request paths, which speak in canonical ids. Every call goes through the `Transport`;
an unexpected answer raises `InstanceError` naming the instance, the call and Chroma's message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import orjson

from ..errors import InstanceError
from ..upstream.client import Upstream
from ..upstream.incarnation import MARKER_TENANT
from ..upstream.paths import API
from ..upstream.transport import Transport

DEFAULT_TENANT = "default_tenant"
DEFAULT_DATABASE = "default_database"
ALL_FIELDS = ("embeddings", "metadatas", "documents", "uris")
LIST_PAGE = 1000  # collections or databases per listing request
_JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class CollectionInfo:
    tenant: str
    database: str
    name: str
    id: str
    metadata: dict[str, Any] | None = None
    configuration: dict[str, Any] | None = None
    schema: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.tenant, self.database, self.name)

    @property
    def label(self) -> str:
        return f"{self.tenant}/{self.database}/{self.name}"


@dataclass
class Records:
    """A page of records as Chroma's `get` returns them: parallel lists."""

    ids: list[str] = field(default_factory=list)
    embeddings: list[Any] = field(default_factory=list)
    metadatas: list[Any] = field(default_factory=list)
    documents: list[Any] = field(default_factory=list)
    uris: list[Any] = field(default_factory=list)

    @classmethod
    def from_get(cls, data: dict[str, Any]) -> Records:
        ids = list(data.get("ids") or [])

        def column(name: str) -> list[Any]:
            values = data.get(name)
            return list(values) if values is not None else [None] * len(ids)

        return cls(ids, column("embeddings"), column("metadatas"), column("documents"), column("uris"))

    def payload(self) -> dict[str, Any]:
        """The body of an add or upsert with these records; columns that are all null are left out."""
        body: dict[str, Any] = {"ids": self.ids}
        for name in ALL_FIELDS:
            values = getattr(self, name)
            if any(v is not None for v in values):
                body[name] = values
        return body

    def __len__(self) -> int:
        return len(self.ids)


def tenants_of(scopes: Sequence[str]) -> list[str]:
    """Tenants named by the store's scopes (`t` or `t/d`, names percent-encoded), the default one always, never
    the gateway's own (its incarnation marker differs on every instance by design)."""
    names = {unquote(scope.split("/", 1)[0]) for scope in scopes} | {DEFAULT_TENANT}
    return sorted(names - {MARKER_TENANT, ""})


def _segment(name: str) -> str:
    """A name as one path segment: whatever it holds (a slash, a space, a snowman), it stays one segment."""
    return quote(name, safe="")


def _database(tenant: str, database: str) -> str:
    return f"/tenants/{_segment(tenant)}/databases/{_segment(database)}"


def _collection(tenant: str, database: str, data: dict[str, Any]) -> CollectionInfo:
    return CollectionInfo(
        tenant,
        database,
        data["name"],
        data["id"],
        data.get("metadata"),
        data.get("configuration_json"),
        data.get("schema"),
    )


class ChromaInstance:
    """One instance, addressed by its URL."""

    def __init__(self, client: Transport, url: str) -> None:
        self.client = client
        self.url = url

    async def _call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        query: str = "",
        allow: Sequence[int] = (),
        idempotent: bool = True,
    ) -> Upstream:
        """Every call here is harmless to send twice (an add of existing ids, a create that allows its 409, a
        delete that allows its 404) but for creating a collection, which says so."""
        body = orjson.dumps(payload) if payload is not None else b""
        response = await self.client.request(
            self.url,
            method,
            f"{API}{path}",
            query=query,
            headers=_JSON if body else None,
            body=body,
            idempotent=idempotent,
        )
        if not response.ok and response.status not in allow:
            message = response.body[:300].decode("utf-8", "replace")
            raise InstanceError(
                self.url, f"{method} {path} answered {response.status}: {message}", retryable=response.status >= 500
            )
        return response

    # --- reading --------------------------------------------------------------------------------------------

    async def tenant_exists(self, tenant: str) -> bool:
        return (await self._call("GET", f"/tenants/{_segment(tenant)}", allow=(404,))).ok

    async def databases(self, tenant: str) -> list[str]:
        names: list[str] = []
        while True:
            page = await self._call(
                "GET", f"/tenants/{_segment(tenant)}/databases", query=f"limit={LIST_PAGE}&offset={len(names)}"
            )
            found = [d["name"] for d in orjson.loads(page.body)]
            names.extend(found)
            if len(found) < LIST_PAGE:
                return names

    async def collections(self, tenant: str, database: str) -> list[CollectionInfo]:
        found: list[CollectionInfo] = []
        while True:
            page = await self._call(
                "GET",
                f"{_database(tenant, database)}/collections",
                query=f"limit={LIST_PAGE}&offset={len(found)}",
            )
            items = orjson.loads(page.body)
            found.extend(_collection(tenant, database, c) for c in items)
            if len(items) < LIST_PAGE:
                return found

    async def collection(self, tenant: str, database: str, name: str) -> CollectionInfo | None:
        got = await self._call("GET", f"{_database(tenant, database)}/collections/{_segment(name)}", allow=(404,))
        return _collection(tenant, database, orjson.loads(got.body)) if got.ok else None

    def _records_path(self, c: CollectionInfo, action: str) -> str:
        return f"{_database(c.tenant, c.database)}/collections/{c.id}/{action}"

    async def count(self, c: CollectionInfo) -> int:
        return int(orjson.loads((await self._call("GET", self._records_path(c, "count"))).body))

    async def get(self, c: CollectionInfo, **request: Any) -> Records | None:
        """One `get`; None when the collection is gone (a 404)."""
        request.setdefault("include", [])
        got = await self._call("POST", self._records_path(c, "get"), request, allow=(404,))
        return Records.from_get(orjson.loads(got.body)) if got.ok else None

    async def pages(
        self, c: CollectionInfo, page_size: int, include: Sequence[str] = ALL_FIELDS
    ) -> AsyncIterator[Records]:
        """Every record, `page_size` at a time (limit/offset); stops early if the collection is deleted."""
        offset = 0
        while True:
            page = await self.get(c, include=list(include), limit=page_size, offset=offset)
            if page is None or not page.ids:
                return
            yield page
            offset += len(page)
            if len(page) < page_size:
                return

    async def all_ids(self, c: CollectionInfo, page_size: int) -> list[str]:
        ids: list[str] = []
        async for page in self.pages(c, page_size, include=()):
            ids.extend(page.ids)
        return ids

    # --- writing --------------------------------------------------------------------------------------------

    async def create_tenant(self, tenant: str) -> None:
        await self._call("POST", "/tenants", {"name": tenant}, allow=(409,))

    async def create_database(self, tenant: str, database: str) -> None:
        await self._call("POST", f"/tenants/{_segment(tenant)}/databases", {"name": database}, allow=(409,))

    async def delete_database(self, tenant: str, database: str) -> None:
        await self._call("DELETE", _database(tenant, database), allow=(404,))

    async def create_collection(self, like: CollectionInfo) -> CollectionInfo:
        """A collection with the name, metadata and configuration of `like` (its schema carries both)."""
        payload: dict[str, Any] = {"name": like.name, "metadata": like.metadata}
        if like.schema is not None:
            payload["schema"] = like.schema
        elif like.configuration is not None:
            payload["configuration"] = like.configuration
        path = f"{_database(like.tenant, like.database)}/collections"
        got = await self._call("POST", path, payload, idempotent=False)  # sent twice, it answers 409
        return _collection(like.tenant, like.database, orjson.loads(got.body))

    async def delete_collection(self, c: CollectionInfo) -> None:
        await self._call("DELETE", f"{_database(c.tenant, c.database)}/collections/{_segment(c.name)}", allow=(404,))

    async def set_metadata(self, c: CollectionInfo, metadata: dict[str, Any] | None) -> None:
        path = f"{_database(c.tenant, c.database)}/collections/{c.id}"
        await self._call("PUT", path, {"new_metadata": metadata or {}})

    async def add(self, c: CollectionInfo, records: Records) -> None:
        if records.ids:
            await self._call("POST", self._records_path(c, "add"), records.payload())

    async def delete_ids(self, c: CollectionInfo, ids: Sequence[str]) -> None:
        if ids:
            await self._call("POST", self._records_path(c, "delete"), {"ids": list(ids)})
