"""What Chroma answers to a write, where the gateway can tell without asking an instance.

With `ack=log`, a data write is answered as soon as it is logged; a catalog write is too while no instance is up
(while one is, it waits for that instance's answer, so that a duplicate gets Chroma's 409). These are the answers
Chroma gives a write it takes. A write it would refuse (a database that already exists, a collection that does not)
is answered as taken all the same; once the instances apply it, their refusal is its outcome on each, alike on all,
so nothing diverges and nothing changes.

A collection's create is answered with the collection's model, which only Chroma makes (it fills in the
configuration and the schema). The gateway knows one only for a `get_or_create` of a collection whose create (or
get_or_create) it saw answered, while the log shows nothing since that could have renamed, changed or removed it:
`CollectionModels`. Its `dimension` is as it was then (null if the first records came later).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from ..store import EntryKey, LogStore
from .consistency import KEYS_CHUNK
from .routes import Route, classify

# What Chroma answers a data write it takes.
DATA_ANSWERS: dict[str, tuple[int, bytes]] = {
    "add": (201, b"{}"),
    "upsert": (200, b"{}"),
    "update": (200, b"{}"),
    "delete": (200, b"{}"),
}
# What Chroma answers a catalog write it takes (Chroma 1.5; `create_collection` answers a model, see above).
CATALOG_ANSWERS: dict[str, tuple[int, bytes]] = {
    "create_tenant": (200, b"{}"),
    "update_tenant": (200, b"{}"),
    "create_database": (200, b"{}"),
    "delete_database": (200, b"{}"),
    "update_collection": (200, b"{}"),
    "delete_collection": (200, b"{}"),
}
MAX_MODELS = 10_000  # collections remembered; past it the oldest learned is forgotten
MAX_KEYS_CHECKED = 100_000  # log entries read to tell that a model still stands; past them it is taken as unknown


@dataclass(frozen=True)
class _Model:
    seq: int  # the create whose outcome it is
    canonical_id: str
    body: bytes


class CollectionModels:
    """The model of each collection (by scope and name) as the last create this gateway waited for answered it."""

    def __init__(self, store: LogStore) -> None:
        self._store = store
        self._models: OrderedDict[tuple[str, str], _Model] = OrderedDict()

    def learn(self, route: Route, payload: dict[str, Any] | None, seq: int, status: int, body: bytes) -> None:
        """From the outcome of a collection create (canonical ids already); anything else is ignored."""
        if route.op != "create_collection" or payload is None or not 200 <= status < 300:
            return
        try:
            canonical_id = orjson.loads(body).get("id")
        except (orjson.JSONDecodeError, AttributeError):
            return
        if not isinstance(canonical_id, str):
            return
        key = (route.scope, str(payload.get("name")))
        self._models.pop(key, None)
        self._models[key] = _Model(seq, canonical_id, body)
        if len(self._models) > MAX_MODELS:
            self._models.popitem(last=False)

    async def answer(self, route: Route, payload: dict[str, Any] | None) -> bytes | None:
        """Chroma's answer to this create, when it is a get_or_create of a collection known and unchanged since."""
        if payload is None or not payload.get("get_or_create"):
            return None
        key = (route.scope, str(payload.get("name")))
        known = self._models.get(key)
        if known is None:
            return None
        if not await self._unchanged(known, route.scope, key[1]):
            self._models.pop(key, None)
            return None
        return known.body

    async def _unchanged(self, known: _Model, scope: str, name: str) -> bool:
        """Does the log, from the model's create on, hold nothing that renames, changes or removes it?"""
        if await self._store.oldest_seq() > known.seq + 1:
            return False  # entries after it were pruned: what they did is not known
        after, checked = known.seq, 0
        while checked < MAX_KEYS_CHECKED:
            keys = await self._store.read_keys(after, KEYS_CHUNK)
            if not keys:
                return True
            for key in keys:
                if await self._changes(key, known, scope, name):
                    return False
            checked += len(keys)
            after = keys[-1].seq
        return False

    async def _changes(self, key: EntryKey, known: _Model, scope: str, name: str) -> bool:
        if key.op == "reset":
            return True
        if key.op == "update_collection":
            return key.collection_id == known.canonical_id  # by id: a rename, new metadata or configuration
        if key.scope != scope:
            return False
        if key.op == "delete_database":
            return True
        if key.op == "delete_collection":  # by name: which one, only its path says
            found = await self._store.read(key.seq - 1, 1)
            if not found or found[0].seq != key.seq:
                return True  # pruned meanwhile: take it as a change
            return classify(found[0].method, found[0].path).collection in (name, known.canonical_id)
        return False
