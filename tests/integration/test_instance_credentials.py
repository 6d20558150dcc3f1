"""Instances behind an authenticating proxy: every call the gateway makes to an instance carries the gateway's own
credentials (instance_headers, for every instance and for one, and the userinfo of an instance URL as Basic), so
writes replicate, a wiped instance is rebuilt by bootstrap, `verify` and `repair` work and probes keep the instances
up; the proxies never see a request without them. Without them, the gateway reports the instances failing.

The proxy is the test's own (aiohttp): it refuses with 401 any request that lacks the header it expects and forwards
the rest to its real Chroma server.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import chromadb
import httpx
import pytest
from aiohttp import web

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, run_cli, serving_in_thread, snapshot, wait_for

SHARED_KEY = "gw-shared-7f3a9c"  # X-Gateway, sent to every instance
BEARER_1 = "inst1-bearer-51e0d2"  # Authorization for instance 1 only (its per-instance form, by index)
USER_0, PASSWORD_0 = "gw", "inst0-pass-88c41b"  # userinfo of instance 0's URL: sent as Basic
BOOTSTRAP_TIMEOUT_S = 120.0
# Not forwarded by the proxy: they describe its own hop, or are its business.
_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "authorization", "x-gateway"}


class AuthProxy:
    """In front of one Chroma server: 401 unless every expected header has its value; forwards the rest."""

    def __init__(self, upstream: str, expected: dict[str, str]) -> None:
        self.upstream = upstream
        self.expected = expected
        self.refused: list[str] = []
        self.forwarded = 0
        self.app = web.Application(client_max_size=256 * 2**20)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)
        self.app.on_cleanup.append(self._close)
        self._session: aiohttp.ClientSession | None = None

    async def _close(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if any(request.headers.get(name) != value for name, value in self.expected.items()):
            self.refused.append(f"{request.method} {request.path_qs}")
            return web.json_response({"error": "Unauthorized", "message": "no gateway credentials"}, status=401)
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=await request.read()
        ) as answer:
            body = await answer.read()
            self.forwarded += 1
            shown = {k: v for k, v in answer.headers.items() if k.lower() == "content-type"}
            return web.Response(status=answer.status, body=body, headers=shown)


@contextlib.contextmanager
def proxied(servers: list[ChromaServer]) -> Iterator[tuple[list[AuthProxy], list[str]]]:
    """An authenticating proxy in front of each server; the proxies and the instance URLs the gateway is given."""
    basic = base64.b64encode(f"{USER_0}:{PASSWORD_0}".encode()).decode()
    proxies = [
        AuthProxy(servers[0].url, {"X-Gateway": SHARED_KEY, "Authorization": f"Basic {basic}"}),
        AuthProxy(servers[1].url, {"X-Gateway": SHARED_KEY, "Authorization": f"Bearer {BEARER_1}"}),
    ]
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(serving_in_thread(p.app)) for p in proxies]
        urls[0] = urls[0].replace("http://", f"http://{USER_0}:{PASSWORD_0}@")
        yield proxies, urls


def health(gateway: GatewayProcess) -> dict[str, Any]:
    return httpx.get(f"{gateway.url}/health", timeout=10).json()


@pytest.fixture
def gateway_behind_proxies(
    tmp_path: Path, store_url: str, chroma_pair: list[ChromaServer]
) -> Iterator[tuple[GatewayProcess, list[AuthProxy], list[str]]]:
    with proxied(chroma_pair) as (proxies, urls):
        env = {
            "CHROMA_HA_INSTANCE_HEADERS": f"X-Gateway: {SHARED_KEY},1=Authorization: Bearer {BEARER_1}",
            "CHROMA_HA_RETENTION": "0.5",
        }
        gateway = GatewayProcess(urls, store_url, tmp_path / "gateway", env=env)
        try:
            gateway.start()
            yield gateway, proxies, urls
        finally:
            gateway.stop()


def test_every_call_to_an_instance_carries_the_gateway_credentials(
    gateway_behind_proxies: tuple[GatewayProcess, list[AuthProxy], list[str]], chroma_pair: list[ChromaServer]
) -> None:
    gateway, proxies, urls = gateway_behind_proxies
    known = [u.replace(f"{USER_0}:{PASSWORD_0}@", "") for u in urls]  # instances are known without userinfo
    wait_for("both instances up", lambda: health(gateway), until=lambda h: h["healthy_instances"] == "2/2")

    client = chromadb.HttpClient(host="127.0.0.1", port=gateway.port)
    main = client.create_collection("main", metadata={"kind": "main"}, embedding_function=None)
    main.add(ids=[f"r{n}" for n in range(300)], embeddings=[[float(n), 1.0] for n in range(300)])
    main.delete(ids=["r1", "r2"])
    main.update(ids=["r3"], metadatas=[{"touched": True}])
    assert main.count() == 298 and main.get(ids=["r3"])["metadatas"] == [{"touched": True}]
    gateway.wait_drained()
    first = snapshot(chroma_pair[0].url)
    assert set(first["main"]["records"]) == {f"r{n}" for n in range(300)} - {"r1", "r2"}
    assert snapshot(chroma_pair[1].url) == first

    # a wiped instance, once the log is pruned, is rebuilt by bootstrap through its proxy
    wait_for("the log to be pruned", lambda: gateway.wal_status()["oldest"], 60, until=lambda oldest: oldest > 3)
    chroma_pair[1].wipe()
    chroma_pair[1].start()
    done = wait_for(
        "the bootstrap of instance 1",
        lambda: gateway.wal_status()["bootstrap"].get(known[1], {}),
        BOOTSTRAP_TIMEOUT_S,
        until=lambda shown: shown.get("state") == "done",
    )
    assert done["source"] == known[0] and done["records_copied"] == 298
    gateway.wait_drained()
    assert snapshot(chroma_pair[1].url) == first

    # verify, then repair of a difference made behind the gateway's back (straight to the server, no proxy)
    verified = run_cli(gateway, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    behind = httpx.get(f"{chroma_pair[1].url}/api/v2/tenants/default_tenant/databases/default_database/collections")
    [held] = [c for c in behind.json() if c["name"] == "main"]
    base = f"{chroma_pair[1].url}/api/v2/tenants/default_tenant/databases/default_database/collections/{held['id']}"
    httpx.post(f"{base}/delete", json={"ids": ["r10", "r11"]}, timeout=10).raise_for_status()
    differing = run_cli(gateway, "verify")
    assert differing.returncode == 1, differing.stdout + differing.stderr
    repaired = run_cli(gateway, "repair", "--yes", "--reference", known[0])
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert snapshot(chroma_pair[1].url) == first
    assert run_cli(gateway, "verify").returncode == 0

    # the probes kept both up, and no request ever reached a proxy without the gateway's credentials
    assert health(gateway)["healthy_instances"] == "2/2"
    assert all(p.forwarded > 0 for p in proxies)
    assert [p.refused for p in proxies] == [[], []]
    for output in (verified.stdout, verified.stderr, repaired.stdout, repaired.stderr, gateway.log_text()):
        assert PASSWORD_0 not in output and BEARER_1 not in output and SHARED_KEY not in output


def test_without_the_credentials_the_instances_are_reported_failing_and_writes_wait_for_them(
    tmp_path: Path, store_url: str, chroma_pair: list[ChromaServer]
) -> None:
    """Issue 12: the appliers stalled, and a 401 of the proxy would have been an entry's outcome. Without the
    credentials the instances are reported failing at once, a write is logged and answered 503 (not left hanging,
    not refused for good), and it is applied once the gateway has the credentials."""
    with proxied(chroma_pair) as (proxies, urls):
        bare = GatewayProcess(urls, store_url, tmp_path / "bare", env={"CHROMA_HA_WRITE_TIMEOUT": "2"})
        try:
            bare.start()
            shown = wait_for(
                "both instances reported down",
                lambda: httpx.get(f"{bare.url}/health", timeout=10),
                30,
                until=lambda answer: answer.json()["healthy_instances"] == "0/2",
            )
            assert shown.json()["reads"] == "unavailable"
            status = httpx.get(f"{bare.url}/status", timeout=10).json()
            assert all("401" in (i["last_error"] or "") for i in status["instances"].values()), status
            answer = httpx.post(f"{bare.url}/api/v2/tenants", json={"name": "acme"}, timeout=60)
            assert answer.status_code == 503 and "logged" in answer.json()["message"], answer.text
            wal = bare.wal_status()
            assert wal["pending"] >= 1 and wal["divergences"] == []
        finally:
            bare.stop()
        assert all(p.refused for p in proxies) and all(p.forwarded == 0 for p in proxies)
        for proxy in proxies:
            proxy.refused.clear()

        env = {"CHROMA_HA_INSTANCE_HEADERS": f"X-Gateway: {SHARED_KEY},1=Authorization: Bearer {BEARER_1}"}
        gateway = GatewayProcess(urls, store_url, tmp_path / "gateway", env=env)
        try:
            gateway.start()
            gateway.wait_drained()
            for server in chroma_pair:
                assert httpx.get(f"{server.url}/api/v2/tenants/acme", timeout=10).json()["name"] == "acme"
        finally:
            gateway.stop()
    assert [p.refused for p in proxies] == [[], []]
