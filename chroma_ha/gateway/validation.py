"""Cheap checks a write must pass before it is logged. Pure.

A write that fails here is answered with a 400 in Chroma's error shape and is never logged. The checks are the
structural ones (JSON, types, lengths); what depends on a collection's state (dimensions, duplicates) is left to
Chroma, whose answer becomes the entry's outcome.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import RequestRejected

_RECORD_OPS = frozenset({"add", "upsert", "update"})
_OPTIONAL_LISTS = ("embeddings", "metadatas", "documents", "uris")
_BODY_REQUIRED = frozenset({
    "add", "upsert", "update", "delete", "create_collection", "create_database", "create_tenant",
    "update_collection", "update_tenant",
})


def _reject(message: str) -> RequestRejected:
    return RequestRejected(400, message, "InvalidArgumentError")


def parse_body(op: str, body: bytes) -> dict[str, Any] | None:
    """The JSON object of a write, or None for writes without a body; raises RequestRejected."""
    if not body.strip():
        if op in _BODY_REQUIRED:
            raise _reject(f"{op}: the request body must be a JSON object")
        return None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _reject(f"Failed to parse the request body as JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise _reject(f"{op}: the request body must be a JSON object, got {type(payload).__name__}")
    validate(op, payload)
    return payload


def validate(op: str, payload: dict[str, Any]) -> None:
    if op in _RECORD_OPS:
        _validate_records(op, payload)
    elif op == "delete":
        _validate_delete(payload)
    elif op in ("create_collection", "create_database", "create_tenant"):
        if not isinstance(payload.get("name"), str):
            raise _reject(f"{op}: 'name' must be a string")
        if op == "create_collection":
            _optional(payload, "metadata", dict)
            _optional(payload, "configuration", dict)
            _optional(payload, "get_or_create", bool)
    elif op == "update_collection":
        _optional(payload, "new_name", str)
        _optional(payload, "new_metadata", dict)
        _optional(payload, "new_configuration", dict)


def _optional(payload: dict[str, Any], key: str, kind: type) -> None:
    value = payload.get(key)
    if value is not None and not isinstance(value, kind):
        raise _reject(f"'{key}' must be {kind.__name__}, got {type(value).__name__}")


def _validate_records(op: str, payload: dict[str, Any]) -> None:
    ids = payload.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise _reject(f"{op}: 'ids' must be a list of strings")
    for key in _OPTIONAL_LISTS:
        value = payload.get(key)
        if value is None:
            continue
        if isinstance(value, str) and key == "embeddings":
            continue  # one packed base64 block is Chroma's to judge
        if not isinstance(value, list):
            raise _reject(f"{op}: '{key}' must be a list or null, got {type(value).__name__}")
        if len(value) != len(ids):
            raise _reject(f"{op}: '{key}' has {len(value)} items for {len(ids)} ids")
        if key == "metadatas" and not all(m is None or isinstance(m, dict) for m in value):
            raise _reject(f"{op}: each metadata must be an object or null")
        if key in ("documents", "uris") and not all(d is None or isinstance(d, str) for d in value):
            raise _reject(f"{op}: each of '{key}' must be a string or null")
        if key == "embeddings" and not all(e is None or isinstance(e, (list, str)) for e in value):
            raise _reject(f"{op}: each embedding must be a list of numbers or a base64 string")


def _validate_delete(payload: dict[str, Any]) -> None:
    ids = payload.get("ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise _reject("delete: 'ids' must be a list of strings or null")
    _optional(payload, "where", dict)
    _optional(payload, "where_document", dict)
    limit = payload.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise _reject("delete: 'limit' must be a non-negative integer")
