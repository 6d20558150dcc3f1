"""The acceptance run of a live deployment, over HTTP from the outside, as its clients and operators see it.

Invariant: it touches only its own scratch collection (a unique name), and removes it whatever happens once it was
created; every wait is bounded by the run's timeout. The judgements are in `acceptance.py`.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from .acceptance import (
    ADMIN_DOCUMENTS,
    FAIL,
    PASS,
    SCRATCH_PREFIX,
    SKIP,
    CheckFailed,
    CheckReport,
    CheckResult,
    NotApplicable,
    data_auth_on,
    describe_lag,
    document_deletion,
    judge_document,
    judge_health,
    judge_metrics,
    lagging,
    missing_ids,
    setting,
)

POLL_S = 0.1
DOWN_GRACE_S = 3.0  # a lagging instance reported down this long is not waited for until the timeout
DIMENSION = 4
ENTRIES_SHOWN = 100  # the most /wal/entries shows on either side of a seq
# Known vectors, far apart: the nearest neighbour of each is itself under any metric Chroma offers.
VECTORS = {f"v{n}": [1.0 if d == n else 0.0 for d in range(DIMENSION)] for n in range(DIMENSION)}


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise CheckFailed(f"answered {self.status} with a body that is not JSON: {self.body[:200]!r}") from None


class AcceptanceRun:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        admin_token: str = "",
        token: str = "",
        timeout: float = 30.0,
        tenant: str = "default_tenant",
        database: str = "default_database",
    ) -> None:
        self._session = session
        self._url = url.rstrip("/")
        self._admin_token = admin_token
        self._token = token
        self._timeout = timeout
        self._base = f"/api/v2/tenants/{tenant}/databases/{database}/collections"
        self.report = CheckReport(self._url, scratch=f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}")
        self._status: dict[str, Any] = {}
        self._collection_id = ""

    # --- HTTP ----------------------------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, body: Any = None, *, admin: bool = False, credentials: bool = True
    ) -> Answer:
        token = self._admin_token if admin else self._token
        headers = {"authorization": f"Bearer {token}"} if token and credentials else {}
        data = orjson.dumps(body) if body is not None else None
        if data is not None:
            headers["content-type"] = "application/json"
        try:
            async with self._session.request(method, self._url + path, data=data, headers=headers) as response:
                return Answer(response.status, await response.read())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise CheckFailed(f"{method} {path}: {type(exc).__name__}: {exc}") from None

    async def _json(self, method: str, path: str, body: Any = None, *, admin: bool = False, ok: int = 200) -> Any:
        answer = await self._call(method, path, body, admin=admin)
        if answer.status != ok:
            raise CheckFailed(f"{method} {path} answered {answer.status}: {answer.body[:300].decode(errors='replace')}")
        return answer.json()

    def _collection(self, suffix: str = "") -> str:
        return f"{self._base}/{self._collection_id}{suffix}"

    # --- the run ---------------------------------------------------------------------------------------------

    async def _step(self, name: str, check: Callable[[], Awaitable[str]]) -> bool:
        started = time.perf_counter()
        instances: list[str] = []
        try:
            detail, status = await check(), PASS
        except NotApplicable as exc:
            detail, status = str(exc), SKIP
        except CheckFailed as exc:
            detail, status, instances = str(exc), FAIL, exc.instances
        self.report.results.append(
            CheckResult(name, status, round(time.perf_counter() - started, 4), detail, list(instances))
        )
        return status != FAIL

    async def run(self) -> CheckReport:
        await self._step("health", self._health)
        await self._step("admin /status", self._read_status)
        for path in ADMIN_DOCUMENTS:
            if path not in ("/status", "/wal/entries"):  # /wal/entries is read once the run has written
                await self._step(f"admin {path}", functools.partial(self._admin_document, path))
        await self._step("admin /dashboard", self._dashboard)
        await self._step("metrics", self._metrics)
        await self._step("auth", self._auth)
        try:
            if await self._step("scratch collection created", self._create) and await self._step(
                "write visible at once", self._write
            ):
                await self._step("write applied on every instance", self._replicated)
                await self._step("admin /wal/entries", self._logged)
                await self._step("query finds the nearest neighbour", self._query)
                await self._step("delete by id", self._delete_by_id)
                await self._step("delete by where", self._delete_by_where)
                await self._step("document-level delete", self._document_delete)
                await self._step("deletes applied on every instance", self._replicated)
        finally:
            await self._step("scratch collection removed", self._remove)
        return self.report

    # --- the checks ------------------------------------------------------------------------------------------

    async def _health(self) -> str:
        answer = await self._call("GET", "/health")
        return judge_health(answer.json(), answer.status)

    async def _read_status(self) -> str:
        self._status = await self._json("GET", "/status", admin=True)
        return judge_document("/status", self._status)

    async def _admin_document(self, path: str) -> str:
        return judge_document(path, await self._json("GET", path, admin=True))

    async def _dashboard(self) -> str:
        answer = await self._call("GET", "/dashboard", admin=True)
        if answer.status != 200 or b"<html" not in answer.body[:2000].lower():
            raise CheckFailed(f"/dashboard answered {answer.status} without an HTML page")
        return f"{len(answer.body)} bytes of HTML"

    async def _metrics(self) -> str:
        answer = await self._call("GET", "/metrics")
        if answer.status != 200:
            raise CheckFailed(f"/metrics answered {answer.status}")
        return judge_metrics(answer.body.decode(errors="replace"))

    async def _auth(self) -> str:
        said = []
        if setting(self._status, "admin_token"):
            answer = await self._call("GET", "/status", admin=True, credentials=False)
            if answer.status != 401:
                raise CheckFailed(f"the admin token is set, yet /status without it answered {answer.status}")
            said.append("admin routes refuse a request without the admin token (401)")
        if self._token or data_auth_on(self._status):
            answer = await self._call("GET", f"{self._base}?limit=1", credentials=False)
            if answer.status != 401:
                raise CheckFailed(f"data auth is on, yet a listing without a token answered {answer.status}")
            said.append("data routes refuse a request without a token (401)")
        if not said:
            raise NotApplicable("no admin token and no data auth configured")
        return "; ".join(said)

    async def _create(self) -> str:
        created = await self._json(
            "POST", self._base, {"name": self.report.scratch, "metadata": {"chroma_ha_check": True}}
        )
        self._collection_id = str(created["id"])
        return f"{self.report.scratch} ({self._collection_id})"

    async def _add(self, ids: list[str], embeddings: list[list[float]], metadatas: list[dict[str, Any]]) -> None:
        body = {"ids": ids, "embeddings": embeddings, "metadatas": metadatas, "documents": ids}
        answer = await self._call("POST", self._collection("/add"), body)
        if answer.status not in (200, 201):
            raise CheckFailed(f"add answered {answer.status}: {answer.body[:300].decode(errors='replace')}")

    async def _get(self, ids: list[str] | None = None, where: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"include": ["metadatas", "documents"]}
        if ids is not None:
            body["ids"] = ids
        if where is not None:
            body["where"] = where
        got: dict[str, Any] = await self._json("POST", self._collection("/get"), body)
        return got

    async def _write(self) -> str:
        ids = sorted(VECTORS)
        await self._add(ids, [VECTORS[i] for i in ids], [{"group": "known", "n": n} for n, _ in enumerate(ids)])
        missing = missing_ids(await self._get(ids), ids)
        if missing:
            raise CheckFailed(f"records {', '.join(missing)} acknowledged but not read back at once")
        return f"{len(ids)} records added and read back"

    async def _replicated(self) -> str:
        """Every instance's cursor reaches the log's head as read after the writes (an upper bound of their seq)."""
        started = time.monotonic()
        seq = int((await self._json("GET", "/wal/status", admin=True))["head"])
        deadline = started + self._timeout
        down_since: float | None = None
        while True:
            status = await self._json("GET", "/wal/status", admin=True)
            behind = lagging(status, seq)
            if not behind:
                took = time.monotonic() - started
                return f"seq {seq} applied on {len(status['instances'])} instances within {took:.3f}s"
            now = time.monotonic()
            if all(not up for _, up in behind.values()):
                down_since = down_since if down_since is not None else now
            else:
                down_since = None
            if now >= deadline or (down_since is not None and now - down_since >= DOWN_GRACE_S):
                waited = now - started
                raise CheckFailed(f"not applied within {waited:.1f}s: {describe_lag(behind, seq)}", sorted(behind))
            await asyncio.sleep(POLL_S)

    async def _logged(self) -> str:
        """The log shows the write: the entries before its head include this run's add, with its outcome."""
        head = int((await self._json("GET", "/wal/status", admin=True))["head"])
        document = await self._json("GET", f"/wal/entries?seq={head}&before={ENTRIES_SHOWN}&after=0", admin=True)
        judge_document("/wal/entries", document)
        ours = [e for e in document["entries"] if e["op"] == "add" and self._collection_id in e["path"]]
        if not ours:
            return f"{len(document['entries'])} entries shown; this run's add is older than the last {ENTRIES_SHOWN}"
        outcome = ours[-1]["outcome"] or {}
        return f"this run's add at seq {ours[-1]['seq']}, answered {outcome.get('status')} by {outcome.get('instance')}"

    async def _query(self) -> str:
        for rid, vector in VECTORS.items():
            body = {"query_embeddings": [vector], "n_results": 1, "include": ["distances"]}
            got = await self._json("POST", self._collection("/query"), body)
            found = (got.get("ids") or [[]])[0]
            if found != [rid]:
                raise CheckFailed(f"the nearest neighbour of {rid}'s own vector was {found}, not {rid}")
        return f"each of {len(VECTORS)} known vectors finds itself"

    async def _delete(self, body: dict[str, Any]) -> None:
        await self._json("POST", self._collection("/delete"), body)

    async def _delete_by_id(self) -> str:
        await self._delete({"ids": ["v0"]})
        if not missing_ids(await self._get(["v0"]), ["v0"]):
            raise CheckFailed("v0 is still read back after its delete")
        return "v0 deleted and gone"

    async def _delete_by_where(self) -> str:
        extra = [f"w{n}" for n in range(3)]
        await self._add(extra, [[0.5, 0.5, 0.5, float(n)] for n in range(3)], [{"group": "where"} for _ in extra])
        await self._delete({"where": {"group": "where"}})
        left = (await self._get(where={"group": "where"})).get("ids") or []
        if left:
            raise CheckFailed(f"records {', '.join(left)} still read back after a delete by where")
        kept = missing_ids(await self._get(["v1", "v2", "v3"]), ["v1", "v2", "v3"])
        if kept:
            raise CheckFailed(f"a delete by where also removed {', '.join(kept)}")
        return f"{len(extra)} records deleted by where, the others kept"

    async def _document_delete(self) -> str:
        key = document_deletion(self._status, self.report.scratch)
        chunks = [f"doc-chunk{n}" for n in range(3)]
        await self._add(chunks, [[0.25, 0.25, float(n), 0.25] for n in range(3)], [{key: "doc"} for _ in chunks])
        await self._delete({"ids": ["doc"]})
        left = sorted(set(chunks) - set(missing_ids(await self._get(chunks), chunks)))
        if left:
            raise CheckFailed(f"deleting document 'doc' left its chunks {', '.join(left)} (key {key})")
        return f"deleting document 'doc' removed its {len(chunks)} chunks (key {key})"

    async def _remove(self) -> str:
        """Also after a failed create: a collection created whose answer was lost must not stay behind."""
        answer = await self._call("DELETE", f"{self._base}/{self.report.scratch}")
        if answer.status not in (200, 404):
            raise CheckFailed(f"deleting {self.report.scratch} answered {answer.status}")
        answer = await self._call("GET", f"{self._base}/{self.report.scratch}")
        if answer.status != 404:
            raise CheckFailed(f"{self.report.scratch} still answers {answer.status} after its delete")
        return f"{self.report.scratch} deleted"


async def run_check(url: str, *, timeout: float, **options: Any) -> CheckReport:
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        return await AcceptanceRun(session, url, timeout=timeout, **options).run()
