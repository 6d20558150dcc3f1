"""Real parts for tests: Chroma servers and gateway processes on loopback, and ways to compare instances."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from chroma_ha import local_cluster
from chroma_ha.local_cluster import ChromaServer, free_port

# Fast health checks and retries, so that tests see failures and recoveries within a second or two.
TEST_SETTINGS = {
    "CHROMA_HA_HEALTH_INTERVAL": "0.25",
    "CHROMA_HA_HEALTH_FALL": "2",
    "CHROMA_HA_HEALTH_RISE": "1",
    "CHROMA_HA_BACKOFF_CAP": "0.5",
    "CHROMA_HA_POLL_INTERVAL": "0.1",
}


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """`app` on a free loopback port for the block, as its base URL: a stand-in for an outside HTTP service."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def start_chroma(base: Path, count: int, allow_reset: bool = False) -> list[ChromaServer]:
    servers = [ChromaServer(base / f"chroma-{n}", free_port(), allow_reset=allow_reset) for n in range(count)]
    for server in servers:
        server.start(wait=False)
    for server in servers:
        server.wait_ready()
    return servers


class GatewayProcess(local_cluster.GatewayProcess):
    """The gateway as a child process with test settings, and what tests ask of its admin API."""

    def environment(self) -> dict[str, str]:
        return {**super().environment(), **TEST_SETTINGS, **self.extra_env}

    def wal_status(self) -> dict[str, Any]:
        return wal_status(self.url)

    def wait_drained(self, timeout: float = 60.0) -> dict[str, Any]:
        return wait_drained(self.url, timeout)


def wal_status(gateway_url: str) -> dict[str, Any]:
    return httpx.get(f"{gateway_url}/wal/status", timeout=10).json()


def wait_drained(gateway_url: str, timeout: float = 60.0) -> dict[str, Any]:
    """Until every instance has applied the whole log."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = wal_status(gateway_url)
        if all(i["cursor"] >= status["head"] for i in status["instances"].values()):
            return status
        time.sleep(0.1)
    raise AssertionError(f"log not drained in {timeout}s: {status}")


def snapshot(url: str, tenant: str = "default_tenant", database: str = "default_database") -> dict[str, Any]:
    """Everything an instance holds in one database, compared with `get` (never `query`: HNSW is approximate)."""
    base = f"{url}/api/v2/tenants/{tenant}/databases/{database}"
    collections = httpx.get(f"{base}/collections", params={"limit": 100000}, timeout=30).raise_for_status().json()
    state: dict[str, Any] = {}
    for c in sorted(collections, key=lambda c: c["name"]):
        got = httpx.post(
            f"{base}/collections/{c['id']}/get",
            json={"include": ["embeddings", "metadatas", "documents", "uris"]}, timeout=60,
        ).raise_for_status().json()
        records = {
            rid: (
                [round(x, 5) for x in (got["embeddings"][n] or [])], got["metadatas"][n], got["documents"][n],
                got["uris"][n],
            )
            for n, rid in enumerate(got["ids"])
        }
        state[c["name"]] = {
            "metadata": c["metadata"], "configuration": c["configuration_json"], "records": records,
        }
    return state


def wait_until_identical(urls: list[str], timeout: float = 30.0) -> None:
    """Until every instance holds what the first one holds, or `timeout`: the caller compares afterwards. An
    instance being rebuilt may fail a read on the way (a collection dropped between listing and reading it),
    which only means: not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            states = [snapshot(url) for url in urls]
        except httpx.HTTPError:
            states = []
        if states and all(state == states[0] for state in states):
            return
        time.sleep(0.2)
