"""Cheap checks a write must pass before it is logged. Pure.

A write that fails here is answered with a 400 in Chroma's error shape and is never logged. The checks are the
structural ones (JSON, types, lengths); what depends on a collection's state (dimensions, duplicates) is left to
Chroma, whose answer becomes the entry's outcome.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ..errors import RequestRejected
from ..upstream.incarnation import MARKER_TENANT

_RECORD_OPS = frozenset({"add", "upsert", "update"})
_OPTIONAL_LISTS = ("embeddings", "metadatas", "documents", "uris")
_BODY_REQUIRED = frozenset(
    {
        "add",
        "upsert",
        "update",
        "delete",
        "create_collection",
        "create_database",
        "create_tenant",
        "update_collection",
        "update_tenant",
    }
)


def _reject(message: str) -> RequestRejected:
    return RequestRejected(400, message, "InvalidArgumentError")


def reserved_tenant() -> RequestRejected:
    return RequestRejected(
        403, f"The tenant '{MARKER_TENANT}' is reserved for the gateway's own bookkeeping", "AuthorizationError"
    )


# Chroma 1.5's rules for names, with its own messages: a tenant needs 3 characters; a database and a collection
# 3-512 of [a-zA-Z0-9._-], starting and ending with a letter or digit, no "..", not an IPv4 address.
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]")
_IPV4 = re.compile(r"(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}")


def tenant_name_problem(name: str) -> str | None:
    if len(name) < 3:
        return f'Validation error: name: Validation error: length [{{"value": String("{name}"), "min": Number(3)}}]'
    return None


def name_problem(name: str) -> str | None:
    """What Chroma says of a database or collection name it refuses (without its prefix), or None."""
    if not _NAME.fullmatch(name):
        return (
            "Expected a name containing 3-512 characters from [a-zA-Z0-9._-], starting and ending with a "
            f"character in [a-zA-Z0-9]. Got: {name}"
        )
    if ".." in name:
        return f"Expected a name that does not contains two consecutive periods (..). Got {name}"
    if _IPV4.fullmatch(name):
        return f"Expected a name that is not a valid ip address. Got {name}"
    return None


def _check_name(op: str, name: str) -> None:
    if op == "create_tenant":
        if name == MARKER_TENANT:
            raise reserved_tenant()
        problem = tenant_name_problem(name)
    elif op == "create_database":
        problem = name_problem(name)
    else:  # a collection's name, created or renamed
        problem = name_problem(name)
        problem = f"Validation error: name: {problem}" if problem else None
    if problem:
        raise _reject(problem)


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
        _check_name(op, payload["name"])
        if op == "create_collection":
            _optional(payload, "metadata", dict)
            _optional(payload, "configuration", dict)
            _optional(payload, "get_or_create", bool)
    elif op == "update_collection":
        _optional(payload, "new_name", str)
        if payload.get("new_name") is not None:
            _check_name(op, payload["new_name"])
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
