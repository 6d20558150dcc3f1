"""Collection identity: canonical ids (the ones clients see) and each instance's own id for the same collection.

Chroma gives a collection a fresh UUID on every server. The catalog maps canonical <-> instance ids, per
instance, and rewrites paths (canonical -> instance) and response bodies (instance -> canonical). The map lives
in the store; this class is its in-memory cache, rebuilt from the store at start (memory holds nothing unique).

The store raises its catalog version with every change to the map, so a reload reads the map only when some
gateway changed it; ids that turned out unknown are remembered briefly, so requests for made-up ids cost no reload.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson

from ..store import IdMapping, LogStore

# Operations whose successful response carries collection models ({"id": ...}) to make canonical.
UNKNOWN_TTL_S = 1.0  # how long an id the store did not know is taken as unknown without asking again
MAX_UNKNOWN = 10_000  # remembered unknown ids; past it the memory is cleared (made-up ids cannot grow it)
COLLECTION_RESPONSES = frozenset(
    {
        "create_collection",
        "get_collection",
        "get_collection_by_id",
        "list_collections",
        "get_collection_by_crn",
        "update_collection",
    }
)


class Catalog:
    def __init__(self, store: LogStore) -> None:
        self._store = store
        self._to_instance: dict[str, dict[str, str]] = {}
        self._to_canonical: dict[str, dict[str, str]] = {}
        self._loads_in_flight = 0
        self._journal: list[IdMapping] = []  # learned while a load was reading the store
        self._version: int | None = None  # the store's catalog version the cache was last loaded at
        self._unknown: dict[str, float] = {}  # canonical id -> until when it is taken as unknown

    async def load(self) -> None:
        """Replace the cache with the store's map, unless the map has not changed since the last load; what
        appliers learn meanwhile is kept on top of it."""
        self._loads_in_flight += 1
        try:
            version = await self._store.catalog_version()  # first: a change after it makes the next load read
            if version == self._version:
                return
            stored = await self._store.mappings()  # before clearing: no one may see an empty cache meanwhile
        finally:
            self._loads_in_flight -= 1
        self._version = version
        learned_meanwhile = self._journal
        if not self._loads_in_flight:
            self._journal = []
        self._to_instance.clear()
        self._to_canonical.clear()
        self._apply(stored)
        self._apply(learned_meanwhile)

    def learn(self, mappings: Iterable[IdMapping]) -> None:
        mappings = list(mappings)
        if self._loads_in_flight:
            self._journal.extend(mappings)
        self._apply(mappings)

    def _apply(self, mappings: Iterable[IdMapping]) -> None:
        for m in mappings:
            old = self._to_instance.setdefault(m.instance, {}).get(m.canonical_id)
            if old is not None:
                self._to_canonical.get(m.instance, {}).pop(old, None)
            self._to_instance[m.instance][m.canonical_id] = m.instance_id
            self._to_canonical.setdefault(m.instance, {})[m.instance_id] = m.canonical_id

    def forget(self, instance: str) -> None:
        self._to_instance.pop(instance, None)
        self._to_canonical.pop(instance, None)
        self._version = None  # the cache no longer holds the store's map: the next load reads it

    def clear(self) -> None:
        self._to_instance.clear()
        self._to_canonical.clear()
        self._version = None

    def instance_id(self, instance: str, canonical_id: str) -> str | None:
        return self._to_instance.get(instance, {}).get(canonical_id)

    def canonical_id(self, instance: str, instance_id: str) -> str | None:
        return self._to_canonical.get(instance, {}).get(instance_id)

    def is_known(self, canonical_id: str) -> bool:
        return any(canonical_id in ids for ids in self._to_instance.values())

    def instance_ids(self, instance: str) -> dict[str, str]:
        """canonical id -> this instance's id, a copy."""
        return dict(self._to_instance.get(instance, {}))

    async def refresh_if_unknown(self, canonical_id: str) -> bool:
        """Another gateway may have created it: reload from the store (if the map changed) before calling it
        unknown; an id found unknown a moment ago is answered from memory."""
        if self.is_known(canonical_id):
            return True
        now = time.monotonic()
        if self._unknown.get(canonical_id, 0.0) > now:
            return False
        await self.load()
        if self.is_known(canonical_id):
            return True
        if len(self._unknown) >= MAX_UNKNOWN:
            self._unknown.clear()
        self._unknown[canonical_id] = now + UNKNOWN_TTL_S
        return False

    # --- rewriting ------------------------------------------------------------------------------------------

    def path_for(self, instance: str, path: str, collection_segment: str | None) -> str:
        """The path with the canonical collection id replaced by this instance's id (names pass unchanged)."""
        if not collection_segment:
            return path
        own = self.instance_id(instance, collection_segment)
        if own is None or own == collection_segment:
            return path
        marker = f"/{collection_segment}"
        head, sep, tail = path.partition(marker)
        return f"{head}/{own}{tail}" if sep else path

    def names_unknown_ids(self, instance: str, op: str, status: int, body: bytes) -> bool:
        """Does this successful collection response hold an id this cache has not learned (yet)?"""
        if op not in COLLECTION_RESPONSES or not 200 <= status < 300:
            return False
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        models = data if isinstance(data, list) else [data]
        known = self._to_canonical.get(instance, {})
        return any(isinstance(m, dict) and m.get("id") not in known for m in models)

    def canonical_body(self, instance: str, op: str, status: int, body: bytes) -> bytes:
        """The response body with this instance's collection ids replaced by canonical ids."""
        ids = self._to_canonical.get(instance)
        if not ids or not body:
            return body
        if 200 <= status < 300:
            if op not in COLLECTION_RESPONSES:
                return body
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                return body
            return orjson.dumps(_canonical_models(data, ids))
        # error messages name collections by id ("Collection [<id>] does not exist.")
        text = body
        for own, canonical in ids.items():
            encoded = own.encode()
            if encoded in text:
                text = text.replace(encoded, canonical.encode())
        return text


def _canonical_models(data: Any, ids: dict[str, str]) -> Any:
    if isinstance(data, list):
        return [_canonical_models(item, ids) for item in data]
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        data["id"] = ids.get(data["id"], data["id"])
    return data
