"""The instance client against a real Chroma server: a read sent with `Expect: 100-continue` gets its real answer
(Chroma's `100 Continue` used to be taken as the final one, and the real answer left for the next request), and
a HEAD request gets its head; the pooled connection stays in step for the next request either way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
import pytest_asyncio

from chroma_ha.errors import InstanceError
from chroma_ha.local_cluster import ChromaServer, free_port
from chroma_ha.upstream.client import InstanceClient, Upstream

REQUEST_TIMEOUT_S = 10.0
COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"
JSON = [(b"content-type", b"application/json")]


@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    server = ChromaServer(Path(tmp_path_factory.mktemp("chroma")), free_port()).start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def client() -> AsyncIterator[InstanceClient]:
    client = InstanceClient(request_timeout=REQUEST_TIMEOUT_S)
    yield client
    await client.close()


async def heartbeat_on_a_pooled_connection(client: InstanceClient, url: str) -> Upstream:
    """The next answer on a connection the pool kept: send_now sends on nothing else."""
    outcome: asyncio.Future[tuple[Upstream | None, InstanceError | None]] = asyncio.get_running_loop().create_future()
    sent = client.send_now(url, "GET", "/api/v2/heartbeat", answered=lambda up, error: outcome.set_result((up, error)))
    assert sent, "the pool kept no connection"
    upstream, error = await outcome
    assert error is None and upstream is not None
    return upstream


async def test_a_read_sent_with_expect_gets_its_real_answer(chroma: ChromaServer, client: InstanceClient) -> None:
    created = await client.request(chroma.url, "POST", COLLECTIONS, headers=JSON, body=b'{"name": "expect-read"}')
    assert created.status == 200, created.body
    records = f"{COLLECTIONS}/{orjson.loads(created.body)['id']}"
    added = await client.request(
        chroma.url, "POST", f"{records}/add", headers=JSON, body=b'{"ids": ["a"], "embeddings": [[1, 2]]}'
    )
    assert added.status == 201, added.body
    read = await client.request(
        chroma.url, "POST", f"{records}/get", headers=[*JSON, (b"expect", b"100-continue")], body=b"{}"
    )
    assert read.status == 200, (read.status, read.body)  # not Chroma's 100 Continue
    assert orjson.loads(read.body)["ids"] == ["a"]
    after = await heartbeat_on_a_pooled_connection(client, chroma.url)
    assert (after.status, list(orjson.loads(after.body))) == (200, ["nanosecond heartbeat"])


async def test_a_head_request_gets_its_head(chroma: ChromaServer, client: InstanceClient) -> None:
    await client.request(chroma.url, "GET", "/api/v2/heartbeat")  # a pooled connection for the HEAD
    head = await client.request(chroma.url, "HEAD", "/api/v2/heartbeat")
    assert (head.status, head.body) == (200, b"")
    await client.request(chroma.url, "GET", "/api/v2/version")  # a pooled connection again: HEAD leaves none
    after = await heartbeat_on_a_pooled_connection(client, chroma.url)
    assert (after.status, list(orjson.loads(after.body))) == (200, ["nanosecond heartbeat"])
