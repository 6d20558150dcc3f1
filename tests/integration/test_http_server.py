"""The gateway's HTTP server on real sockets: framing, keep-alive, pipelining, limits, bad input, stopping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
import pytest_asyncio

from chroma_ha.gateway.http_server import MAX_HEAD_BYTES, HttpRequest, HttpResponse, HttpServer, Respond
from chroma_ha.local_cluster import free_port

LIMIT = 1000


def answer(request: HttpRequest) -> HttpResponse:
    return HttpResponse(200, orjson.dumps({
        "method": request.method, "path": request.path, "query": request.query, "size": len(request.body),
        "token": (request.header(b"x-token") or b"").decode(),
    }))


class Echo:
    """Echoes the request: through the general path, or under /fast/ through the fast path (a later callback)."""

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/boom":
            raise RuntimeError("a bug in a handler")
        if request.path.startswith("/status/"):
            return HttpResponse(int(request.path.rsplit("/", 1)[1]), b"a body it must not carry")
        if request.path.startswith("/slow/"):
            await asyncio.sleep(float(request.path.rsplit("/", 1)[1]))
        return answer(request)

    def forward_now(self, request: HttpRequest, respond: Respond) -> bool:
        if not request.path.startswith("/fast/"):
            return False
        delay = float(request.path.rsplit("/", 1)[1])
        asyncio.get_running_loop().call_later(delay, respond, answer(request))
        return True


class Running:
    def __init__(self, server: HttpServer, port: int) -> None:
        self.server = server
        self.port = port

    async def exchange(self, raw: bytes, *, until_closed: bool = False) -> bytes:
        """Send raw bytes; read one answer (or everything until the server closes)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(raw)
        try:
            if until_closed:
                return await asyncio.wait_for(reader.read(), 10)
            return await asyncio.wait_for(read_answer(reader), 10)
        finally:
            writer.close()


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length"))
    return head + await reader.readexactly(length)


def body_of(answer: bytes) -> dict[str, object]:
    return orjson.loads(answer.partition(b"\r\n\r\n")[2])  # type: ignore[no-any-return]


@pytest_asyncio.fixture
async def running() -> AsyncIterator[Running]:
    server = HttpServer(Echo(), max_body_bytes=LIMIT)
    port = free_port()
    await server.start("127.0.0.1", port)
    yield Running(server, port)
    await server.stop(1.0)


async def test_keep_alive_serves_many_requests_on_one_connection(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    for n in range(5):
        writer.write(b"POST /a/%d?x=1 HTTP/1.1\r\nhost: t\r\nx-token: t%d\r\ncontent-length: 3\r\n\r\nabc" % (n, n))
        answer = await read_answer(reader)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert body_of(answer) == {"method": "POST", "path": f"/a/{n}", "query": "x=1", "size": 3, "token": f"t{n}"}
    writer.close()


async def test_pipelined_requests_are_answered_in_order(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(b"GET /slow/0.2 HTTP/1.1\r\nhost: t\r\n\r\nGET /fast HTTP/1.1\r\nhost: t\r\n\r\n")
    first, second = await read_answer(reader), await read_answer(reader)
    assert body_of(first)["path"] == "/slow/0.2" and body_of(second)["path"] == "/fast"
    writer.close()


async def test_answers_by_callback_keep_their_order_among_the_others(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    paths = ["/fast/0.2", "/slow/0.1", "/fast/0", "/plain", "/fast/0.05"]
    writer.write(b"".join(b"GET %s HTTP/1.1\r\nhost: t\r\n\r\n" % p.encode() for p in paths))
    assert [body_of(await read_answer(reader))["path"] for _ in paths] == paths
    writer.close()


async def test_a_chunked_body_is_read_whole(running: Running) -> None:
    answer = await running.exchange(
        b"POST /c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    assert body_of(answer)["size"] == 7


async def test_expect_continue_is_answered_before_the_body(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(b"POST /e HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n")
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"ok")
    assert body_of(await read_answer(reader))["size"] == 2
    writer.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /big HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n" % (LIMIT + 1) + b"x" * (LIMIT + 1),
        b"POST /big HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"%x\r\n" % 600 + b"x" * 600 + b"\r\n" + b"%x\r\n" % 600 + b"x" * 600 + b"\r\n0\r\n\r\n",
        b"POST /big HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\ncontent-length: %d\r\n\r\n" % (LIMIT + 1),
    ],
    ids=["declared", "chunked", "expect-continue"],
)
async def test_a_body_over_the_limit_gets_413_and_the_connection_closes(running: Running, raw: bytes) -> None:
    answer = await running.exchange(raw, until_closed=True)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert body_of(answer)["error"] == "PayloadTooLarge"
    assert b"connection: close" in answer


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\ncontent-length: nope\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nx-big: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\n\r\n", 431),
    ],
    ids=["garbage", "bad-length", "huge-head"],
)
async def test_unreadable_requests_get_a_clear_4xx_and_the_server_keeps_serving(
    running: Running, raw: bytes, status: int
) -> None:
    answer = await running.exchange(raw, until_closed=True)
    assert answer.startswith(b"HTTP/1.1 %d " % status)
    assert body_of(answer)["message"]
    assert body_of(await running.exchange(b"GET /after HTTP/1.1\r\nhost: t\r\n\r\n"))["path"] == "/after"


async def test_an_upgrade_is_answered_as_plain_http_and_ends_the_connection(running: Running) -> None:
    raw = b"GET /u HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\nGET /never HTTP/1.1\r\n\r\n"
    answer = await running.exchange(raw, until_closed=True)
    assert answer.count(b"HTTP/1.1 200 ") == 1 and body_of(answer)["path"] == "/u"
    assert b"connection: close" in answer


async def test_a_failing_handler_is_a_json_500_and_the_connection_stays_usable(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(b"GET /boom HTTP/1.1\r\nhost: t\r\n\r\n")
    failed = await read_answer(reader)
    assert failed.startswith(b"HTTP/1.1 500 ") and body_of(failed)["error"] == "InternalError"
    writer.write(b"GET /fine HTTP/1.1\r\nhost: t\r\n\r\n")
    assert body_of(await read_answer(reader))["path"] == "/fine"
    writer.close()


async def test_head_has_the_length_of_get_and_no_body(running: Running) -> None:
    get = await running.exchange(b"GET /h HTTP/1.1\r\nhost: t\r\n\r\n")
    head = await running.exchange(b"HEAD /h HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n", until_closed=True)
    length = [line for line in get.split(b"\r\n") if line.startswith(b"content-length")]
    assert length and length[0] in head.split(b"\r\n")
    assert head.endswith(b"\r\n\r\n") and b'"method"' not in head


async def test_a_204_carries_neither_body_nor_length_and_the_next_request_still_parses(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(b"GET /status/204 HTTP/1.1\r\nhost: t\r\n\r\nGET /after HTTP/1.1\r\nhost: t\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 204 No Content\r\n") and b"content-length" not in head
    assert body_of(await read_answer(reader))["path"] == "/after"
    writer.close()


async def test_connection_close_and_http_1_0_end_the_connection_after_the_answer(running: Running) -> None:
    for raw in (b"GET /x HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n", b"GET /x HTTP/1.0\r\n\r\n"):
        answer = await running.exchange(raw, until_closed=True)  # returns only because the server closed
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1") == 1


async def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    server = HttpServer(Echo(), max_body_bytes=LIMIT, idle_timeout=0.0)
    port = free_port()
    await server.start("127.0.0.1", port)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n")
        await read_answer(reader)
        for connection in list(server.connections):
            connection.close_if_idle(server.idle_timeout)  # what the periodic sweep does
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        await server.stop(1.0)


async def test_a_client_that_leaves_mid_request_does_not_disturb_others(running: Running) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(b"GET /slow/0.3 HTTP/1.1\r\nhost: t\r\n\r\n")
    await asyncio.sleep(0.05)
    writer.close()
    await asyncio.sleep(0.4)  # its answer finds the connection gone
    assert body_of(await running.exchange(b"GET /next HTTP/1.1\r\nhost: t\r\n\r\n"))["path"] == "/next"


@pytest.mark.parametrize("path", [b"/slow/0.3", b"/fast/0.3"], ids=["awaited", "by-callback"])
async def test_stopping_finishes_requests_in_progress_and_refuses_new_connections(path: bytes) -> None:
    server = HttpServer(Echo(), max_body_bytes=LIMIT)
    port = free_port()
    await server.start("127.0.0.1", port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET %s HTTP/1.1\r\nhost: t\r\n\r\n" % path)
    await asyncio.sleep(0.05)
    await server.stop(5.0)
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"connection: close" in answer
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    writer.close()
