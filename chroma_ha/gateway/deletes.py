"""Document-level deletion ("smart deletion conversion"): a delete by ids also removes the rest of each document.

Off unless `delete_expand_key` is set (for example `document_id`), and then only for the collections named in
`delete_expand_collections` (all of them when that is empty). A delete by ids removes, besides the records it
names, every record whose key equals one of the given ids, or equals the key's value on a record the ids name:
deleting `doc-7` or any chunk of it removes every chunk whose `document_id` is `doc-7`.

The gateway resolves this when the delete arrives, by reading an instance that has applied every earlier write to
the collection (the read path's read-your-writes rule), and logs the resolved form next to the client's body as
`extra = {"apply_body": {"ids": [...sorted...]}, "expanded_from": [...the client's ids...]}`. Every instance then
deletes exactly those ids, whatever it holds, so the instances cannot come apart over it.

Choices, for the cases where the rule alone does not say:
- `where` / `where_document` given with ids keep Chroma's meaning (ids AND filter), applied to the expanded set:
  the ids name documents, the filter picks which of their records go ("delete the chunks of doc-7 on page > 3").
  The filter is resolved at the gateway too, so the logged form is a plain list of ids.
- A delete without ids, or with `limit`, is applied as sent: it names no document.
- When the expansion finds nothing beyond the given ids, the delete is applied as sent and not counted.
- A read that fails for the payload (a 404 for a collection, a 400 for a filter) leaves the delete as sent, so the
  client gets Chroma's own answer for it. When no instance can answer, the delete is refused with a 503 before
  it is logged: logging the unresolved form would remove less than asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from ..errors import RequestRejected
from ..upstream.client import HeaderPairs
from ..upstream.paths import API
from .reads import ReadPath
from .routes import Kind, Route

ID_CHUNK = 1000  # ids or key values per resolving `get`
_JSON = [(b"content-type", b"application/json")]


def key_values(metadatas: Iterable[Mapping[str, Any] | None], key: str) -> list[Any]:
    """The scalar values of `key` on the given records (lists and missing keys name no document)."""
    values = []
    for metadata in metadatas:
        value = (metadata or {}).get(key)
        if isinstance(value, (str, int, float)):
            values.append(value)
    return values


def value_groups(ids: Sequence[str], values: Iterable[Any]) -> list[list[Any]]:
    """Values to look up with `$in`, one group per type (Chroma wants one type per `$in`), deduplicated."""
    groups: dict[type, set[Any]] = {str: set(ids)}
    for value in values:
        groups.setdefault(type(value), set()).add(value)
    return [sorted(group) for group in groups.values() if group]


def chunks(items: Sequence[Any], size: int = ID_CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class DocumentDeletes:
    """The `DeleteExpander` of the write path."""

    def __init__(self, *, key: str, collections: Sequence[str], reads: ReadPath) -> None:
        self._key = key
        self._collections = frozenset(collections)
        self._reads = reads

    async def expand(
        self, collection_id: str, payload: dict[str, object], *, route: Route, headers: HeaderPairs
    ) -> dict[str, object]:
        ids = payload.get("ids")
        if not isinstance(ids, list) or not ids or payload.get("limit") is not None:
            return {}
        reader = _Reader(self._reads, route, collection_id, headers)
        try:
            if self._collections and await reader.name() not in self._collections:
                return {}
            named = await reader.get(ids=ids, include=["metadatas"])
            expanded = set(ids)
            for group in value_groups(ids, key_values(named.get("metadatas") or [], self._key)):
                for values in chunks(group):
                    found = await reader.get(where={self._key: {"$in": values}}, include=[])
                    expanded.update(found["ids"])
            if expanded == set(ids):
                return {}
            resolved = sorted(expanded)
            if payload.get("where") is not None or payload.get("where_document") is not None:
                resolved = await self._filtered(reader, resolved, payload)
        except _AsSent:
            return {}
        if not resolved:
            return {}
        return {"apply_body": {"ids": resolved}, "expanded_from": list(ids)}

    @staticmethod
    async def _filtered(reader: _Reader, ids: list[str], payload: dict[str, object]) -> list[str]:
        kept: set[str] = set()
        for part in chunks(ids):
            request: dict[str, Any] = {"ids": part, "include": []}
            for name in ("where", "where_document"):
                if payload.get(name) is not None:
                    request[name] = payload[name]
            kept.update((await reader.get(**request))["ids"])
        return sorted(kept)


class LimitedDeletes:
    """A delete with `limit` removes the first matching records in each instance's own storage order, which
    instances need not share (a bootstrapped copy is ordered differently): the gateway picks the records once, on an
    instance holding every earlier write, and logs them as ids, so every instance removes the same ones."""

    def __init__(self, reads: ReadPath, documents: DocumentDeletes | None = None) -> None:
        self._reads = reads
        self._documents = documents

    async def expand(
        self, collection_id: str, payload: dict[str, object], *, route: Route, headers: HeaderPairs
    ) -> dict[str, object]:
        if payload.get("limit") is None:
            if self._documents is None:
                return {}
            return await self._documents.expand(collection_id, payload, route=route, headers=headers)
        request: dict[str, Any] = {"limit": payload["limit"], "include": []}
        for name in ("ids", "where", "where_document"):
            if payload.get(name) is not None:
                request[name] = payload[name]
        try:
            found = await _Reader(self._reads, route, collection_id, headers).get(**request)
        except _AsSent:
            return {}
        if not found["ids"]:
            return {}
        return {"apply_body": {"ids": sorted(found["ids"])}, "resolved_limit": payload["limit"]}


class _AsSent(Exception):
    """The resolving read was refused for the payload: apply the delete as the client sent it."""


class _Reader:
    """Reads of one collection through the read path, on an instance that holds every earlier write to it."""

    def __init__(self, reads: ReadPath, route: Route, collection_id: str, headers: HeaderPairs) -> None:
        self._reads = reads
        self._tenant, self._database = route.tenant, route.database
        self._collection = collection_id
        self._headers = [(k, v) for k, v in headers if k != b"content-type"] + _JSON

    async def _read(self, op: str, method: str, suffix: str, body: bytes) -> Any:
        route = Route(Kind.READ, op, self._tenant, self._database, self._collection)
        path = f"{API}/tenants/{self._tenant}/databases/{self._database}/collections/{suffix}"
        result = await self._reads.handle(route, method, path, "", self._headers, body, fresh=True)
        if result.stale_by:
            raise RequestRejected(
                503,
                "Document-level deletion needs an instance that holds every earlier write to the collection; "
                f"the most caught-up one lags by {result.stale_by} entries. Nothing was logged: retry the delete.",
                "ServiceUnavailable",
            )
        if result.upstream.status >= 500:
            raise RequestRejected(503, "Document-level deletion could not read the collection.", "ServiceUnavailable")
        if not result.upstream.ok:
            raise _AsSent()
        return orjson.loads(result.body)

    async def name(self) -> str:
        got = await self._read("get_collection_by_id", "GET", f"by-id/{self._collection}", b"")
        return str(got.get("name", ""))

    async def get(self, **request: Any) -> dict[str, Any]:
        got = await self._read("get", "POST", f"{self._collection}/get", orjson.dumps(request))
        return dict(got)
