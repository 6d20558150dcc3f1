"""Classify a request by method and path into what the gateway does with it. Pure: no I/O.

The table follows Chroma 1.5's HTTP API v2 (its `/openapi.json`; a test checks that every route there has a kind
here). It fails closed: a request the table does not know is answered by the gateway as Chroma answers an unknown
route, and never forwarded to one instance, where a write would change that instance alone.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import quote, unquote

from ..upstream.incarnation import MARKER_TENANT
from ..upstream.paths import API


class Kind(Enum):
    LOCAL = "local"  # answered by the gateway for the whole cluster
    READ = "read"  # forwarded to one eligible instance
    WRITE = "write"  # logged, then applied to every instance
    UNREPLICABLE = "unreplicable"  # a change the log cannot replay on every instance (fork, attached functions): 501
    UNKNOWN = "unknown"  # not a route of Chroma's API: 404, or 405 where another method would match
    RESERVED = "reserved"  # the gateway's own bookkeeping tenant: refused on every route


@dataclass(frozen=True)
class Route:
    kind: Kind
    op: str
    tenant: str | None = None
    database: str | None = None
    collection: str | None = None  # the path's collection segment: a name or an id
    # tenant, database and collection as names, percent-decoded (a path segment may encode "/" or any character)

    @functools.cached_property
    def collection_uuid(self) -> str | None:
        """The collection segment when it is an id (a UUID), else None (a name, or no collection)."""
        return self.collection if self.collection and is_uuid(self.collection) else None

    @property
    def scope(self) -> str:
        """What a listing of this route covers, for read-your-writes: `tenant/database`, `tenant`, or ``; each
        name percent-encoded, so a `/` in a name cannot be taken for the separator."""
        return scope_of(self.tenant, self.database)


def scope_of(tenant: str | None, database: str | None = None) -> str:
    if tenant is None:
        return ""
    return quote(tenant, safe="") if database is None else f"{quote(tenant, safe='')}/{quote(database, safe='')}"


_T = r"/tenants/(?P<tenant>[^/]+)"
_D = _T + r"/databases/(?P<database>[^/]+)"
_C = _D + r"/collections/(?P<collection>[^/]+)"

# (method, pattern, kind, op); first match wins, so specific paths come before general ones.
_TABLE: list[tuple[str, str, Kind, str]] = [
    ("GET", r"", Kind.LOCAL, "heartbeat"),
    ("GET", r"/heartbeat", Kind.LOCAL, "heartbeat"),
    ("GET", r"/version", Kind.LOCAL, "version"),
    ("GET", r"/healthcheck", Kind.LOCAL, "healthcheck"),
    ("GET", r"/pre-flight-checks", Kind.LOCAL, "pre_flight_checks"),
    ("GET", r"/auth/identity", Kind.LOCAL, "identity"),
    ("POST", r"/reset", Kind.WRITE, "reset"),
    ("POST", r"/tenants", Kind.WRITE, "create_tenant"),
    ("GET", _T, Kind.READ, "get_tenant"),
    ("PATCH", _T, Kind.WRITE, "update_tenant"),
    ("GET", _T + r"/databases", Kind.READ, "list_databases"),
    ("POST", _T + r"/databases", Kind.WRITE, "create_database"),
    ("GET", _D, Kind.READ, "get_database"),
    ("DELETE", _D, Kind.WRITE, "delete_database"),
    ("GET", _D + r"/collections", Kind.READ, "list_collections"),
    ("POST", _D + r"/collections", Kind.WRITE, "create_collection"),
    ("GET", _D + r"/collections_count", Kind.READ, "count_collections"),
    ("GET", _D + r"/collections/by-id/(?P<collection>[^/]+)", Kind.READ, "get_collection_by_id"),
    ("GET", _C, Kind.READ, "get_collection"),
    ("PUT", _C, Kind.WRITE, "update_collection"),
    ("DELETE", _C, Kind.WRITE, "delete_collection"),
    ("POST", _C + r"/add", Kind.WRITE, "add"),
    ("POST", _C + r"/upsert", Kind.WRITE, "upsert"),
    ("POST", _C + r"/update", Kind.WRITE, "update"),
    ("POST", _C + r"/delete", Kind.WRITE, "delete"),
    ("POST", _C + r"/get", Kind.READ, "get"),
    ("POST", _C + r"/query", Kind.READ, "query"),
    ("POST", _C + r"/search", Kind.READ, "search"),
    ("GET", _C + r"/count", Kind.READ, "count"),
    ("GET", _C + r"/fork_count", Kind.READ, "fork_count"),
    ("GET", _C + r"/indexing_status", Kind.READ, "indexing_status"),
    ("GET", _C + r"/functions/(?P<function>[^/]+)", Kind.READ, "get_attached_function"),
    ("POST", _C + r"/fork", Kind.UNREPLICABLE, "fork"),
    ("POST", _C + r"/functions/attach", Kind.UNREPLICABLE, "attach_function"),
    ("POST", _C + r"/attached_functions/(?P<function>[^/]+)/detach", Kind.UNREPLICABLE, "detach_function"),
    ("GET", r"/collections/(?P<crn>[^/]+)", Kind.READ, "get_collection_by_crn"),
]
_COMPILED = [(m, re.compile(API + p), k, op) for m, p, k, op in _TABLE]  # no trailing slash, as Chroma


@functools.lru_cache(maxsize=4096)  # clients repeat the same few paths; a Route is immutable
def classify(method: str, path: str) -> Route:
    for m, pattern, kind, op in _COMPILED:
        if m != method:
            continue
        match = pattern.fullmatch(path)
        if match:
            groups = {name: unquote(value) for name, value in match.groupdict().items()}
            tenant = groups.get("tenant") or groups.get("crn", "").partition(":")[0] or None
            if tenant == MARKER_TENANT:
                kind = Kind.RESERVED
            return Route(kind, op, groups.get("tenant"), groups.get("database"), groups.get("collection"))
    return Route(Kind.UNKNOWN, "unknown")


@functools.lru_cache(maxsize=1024)
def allowed_methods(path: str) -> tuple[str, ...]:
    """The methods some route of the table answers at `path` (for a 405's `allow`), HEAD with GET, as Chroma."""
    methods = sorted({m for m, pattern, _, _ in _COMPILED if pattern.fullmatch(path)})
    return tuple(sorted([*methods, "HEAD"])) if "GET" in methods else tuple(methods)


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_uuid(text: str) -> bool:
    return len(text) == 36 and _UUID.fullmatch(text) is not None
