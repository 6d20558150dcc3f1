"""The route table against a real Chroma server: every route of its `/openapi.json` has a kind, and a request no
route takes is answered as that server answers it, without reaching an instance."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from chroma_ha.app import Gateway
from chroma_ha.gateway.http_server import HttpRequest
from chroma_ha.gateway.routes import Kind, classify
from chroma_ha.local_cluster import ChromaServer, free_port
from chroma_ha.settings import Settings
from chroma_ha.store.memory import MemoryStore

SAMPLES = {"collection_id": "11111111-1111-4111-8111-111111111111", "crn": "t:d:docs"}


@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    server = ChromaServer(Path(tmp_path_factory.mktemp("chroma")), free_port()).start()
    yield server
    server.stop()


@pytest.fixture
async def gateway(chroma: ChromaServer) -> AsyncIterator[Gateway]:
    settings = Settings.load(env={"CHROMA_HA_INSTANCES": chroma.url})
    gateway = Gateway(settings, store=MemoryStore())
    await gateway.start()
    yield gateway
    await gateway.stop()


def chroma_routes(chroma: ChromaServer) -> list[tuple[str, str]]:
    spec = httpx.get(f"{chroma.url}/openapi.json", timeout=10).raise_for_status().json()
    found = []
    for template, methods in spec["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: SAMPLES.get(m.group(1), f"some_{m.group(1)}"), template)
        found.extend((method.upper(), path) for method in methods)
    return found


def test_every_route_of_chromas_openapi_has_a_kind(chroma: ChromaServer) -> None:
    routes = chroma_routes(chroma)
    assert len(routes) >= 35
    unknown = [(m, p) for m, p in routes if classify(m, p).kind is Kind.UNKNOWN]
    assert unknown == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v2/"),
        ("GET", "/api/v2/heartbeat/"),
        ("POST", "/api/v2/nothing-here"),
        ("DELETE", "/api/v2/tenants/default_tenant"),
        ("GET", "/api/v2/tenants/default_tenant/databases/default_database/collections/docs/add"),
        ("PUT", "/api/v2/tenants/default_tenant/databases"),
        ("OPTIONS", "/api/v2/version"),
    ],
)
async def test_a_request_no_route_takes_gets_what_chroma_answers(
    chroma: ChromaServer, gateway: Gateway, method: str, path: str
) -> None:
    async with httpx.AsyncClient() as client:
        direct = await client.request(method, f"{chroma.url}{path}")
    answer = await gateway.routes(HttpRequest(method, path, "", [], b""))
    assert (answer.status, answer.body) == (direct.status_code, direct.content)
    assert dict(answer.headers).get(b"allow", b"").decode() == direct.headers.get("allow", "")
