"""Adaptive batching: coalesce consecutive compatible log entries into one Chroma call. Pure.

Entries are compatible when they are the same data operation (add, upsert or update) on the same collection,
carry the same fields with the same embedding encoding, and share no record id: then applying the merged call
is the same as applying them one after another. Anything else (deletes, catalog changes) is applied alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..cluster.limits import Limits
from ..store import Entry

MERGEABLE_OPS = frozenset({"add", "upsert", "update"})
RECORD_FIELDS = ("ids", "embeddings", "metadatas", "documents", "uris")


@dataclass(frozen=True)
class Batch:
    entries: tuple[Entry, ...]
    body: bytes

    @property
    def last_seq(self) -> int:
        return self.entries[-1].seq


def _shape(payload: dict[str, Any]) -> tuple[Any, ...] | None:
    """What must match for two payloads to merge; None when the payload cannot merge at all."""
    ids = payload.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        return None
    if len(set(ids)) != len(ids):
        return None
    present = []
    for name in RECORD_FIELDS[1:]:
        value = payload.get(name)
        if value is None:
            continue
        if not isinstance(value, list) or len(value) != len(ids):
            return None
        present.append(name)
    extra = set(payload) - set(RECORD_FIELDS)
    if extra:
        return None
    embeddings = payload.get("embeddings")
    encoding = type(embeddings[0]).__name__ if embeddings else None
    return (tuple(present), encoding)


def plan_batches(entries: Sequence[Entry], limits: Limits) -> list[Batch]:
    batches: list[Batch] = []
    group: list[Entry] = []
    payloads: list[dict[str, Any]] = []
    group_ids: set[str] = set()
    group_shape: tuple[Any, ...] | None = None
    group_bytes = 0

    def close() -> None:
        nonlocal group, payloads, group_ids, group_shape, group_bytes
        if group:
            body = group[0].body if len(group) == 1 else _merge(payloads)
            batches.append(Batch(tuple(group), body))
        group, payloads, group_ids, group_shape, group_bytes = [], [], set(), None, 0

    for entry in entries:
        payload, shape = None, None
        if entry.op in MERGEABLE_OPS:
            try:
                payload = orjson.loads(entry.body)
            except orjson.JSONDecodeError:
                payload = None
            shape = _shape(payload) if isinstance(payload, dict) else None
        if payload is None or shape is None:
            close()
            batches.append(Batch((entry,), entry.body))
            continue
        ids = set(payload["ids"])
        fits = (
            group
            and group[0].op == entry.op
            and group[0].collection_id == entry.collection_id
            and group_shape == shape
            and not (ids & group_ids)
            and len(group_ids) + len(ids) <= limits.max_records
            and group_bytes + len(entry.body) <= limits.max_bytes
        )
        if not fits:
            close()
        group.append(entry)
        payloads.append(payload)
        group_ids |= ids
        group_shape = shape
        group_bytes += len(entry.body)
    close()
    return batches


def _merge(payloads: list[dict[str, Any]]) -> bytes:
    merged: dict[str, Any] = {}
    for name in RECORD_FIELDS:
        if payloads[0].get(name) is None:
            continue
        merged[name] = [item for p in payloads for item in p[name]]
    return orjson.dumps(merged)
