"""`Gateway.serve` with either HTTP server (`http_server = own` or `uvicorn`) on a loopback socket, in front of
instances simulated in memory: the same requests get the same answers as h11 reads them, and `stop` ends it with
the gateway's own signal handlers left in place."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any

import h11
import orjson

from chroma_ha.app import Gateway
from chroma_ha.store.memory import MemoryStore
from tests.fake_chroma import FAST, FakeCluster, settings_for
from tests.integration.test_http_server import free_port

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"
Answer = tuple[int, dict[str, str], bytes]


@contextlib.asynccontextmanager
async def serving(http_server: str) -> AsyncIterator[int]:
    """A gateway serving on a free port with that server; its port."""
    cluster = FakeCluster()
    port = free_port()
    settings = settings_for(cluster, HTTP_SERVER=http_server, PORT=str(port))
    gateway = Gateway(settings, store=MemoryStore(), transport=cluster.transport(float(FAST["REQUEST_TIMEOUT"])))
    stop, ready = asyncio.Event(), asyncio.Event()
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    served = asyncio.create_task(gateway.serve(stop, on_ready=ready.set))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield port
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    finally:
        stop.set()
        await asyncio.wait_for(served, 15)


def request(method: str, target: str, body: Any = None) -> bytes:
    raw = orjson.dumps(body) if body is not None else b""
    head = f"{method} {target} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
    return head.encode() + b"content-length: %d\r\n\r\n" % len(raw) + raw


async def exchange(port: int, requests: list[tuple[str, bytes]]) -> list[Answer]:
    """The requests pipelined on one connection, (method, bytes) each; the answers as h11 reads them."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = h11.Connection(h11.CLIENT)
    writer.write(b"".join(raw for _, raw in requests))
    answers: list[Answer] = []
    try:
        for method, _ in requests:
            client.send(h11.Request(method=method, target="/", headers=[("host", "gateway")]))
            client.send(h11.EndOfMessage())
            status, headers, body = 0, {}, b""
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await asyncio.wait_for(reader.read(65536), 10))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    headers = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            answers.append((status, headers, body))
            client.start_next_cycle()
    finally:
        writer.close()
    return answers


async def answers_of(http_server: str) -> list[Answer]:
    async with serving(http_server) as port:
        ((status, _, made),) = await exchange(port, [("POST", request("POST", COLLECTIONS, {"name": "docs"}))])
        assert status == 200
        records = f"{COLLECTIONS}/{orjson.loads(made)['id']}"
        added = {"ids": ["a", "b"], "embeddings": [[1.0, 0.0], [0.0, 1.0]], "documents": ["A", "B"]}
        ((status, _, _),) = await exchange(port, [("POST", request("POST", f"{records}/add", added))])
        assert status == 201
        return await exchange(
            port,
            [
                ("GET", request("GET", "/api/v2/tenants/default_tenant")),
                ("HEAD", request("HEAD", "/api/v2/tenants/default_tenant")),
                ("GET", request("GET", "/api/v2/nowhere")),
                ("POST", request("POST", f"{records}/get", {"ids": ["a", "b"], "include": ["documents"]})),
                ("GET", request("GET", "/api/v2/heartbeat")),
            ],
        )


async def test_uvicorn_answers_as_the_own_server() -> None:
    own, uvicorn = await answers_of("own"), await answers_of("uvicorn")
    assert [a[0] for a in own] == [200, 200, 404, 200, 200]
    assert own[:-1] == uvicorn[:-1]
    assert own[1][2] == b"" and own[1][1]["content-length"] == str(len(own[0][2]))  # HEAD: the GET's length
    (own_status, own_headers, own_body), (uv_status, uv_headers, uv_body) = own[-1], uvicorn[-1]
    assert (own_status, own_headers.keys(), orjson.loads(own_body).keys()) == (
        uv_status,
        uv_headers.keys(),
        orjson.loads(uv_body).keys(),
    )  # the heartbeat: the same but for the time it tells
