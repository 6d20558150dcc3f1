"""Chroma instances simulated in memory, behind the gateway's `InProcessTransport`: for fast tests of the request
paths, the appliers and the bootstrap, with no socket and no subprocess.

Each `FakeChroma` answers the part of Chroma 1.5's HTTP API v2 the gateway uses, with Chroma's own rules where the
gateway depends on them: an `add` of existing ids changes nothing, an `update` of missing ids changes nothing, a
`delete` of missing ids succeeds, a second create of a name is a 409 unless `get_or_create`, every server gives a
collection its own fresh id, a body naming a field twice is a 422. Faults are switches:
- `down`: no connection; `hung`: no answer at all; `stalled`: heartbeats answered, nothing else;
- `slow`: heartbeats answered at once, everything else late; `wipe()`: an empty server;
- `fail_next`: answers to give instead of the next ones; `poison`: an answer for every request it returns one for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from chroma_ha.app import Gateway
from chroma_ha.errors import InstanceError
from chroma_ha.gateway.http_server import HttpRequest
from chroma_ha.settings import Settings
from chroma_ha.store import LogStore
from chroma_ha.store.memory import MemoryStore
from chroma_ha.upstream import Headers, InProcessTransport, Upstream

_JSON = [(b"content-type", b"application/json")]
_T = r"/api/v2/tenants/(?P<tenant>[^/]+)"
_D = _T + r"/databases/(?P<database>[^/]+)"
_C = _D + r"/collections/(?P<collection>[^/]+)"
FIELDS = ("embeddings", "metadatas", "documents", "uris")


def answer(status: int, data: Any) -> Upstream:
    return Upstream(status, _JSON, orjson.dumps(data))


def error(status: int, kind: str, message: str) -> Upstream:
    return answer(status, {"error": kind, "message": message})


@dataclass
class Collection:
    id: str
    name: str
    tenant: str
    database: str
    metadata: dict[str, Any] | None = None
    configuration: dict[str, Any] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {embeddings: ..., metadatas: ...}

    def model(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "tenant": self.tenant,
            "database": self.database,
            "metadata": self.metadata,
            "configuration_json": self.configuration,
            "dimension": None,
        }


@dataclass
class FakeChroma:
    url: str
    tenants: dict[str, dict[str, dict[str, Collection]]] = field(default_factory=dict)  # tenant -> db -> name -> c
    down: bool = False
    hung: bool = False
    stalled: bool = False
    slow: float = 0.0  # seconds every request but a heartbeat takes
    fail_next: list[Upstream] = field(default_factory=list)
    poison: Callable[[str, str, Any], Upstream | None] | None = None  # (method, path, payload) -> answer or None
    attempts: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request sent to it
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request answered

    def __post_init__(self) -> None:
        self.wipe()

    def wipe(self) -> None:
        """As a server started on an empty folder: the default tenant and database only."""
        self.tenants = {"default_tenant": {"default_database": {}}}

    def collections(self, tenant: str = "default_tenant", database: str = "default_database") -> dict[str, Any]:
        """name -> (metadata, records): what a client can observe, without the instance's own ids."""
        found = self.tenants.get(tenant, {}).get(database, {})
        return {name: (c.metadata, c.records) for name, c in sorted(found.items())}

    def _by_id(self, collection_id: str) -> Collection | None:
        for databases in self.tenants.values():
            for names in databases.values():
                for c in names.values():
                    if c.id == collection_id:
                        return c
        return None

    async def handle(self, method: str, path: str, query: str, body: bytes) -> Upstream:
        self.attempts.append((method, path))
        if self.down:
            raise InstanceError(self.url, "ConnectionRefusedError: [Errno 111] Connection refused")
        while self.hung or (self.stalled and path != "/api/v2/heartbeat"):
            await asyncio.sleep(0.01)
        if self.slow and path != "/api/v2/heartbeat":
            await asyncio.sleep(self.slow)
        if self.fail_next:
            return self.fail_next.pop(0)
        self.requests.append((method, path))
        payload = json.loads(body, object_pairs_hook=_no_duplicates) if body else {}
        if isinstance(payload, Upstream):
            return payload
        poisoned = self.poison(method, path, payload) if self.poison is not None else None
        if poisoned is not None:
            return poisoned
        params = {k: v[0] for k, v in parse_qs(query).items()}
        for route_method, pattern, respond in _ROUTES:
            match = pattern.fullmatch(path)
            if route_method == method and match:
                groups = {k: unquote(v) for k, v in match.groupdict().items()}
                return respond(self, payload, params, **groups)
        return error(404, "NotFound", f"no route {method} {path}")

    # --- tenants and databases ------------------------------------------------------------------------------

    def heartbeat(self, payload: Any, params: dict[str, str]) -> Upstream:
        return answer(200, {"nanosecond heartbeat": time.time_ns()})

    def reset(self, payload: Any, params: dict[str, str]) -> Upstream:
        self.wipe()
        return answer(200, True)

    def create_tenant(self, payload: Any, params: dict[str, str]) -> Upstream:
        if payload["name"] in self.tenants:
            return error(409, "UniqueConstraintError", f"Tenant {payload['name']} already exists")
        self.tenants[payload["name"]] = {}
        return answer(200, {})

    def get_tenant(self, payload: Any, params: dict[str, str], tenant: str) -> Upstream:
        if tenant not in self.tenants:
            return error(404, "NotFoundError", f"Tenant {tenant} not found")
        return answer(200, {"name": tenant})

    def create_database(self, payload: Any, params: dict[str, str], tenant: str) -> Upstream:
        databases = self.tenants.get(tenant)
        if databases is None:
            return error(404, "NotFoundError", f"Tenant {tenant} not found")
        if payload["name"] in databases:
            return error(409, "UniqueConstraintError", f"Database {payload['name']} already exists")
        databases[payload["name"]] = {}
        return answer(200, {})

    def list_databases(self, payload: Any, params: dict[str, str], tenant: str) -> Upstream:
        names = sorted(self.tenants.get(tenant, {}))
        return answer(200, [{"id": name, "name": name, "tenant": tenant} for name in _page(names, params)])

    def delete_database(self, payload: Any, params: dict[str, str], tenant: str, database: str) -> Upstream:
        if self.tenants.get(tenant, {}).pop(database, None) is None:
            return error(404, "NotFoundError", f"Database {database} not found")
        return answer(200, {})

    # --- collections ----------------------------------------------------------------------------------------

    def _names(self, tenant: str, database: str) -> dict[str, Collection] | None:
        return self.tenants.get(tenant, {}).get(database)

    def create_collection(self, payload: Any, params: dict[str, str], tenant: str, database: str) -> Upstream:
        names = self._names(tenant, database)
        if names is None:
            return error(404, "NotFoundError", f"Database {database} not found")
        existing = names.get(payload["name"])
        if existing is not None:
            if payload.get("get_or_create"):
                return answer(200, existing.model())
            return error(409, "UniqueConstraintError", f"Collection {payload['name']} already exists")
        created = Collection(
            str(uuid.uuid4()),
            payload["name"],
            tenant,
            database,
            payload.get("metadata"),
            payload.get("configuration") or {},
        )
        names[created.name] = created
        return answer(200, created.model())

    def list_collections(self, payload: Any, params: dict[str, str], tenant: str, database: str) -> Upstream:
        found = sorted((self._names(tenant, database) or {}).values(), key=lambda c: c.id)
        return answer(200, [c.model() for c in _page(found, params)])

    def get_collection(
        self, payload: Any, params: dict[str, str], tenant: str, database: str, collection: str
    ) -> Upstream:
        found = (self._names(tenant, database) or {}).get(collection) or self._by_id(collection)
        if found is None:
            return error(404, "NotFoundError", f"Collection [{collection}] does not exist.")
        return answer(200, found.model())

    def update_collection(
        self, payload: Any, params: dict[str, str], tenant: str, database: str, collection: str
    ) -> Upstream:
        found = self._by_id(collection)
        if found is None:
            return error(404, "NotFoundError", f"Collection [{collection}] does not exist.")
        if payload.get("new_name"):
            names = self._names(found.tenant, found.database) or {}
            names.pop(found.name)
            found.name = payload["new_name"]
            names[found.name] = found
        if payload.get("new_metadata") is not None:
            found.metadata = payload["new_metadata"]
        return answer(200, {})

    def delete_collection(
        self, payload: Any, params: dict[str, str], tenant: str, database: str, collection: str
    ) -> Upstream:
        names = self._names(tenant, database) or {}
        if names.pop(collection, None) is None:
            return error(404, "NotFoundError", f"Collection [{collection}] does not exist.")
        return answer(200, {})

    # --- records --------------------------------------------------------------------------------------------

    def _records(self, collection: str) -> Collection | Upstream:
        found = self._by_id(collection)
        if found is None:
            return error(404, "NotFoundError", f"Collection [{collection}] does not exist.")
        return found

    def write(self, op: str) -> Callable[..., Upstream]:
        def respond(payload: Any, params: dict[str, str], tenant: str, database: str, collection: str) -> Upstream:
            found = self._records(collection)
            if isinstance(found, Upstream):
                return found
            if op == "delete":
                for rid in _matching(found, payload):
                    found.records.pop(rid, None)
                return answer(200, {})
            ids = payload["ids"]
            if len(set(ids)) != len(ids):
                return error(400, "DuplicateIDError", "Expected IDs to be unique")
            for n, rid in enumerate(ids):
                record = {name: payload[name][n] for name in FIELDS if payload.get(name) is not None}
                if (op == "add" and rid in found.records) or (op == "update" and rid not in found.records):
                    continue
                if op == "add":
                    found.records[rid] = {name: record.get(name) for name in FIELDS}
                else:
                    found.records.setdefault(rid, dict.fromkeys(FIELDS)).update(record)
            return answer(201 if op == "add" else 200, {})

        return respond

    def get(self, payload: Any, params: dict[str, str], tenant: str, database: str, collection: str) -> Upstream:
        found = self._records(collection)
        if isinstance(found, Upstream):
            return found
        ids = sorted(_matching(found, payload))
        offset, limit = payload.get("offset") or 0, payload.get("limit")
        ids = ids[offset : offset + limit if limit is not None else None]
        include = payload.get("include", ["metadatas", "documents"])
        data: dict[str, Any] = {"ids": ids, "include": include}
        for name in FIELDS:
            data[name] = [found.records[i][name] for i in ids] if name in include else None
        return answer(200, data)

    def count(self, payload: Any, params: dict[str, str], tenant: str, database: str, collection: str) -> Upstream:
        found = self._records(collection)
        return found if isinstance(found, Upstream) else answer(200, len(found.records))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any] | Upstream:
    """Chroma refuses a body whose object names a field twice (its answer is a 422)."""
    seen = [name for name, _ in pairs]
    for name in seen:
        if seen.count(name) > 1:
            return error(422, "ChromaError", f"Failed to deserialize the JSON body: duplicate field `{name}`")
    return dict(pairs)


def _page(items: list[Any], params: dict[str, str]) -> list[Any]:
    offset = int(params.get("offset", 0))
    limit = int(params["limit"]) if "limit" in params else None
    return items[offset : offset + limit if limit is not None else None]


def _matching(collection: Collection, payload: dict[str, Any]) -> list[str]:
    """Ids named by `ids` and matching a `where` of plain equalities (all the fakes need)."""
    ids = payload.get("ids")
    found = [i for i in (ids if ids is not None else collection.records) if i in collection.records]
    where = payload.get("where") or {}
    return [i for i in found if all((collection.records[i]["metadatas"] or {}).get(k) == v for k, v in where.items())]


def _route(method: str, pattern: str, respond: Callable[..., Upstream]) -> tuple[str, re.Pattern[str], Any]:
    return method, re.compile(pattern), respond


_ROUTES = [
    _route("GET", r"/api/v2/heartbeat", FakeChroma.heartbeat),
    _route("POST", r"/api/v2/reset", FakeChroma.reset),
    _route("POST", r"/api/v2/tenants", FakeChroma.create_tenant),
    _route("GET", _T, FakeChroma.get_tenant),
    _route("POST", _T + "/databases", FakeChroma.create_database),
    _route("GET", _T + "/databases", FakeChroma.list_databases),
    _route("DELETE", _D, FakeChroma.delete_database),
    _route("POST", _D + "/collections", FakeChroma.create_collection),
    _route("GET", _D + "/collections", FakeChroma.list_collections),
    _route("GET", _C, FakeChroma.get_collection),
    _route("PUT", _C, FakeChroma.update_collection),
    _route("DELETE", _C, FakeChroma.delete_collection),
    *(
        _route("POST", _C + f"/{op}", lambda self, *a, op=op, **k: self.write(op)(*a, **k))
        for op in ("add", "upsert", "update", "delete")
    ),
    _route("POST", _C + "/get", FakeChroma.get),
    _route("POST", _C + "/query", FakeChroma.get),  # the nearest neighbours do not matter to these tests
    _route("GET", _C + "/count", FakeChroma.count),
]


class FakeCluster:
    """Several fake instances behind one in-process transport."""

    def __init__(self, count: int = 2) -> None:
        self.instances = [FakeChroma(f"http://fake-{n}:8000") for n in range(count)]
        self.by_url = {i.url: i for i in self.instances}

    def transport(self, request_timeout: float) -> InProcessTransport:
        return InProcessTransport(self._handle, request_timeout)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(self.by_url)

    async def _handle(
        self, instance: str, method: str, path: str, query: str, headers: Headers, body: bytes
    ) -> Upstream:
        return await self.by_url[instance].handle(method, path, query, body)


# --- a gateway in this process, in front of fake instances, on an in-memory store ------------------------------

FAST = {  # see failures and recoveries within a few tens of milliseconds
    "HEALTH_INTERVAL": "0.02",
    "HEALTH_TIMEOUT": "0.2",
    "HEALTH_FALL": "1",
    "HEALTH_RISE": "1",
    "POLL_INTERVAL": "0.02",
    "BACKOFF_BASE": "0.002",
    "BACKOFF_CAP": "0.02",
    "REQUEST_TIMEOUT": "0.5",
    "WRITE_TIMEOUT": "2",
    "READ_WAIT": "0.5",
}


def settings_for(cluster: FakeCluster, **extra: str) -> Settings:
    env = {f"CHROMA_HA_{k}": v for k, v in {**FAST, **extra}.items()}
    env["CHROMA_HA_INSTANCES"] = ",".join(cluster.urls)
    return Settings.load(env=env)


@contextlib.asynccontextmanager
async def in_process(cluster: FakeCluster, *, store: LogStore | None = None, **extra: str) -> AsyncIterator[Gateway]:
    """A started gateway (no HTTP server: requests go to `call`), stopped after the block."""
    transport = cluster.transport(float({**FAST, **extra}["REQUEST_TIMEOUT"]))
    gateway = Gateway(settings_for(cluster, **extra), store=store or MemoryStore(), transport=transport)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


async def call(gateway: Gateway, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request to the gateway's routes, as its HTTP server would hand it over; (status, parsed body)."""
    raw = orjson.dumps(body) if body is not None else b""
    path, _, query = path.partition("?")
    response = await gateway.routes(HttpRequest(method, path, query, [(b"content-type", b"application/json")], raw))
    return response.status, orjson.loads(response.body) if response.body else None


async def drained(gateway: Gateway, timeout: float = 5.0) -> None:
    """Until every instance has applied the whole log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        head = await gateway.store.head()
        if all(cursor >= head for cursor in gateway.progress.cursors.values()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"log not drained in {timeout}s: head {head}, cursors {gateway.progress.cursors}")


async def wait_until(what: str, check: Callable[[], object], timeout: float = 5.0) -> None:
    """Until `check()` holds, looking every 10 ms; an AssertionError naming `what` past `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
