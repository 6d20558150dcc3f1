"""Real parts for tests: Chroma servers and gateway processes on loopback, one way to wait for a condition, a stand-in
for outside HTTP services, and ways to compare instances.

Every helper that more than one test module uses lives here; test modules import from no other test module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import chromadb
import httpx
import pytest
from aiohttp import web

from chroma_ha import local_cluster
from chroma_ha.local_cluster import ChromaServer, free_port

T = TypeVar("T")

# Fast health checks and retries, so that tests see failures and recoveries within a second or two.
TEST_SETTINGS = {
    "CHROMA_HA_HEALTH_INTERVAL": "0.25",
    "CHROMA_HA_HEALTH_FALL": "2",
    "CHROMA_HA_HEALTH_RISE": "1",
    "CHROMA_HA_BACKOFF_CAP": "0.5",
    "CHROMA_HA_POLL_INTERVAL": "0.1",
}

POLL_INTERVAL_S = 0.1
SHOWN_CHARS = 2000  # of the last value a timed-out wait shows: a whole snapshot would bury the message

# A test marked with this runs once on each store backend: the `store_url` fixture (and every gateway of
# `gateway_with`) is then SQLite in one run, a fresh PostgreSQL database in the other.
on_every_store = pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
on_postgres = pytest.mark.parametrize("store_url", ["postgres"], indirect=True)


def wait_for(
    what: str,
    check: Callable[[], T],
    timeout: float = 30.0,
    *,
    until: Callable[[T], object] = bool,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """Call `check` until `until(value)` holds (by default: until the value is truthy) and return that value.

    On timeout, an AssertionError names `what` and shows the last value seen. An exception of a type in `ignoring`
    means "not yet" and is the value shown; any other exception, an AssertionError of `check` included, ends the
    wait at once.
    """
    deadline = time.monotonic() + timeout
    last: object = "(never checked)"
    while True:
        try:
            value = check()
        except ignoring as exc:
            last = exc
        else:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            shown = f"{type(last).__name__}: {last}" if isinstance(last, Exception) else repr(last)
            if len(shown) > SHOWN_CHARS:
                shown = shown[:SHOWN_CHARS] + f"... ({len(shown)} characters)"
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last seen: {shown}")
        time.sleep(POLL_INTERVAL_S)


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


@contextlib.contextmanager
def serving_in_thread(app: web.Application) -> Iterator[str]:
    """`serving(app)` on an event loop of its own thread, for a test that blocks (a synchronous client, sleeps)."""
    loop = asyncio.new_event_loop()
    base_url: concurrent.futures.Future[str] = concurrent.futures.Future()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with serving(app) as url:
                base_url.set_result(url)
                await stop.wait()
        except BaseException as exc:
            if not base_url.done():
                base_url.set_exception(exc)
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), name="stand-in-http", daemon=True)
    thread.start()
    try:
        yield base_url.result(timeout=10)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        if not thread.is_alive():
            loop.close()


@contextlib.contextmanager
def running_chroma(base: Path, count: int, allow_reset: bool = False) -> Iterator[list[ChromaServer]]:
    """`count` fresh Chroma servers with their data under `base`, all stopped when the block exits (also when one
    of them failed to start)."""
    with contextlib.ExitStack() as stopping:
        servers = [ChromaServer(base / f"chroma-{n}", free_port(), allow_reset=allow_reset) for n in range(count)]
        for server in servers:
            stopping.callback(server.stop)
            server.start(wait=False)
        for server in servers:
            server.wait_ready()
        yield servers


class GatewayProcess(local_cluster.GatewayProcess):
    """The gateway as a child process with test settings, and what tests ask of its admin API."""

    def environment(self) -> dict[str, str]:
        return {**super().environment(), **TEST_SETTINGS, **self.extra_env}

    @property
    def admin_headers(self) -> dict[str, str]:
        """What the admin routes need of this gateway: its admin token, when it has one."""
        token = self.extra_env.get("CHROMA_HA_ADMIN_TOKEN")
        return {"authorization": f"Bearer {token}"} if token else {}

    def wal_status(self) -> dict[str, Any]:
        return wal_status(self.url, self.admin_headers)

    def wait_drained(self, timeout: float = 60.0) -> dict[str, Any]:
        return wait_drained(self.url, timeout, self.admin_headers)


def wal_status(gateway_url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return httpx.get(f"{gateway_url}/wal/status", headers=headers, timeout=10).json()


def wait_drained(gateway_url: str, timeout: float = 60.0, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Until every instance has applied the whole log; the /wal/status that shows it."""
    return wait_for(
        "every instance to apply the whole log",
        lambda: wal_status(gateway_url, headers),
        timeout,
        until=lambda status: all(i["cursor"] >= status["head"] for i in status["instances"].values()),
    )


class WebhookReceiver:
    """The stand-in for Slack and for a generic webhook: every POST it got, as (path, body), while served."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, bytes]] = []
        self.url = ""
        self.app = web.Application()
        self.app.router.add_post("/{tail:.*}", self._receive)

    async def _receive(self, request: web.Request) -> web.Response:
        self.posts.append((request.path, await request.read()))
        return web.Response(text="ok")

    def bodies(self, prefix: str = "/") -> list[dict[str, Any]]:
        """The JSON bodies posted to paths under `prefix`, in the order they came."""
        return [json.loads(body) for path, body in list(self.posts) if path.startswith(prefix)]


@contextlib.contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    with serving_in_thread(receiver.app) as url:
        receiver.url = url
        yield receiver


def run_cli(gateway: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`chroma-ha <args>` with the gateway's own settings (its credentials to instances included), from the
    environment, and no terminal to ask on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_HA_")}
    env.update({k: v for k, v in gateway.extra_env.items() if k.startswith("CHROMA_HA_")})
    env.update({"CHROMA_HA_INSTANCES": ",".join(gateway.instances), "CHROMA_HA_STORE": gateway.store})
    return subprocess.run(
        [sys.executable, "-m", "chroma_ha", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=gateway.workdir,
    )


def snapshot(url: str, tenant: str = "default_tenant", database: str = "default_database") -> dict[str, Any]:
    """Everything an instance holds in one database, compared with `get` (never `query`: HNSW is approximate)."""
    base = f"{url}/api/v2/tenants/{tenant}/databases/{database}"
    collections = httpx.get(f"{base}/collections", params={"limit": 100000}, timeout=30).raise_for_status().json()
    state: dict[str, Any] = {}
    for c in sorted(collections, key=lambda c: c["name"]):
        got = (
            httpx.post(
                f"{base}/collections/{c['id']}/get",
                json={"include": ["embeddings", "metadatas", "documents", "uris"]},
                timeout=60,
            )
            .raise_for_status()
            .json()
        )
        records = {
            rid: (
                [round(x, 5) for x in (got["embeddings"][n] or [])],
                got["metadatas"][n],
                got["documents"][n],
                got["uris"][n],
            )
            for n, rid in enumerate(got["ids"])
        }
        state[c["name"]] = {
            "metadata": c["metadata"],
            "configuration": c["configuration_json"],
            "records": records,
        }
    return state


def differences(states: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """For each instance that differs from the first one, the collections that differ (by name)."""
    (_, first), *others = states.items()
    found: dict[str, list[str]] = {}
    for url, state in others:
        differing = sorted(name for name in first.keys() | state.keys() if first.get(name) != state.get(name))
        if differing:
            found[url] = differing
    return found


class Snapshots(dict[str, dict[str, Any]]):
    """Snapshots by instance URL, shown by what differs: the whole records would bury a timeout's message."""

    def __repr__(self) -> str:
        return f"collections that differ from {next(iter(self), None)}'s: {differences(self) if self else {}}"


def wait_until_identical(urls: list[str], timeout: float = 30.0) -> dict[str, Any]:
    """Until every instance holds what the first one holds; that state. An instance being rebuilt may fail a read
    on the way (a collection dropped between listing and reading it), which only means: not yet."""
    states = wait_for(
        f"{', '.join(urls)} to hold the same records",
        lambda: Snapshots((url, snapshot(url)) for url in urls),
        timeout,
        until=lambda states: not differences(states),
        ignoring=(httpx.HTTPError,),
    )
    return states[urls[0]]


CLIENT_AUTH_PROVIDER = "chromadb.auth.token_authn.TokenAuthClientProvider"


def client_auth(token: str, header: str = "Authorization") -> dict[str, str]:
    """The official client's settings that send `token` as Chroma's token auth does: `Authorization: Bearer`, or
    `X-Chroma-Token` with `header="X-Chroma-Token"`."""
    return {
        "chroma_client_auth_provider": CLIENT_AUTH_PROVIDER,
        "chroma_client_auth_credentials": token,
        "chroma_auth_token_transport_header": header,
    }


def client_headers(auth: dict[str, str]) -> dict[str, str]:
    """The header that `client_auth` settings make the sync client send. The async client (chromadb 1.5) ignores
    its auth provider (chroma-core/chroma#2488) and sends only the headers it is given, so it is given this."""
    if not auth:
        return {}
    token, header = auth["chroma_client_auth_credentials"], auth["chroma_auth_token_transport_header"]
    return {header: f"Bearer {token}" if header == "Authorization" else token}


def admin_client(port: int, auth: dict[str, Any] | None = None) -> chromadb.AdminClient:
    """The official admin client (tenants and databases) of the gateway on `port`, with `client_auth` settings."""
    return chromadb.AdminClient(
        chromadb.Settings(
            chroma_api_impl="chromadb.api.fastapi.FastAPI",
            chroma_server_host="127.0.0.1",
            chroma_server_http_port=port,
            **(auth or {}),
        )
    )


def catalog_and_data_churn(port: int) -> None:
    """Every kind of catalog change and write through the gateway on `port`, ending with two collections in the
    default database: `renamed` ({"v": 2}, records a and b) and `temp` (record t2)."""
    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    admin = chromadb.AdminClient(
        chromadb.Settings(
            chroma_api_impl="chromadb.api.fastapi.FastAPI", chroma_server_host="127.0.0.1", chroma_server_http_port=port
        )
    )
    admin.create_database("extra")
    admin.create_database("dropped")
    admin.delete_database("dropped")
    col = client.create_collection("first", metadata={"v": 1}, embedding_function=None)
    col.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["A", "B"])
    col.upsert(ids=["b", "c"], embeddings=[[0.5, 0.5], [0.2, 0.8]])
    col.update(ids=["a"], embeddings=[[0.9, 0.1]], documents=["A2"])
    col.delete(ids=["c"])
    col.modify(name="renamed", metadata={"v": 2})
    same = client.get_or_create_collection("renamed", embedding_function=None)
    assert same.id == col.id
    temp = client.create_collection("temp", embedding_function=None)
    temp.add(ids=["t"], embeddings=[[1.0, 1.0]])
    client.delete_collection("temp")
    reborn = client.create_collection("temp", embedding_function=None)
    reborn.add(ids=["t2"], embeddings=[[2.0, 2.0]])


TORTURE_SEED_VARIABLE = "TORTURE_SEED"


def torture_seed() -> int:
    """The seed of a recorded-history test: `TORTURE_SEED` to replay a run, else a fresh one; printed either way,
    so a failing run's schedule can be run again."""
    given = os.environ.get(TORTURE_SEED_VARIABLE)
    seed = int(given) if given else random.SystemRandom().randrange(2**32)
    print(f"torture seed {seed} (replay: {TORTURE_SEED_VARIABLE}={seed})", flush=True)
    return seed
