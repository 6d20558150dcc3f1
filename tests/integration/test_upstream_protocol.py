"""The instance client against a real socket whose every byte the test scripts: what it sends (only end-to-end
headers, a target that cannot split the request line), which answer it takes (the final one, bounded, complete),
when it reuses a connection (only in step) and when it sends a request twice (only where that is harmless)."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

import pytest
import pytest_asyncio

from chroma_ha.errors import InstanceError, StaleConnection
from chroma_ha.local_cluster import free_port
from chroma_ha.upstream.client import MAX_ANSWER_HEAD_BYTES, InstanceClient, Upstream

# Long enough never to be reached by a request that behaves; a test that fails may wait this long.
PATIENCE_S = 5.0

Act = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Via = Literal["request", "send_now"]
VIAS = ["request", "send_now"]


def answer(body: bytes = b"true", status: bytes = b"200 OK", head: bytes = b"") -> bytes:
    """An answer as an instance sends it; `head`: more header lines."""
    length = b"content-length: %d\r\n" % len(body)
    return b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n" + head + length + b"\r\n" + body


class RawInstance:
    """A socket server standing in for an instance. It reads requests from every connection in turn and answers
    the n-th request of the whole server with `acts[n]`: bytes to write, or a coroutine that does what it likes."""

    def __init__(self, *acts: bytes | Act, bodies: bool = True) -> None:
        self.acts = list(acts)
        self.bodies = bodies  # False: read request heads only
        self.requests: list[bytes] = []  # each request's head and body, as received
        self.connections = 0
        self.hung_up = asyncio.Event()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> RawInstance:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()

    def head(self, n: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The request line and the header pairs (names in lower case) of the n-th request."""
        lines = self.requests[n].partition(b"\r\n\r\n")[0].split(b"\r\n")
        pairs = [line.split(b":", 1) for line in lines[1:]]
        return lines[0], [(name.lower(), value.strip()) for name, value in pairs]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            while self.acts:
                self.requests.append(await read_request(reader, self.bodies))
                act = self.acts.pop(0)
                if isinstance(act, bytes):
                    writer.write(act)
                else:
                    await act(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.hung_up.set()
        writer.close()


async def read_request(reader: asyncio.StreamReader, body: bool = True) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    if not body:
        return head
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[RawInstance]]]:
    started: list[RawInstance] = []

    async def start(*acts: bytes | Act, bodies: bool = True) -> RawInstance:
        instance = await RawInstance(*acts, bodies=bodies).start()
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


@pytest_asyncio.fixture
async def client() -> AsyncIterator[InstanceClient]:
    client = InstanceClient(request_timeout=PATIENCE_S)
    yield client
    await client.close()


async def ask(client: InstanceClient, via: Via, url: str, method: str = "GET") -> Upstream:
    """One request by either way of asking; send_now needs a kept-alive connection (a request before made one)."""
    if via == "request":
        return await client.request(url, method, "/")
    outcome: asyncio.Future[tuple[Upstream | None, InstanceError | None]] = asyncio.get_running_loop().create_future()
    assert client.send_now(url, method, "/", answered=lambda up, error: outcome.set_result((up, error)))
    upstream, error = await outcome
    if error is not None:
        raise error
    assert upstream is not None
    return upstream


# --- what goes out -------------------------------------------------------------------------------------------


async def test_hop_by_hop_headers_and_those_connection_names_never_go_out(serve, client) -> None:
    instance = await serve(answer())
    sent = [
        (b"connection", b"keep-alive, X-Secret ,x-other"),
        (b"x-secret", b"for the next hop only"),
        (b"x-other", b"1"),
        (b"x-kept", b"2"),
        (b"keep-alive", b"timeout=5"),
        (b"expect", b"100-continue"),
        (b"te", b"trailers"),
        (b"trailer", b"x-checksum"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"websocket"),
        (b"proxy-authorization", b"Basic c2VjcmV0"),
        (b"proxy-connection", b"keep-alive"),
        (b"host", b"elsewhere.example"),
        (b"content-length", b"999"),
        (b"content-type", b"application/json"),
    ]
    await client.request(instance.url, "POST", "/api/v2/x", headers=sent, body=b"{}")
    _, received = instance.head(0)
    assert received == [
        (b"host", f"127.0.0.1:{instance.port}".encode()),
        (b"content-length", b"2"),
        (b"x-kept", b"2"),
        (b"content-type", b"application/json"),
    ]


async def test_a_mapping_of_headers_loses_the_same_ones(serve, client) -> None:
    instance = await serve(answer())
    sent = {"Connection": "close, X-Secret", "X-Secret": "1", "Expect": "100-continue", "Proxy-Foo": "1", "X-Kept": "2"}
    await client.request(instance.url, "GET", "/", headers=sent)
    _, received = instance.head(0)
    assert [name for name, _ in received] == [b"host", b"content-length", b"x-kept"]


async def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent(serve, client) -> None:
    instance = await serve(answer())
    with pytest.raises(ValueError, match="x-note"):
        await client.request(instance.url, "GET", "/", headers={"x-note": "a\r\nx-injected: 1"})
    assert instance.connections == 0


async def test_a_target_that_cannot_go_on_the_wire_is_percent_encoded(serve, client) -> None:
    instance = await serve(answer(), answer())
    await client.request(instance.url, "GET", "/api/v2/tenants/☃☃☃")
    await client.request(instance.url, "GET", "/api/v2/tenants/a b\r\nx-injected: 1", query="q=\x7f")
    assert instance.head(0)[0] == b"GET /api/v2/tenants/%E2%98%83%E2%98%83%E2%98%83 HTTP/1.1"
    line, received = instance.head(1)
    assert line == b"GET /api/v2/tenants/a%20b%0D%0Ax-injected:%201?q=%7F HTTP/1.1"
    assert b"x-injected" not in [name for name, _ in received]


async def test_the_host_is_the_instance_urls_authority_and_its_path_prefixes_every_request(serve, client) -> None:
    instance = await serve(answer(), answer())
    for url in (f"http://127.0.0.1:{instance.port}/", f"http://user:secret@127.0.0.1:{instance.port}/chroma/"):
        await client.request(url, "GET", "/api/v2/heartbeat")
    assert [instance.head(n)[0] for n in (0, 1)] == [
        b"GET /api/v2/heartbeat HTTP/1.1",
        b"GET /chroma/api/v2/heartbeat HTTP/1.1",
    ]
    assert [dict(instance.head(n)[1])[b"host"] for n in (0, 1)] == [f"127.0.0.1:{instance.port}".encode()] * 2


# --- which answer is taken -----------------------------------------------------------------------------------


@pytest.mark.parametrize("via", VIAS)
async def test_interim_answers_are_skipped_for_the_final_one(serve, client, via: Via) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\ncontent-type: text/html\r\nlink: </a>\r\n\r\n"
    instance = await serve(answer(b"warm"), interim + answer(b"true"), answer(b"false"))
    await client.request(instance.url, "GET", "/warm-up")
    upstream = await ask(client, via, instance.url)
    assert (upstream.status, upstream.headers, upstream.body) == (
        200,
        [(b"content-type", b"application/json")],
        b"true",
    )
    assert (await ask(client, via, instance.url)).body == b"false"
    assert instance.connections == 1


@pytest.mark.parametrize("via", VIAS)
async def test_a_head_answer_ends_with_its_head(serve, client, via: Via) -> None:
    head_only = answer(b"x" * 42)[:-42]  # the length a GET would have, and no body
    instance = await serve(answer(b"warm"), head_only, answer(b"after"))
    await client.request(instance.url, "GET", "/warm-up")
    upstream = await ask(client, via, instance.url, "HEAD")
    assert (upstream.status, upstream.headers, upstream.body) == (200, [(b"content-type", b"application/json")], b"")
    assert (await client.request(instance.url, "GET", "/")).body == b"after"


@pytest.mark.parametrize("via", VIAS)
async def test_an_answer_without_a_length_ends_where_the_instance_half_closes(serve, client, via: Via) -> None:
    async def until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n[1, 2")
        await writer.drain()
        writer.write(b", 3]")
        writer.write_eof()

    instance = await serve(answer(b"warm"), until_eof, answer(b"after"))
    await client.request(instance.url, "GET", "/warm-up")
    assert (await ask(client, via, instance.url)).body == b"[1, 2, 3]"
    assert (await client.request(instance.url, "GET", "/")).body == b"after"
    assert instance.connections == 2


@pytest.mark.parametrize("via", VIAS)
async def test_trailers_never_become_answer_headers(serve, client, via: Via) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nchroma-trace-id: real\r\ntransfer-encoding: chunked\r\n"
        b"\r\n4\r\ntrue\r\n0\r\nchroma-trace-id: forged\r\ncontent-type: text/html\r\n\r\n"
    )
    instance = await serve(answer(b"warm"), chunked)
    await client.request(instance.url, "GET", "/warm-up")
    upstream = await ask(client, via, instance.url)
    assert upstream.headers == [(b"content-type", b"application/json"), (b"chroma-trace-id", b"real")]
    assert upstream.body == b"true"


MALFORMED = {
    "switching protocols": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
    "status below 100": answer(status=b"099 Odd"),
    "status not a number": b"HTTP/1.1 2x0 OK\r\ncontent-length: 0\r\n\r\n",
    "length and chunks": answer(head=b"transfer-encoding: chunked\r\n"),
    "two lengths": answer(head=b"content-length: 3\r\n"),
}


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("malformed", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_answer_fails_its_request_and_its_connection(serve, client, via: Via, malformed) -> None:
    instance = await serve(answer(b"warm"), malformed, answer(b"after"))
    await client.request(instance.url, "GET", "/warm-up")
    with pytest.raises(InstanceError):
        await ask(client, via, instance.url)
    assert (await client.request(instance.url, "GET", "/")).body == b"after"
    assert instance.connections == 2


# --- when a connection is reused -----------------------------------------------------------------------------


async def test_a_byte_with_no_request_in_flight_closes_the_connection(serve, client) -> None:
    async def then_a_byte(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(answer(b"first"))
        await writer.drain()
        writer.write(b"H")

    instance = await serve(then_a_byte, answer(b"second"))
    assert (await client.request(instance.url, "GET", "/")).body == b"first"
    await asyncio.wait_for(instance.hung_up.wait(), PATIENCE_S)
    assert (await client.request(instance.url, "GET", "/")).body == b"second"
    assert instance.connections == 2


@pytest.mark.parametrize("via", VIAS)
async def test_bytes_after_the_answer_in_the_same_read_close_the_connection(serve, client, via: Via) -> None:
    stray = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"  # a head whose body would be the next answer's start
    instance = await serve(answer(b"warm"), answer(b"first") + stray, answer(b"second"))
    await client.request(instance.url, "GET", "/warm-up")
    assert (await ask(client, via, instance.url)).body == b"first"
    assert (await client.request(instance.url, "GET", "/")).body == b"second"
    assert instance.connections == 2


async def test_an_answer_that_comes_before_the_whole_request_was_sent_is_the_connections_last(serve, client) -> None:
    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(answer(b"too large", b"413 Payload Too Large"))
        await writer.wait_closed()  # and never reads the body

    instance = await serve(early, answer(b"after"), bodies=False)
    body = b"x" * (32 * 1024 * 1024)  # far more than the sockets between the two ends buffer
    assert (await client.request(instance.url, "POST", "/", body=body)).status == 413
    assert (await client.request(instance.url, "GET", "/")).body == b"after"
    assert instance.connections == 2


async def test_an_idle_connection_the_instance_half_closes_is_not_reused(serve, client) -> None:
    async def then_half_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(answer(b"first"))
        writer.write_eof()

    instance = await serve(then_half_close, answer(b"second"))
    assert (await client.request(instance.url, "GET", "/")).body == b"first"
    await asyncio.wait_for(instance.hung_up.wait(), PATIENCE_S)
    assert (await client.request(instance.url, "GET", "/")).body == b"second"
    assert instance.connections == 2


# --- when a request is sent twice ----------------------------------------------------------------------------


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """What a kept-alive connection that the instance closed just as it was reused looks like: no answer."""
    writer.close()


@pytest.mark.parametrize(
    ("method", "idempotent", "resent"),
    [("GET", None, True), ("HEAD", None, True), ("POST", None, False), ("POST", True, True), ("GET", False, False)],
)
async def test_a_request_on_a_stale_connection_is_resent_only_when_idempotent(
    serve, client, method: str, idempotent: bool | None, resent: bool
) -> None:
    instance = await serve(answer(b"warm"), hang_up, answer(b""))
    await client.request(instance.url, "GET", "/warm-up")
    said = {} if idempotent is None else {"idempotent": idempotent}
    if resent:
        assert (await client.request(instance.url, method, "/", **said)).status == 200
    else:
        with pytest.raises(StaleConnection, match="not resent"):
            await client.request(instance.url, method, "/", body=b"{}", **said)
    assert len(instance.requests) == (3 if resent else 2)


async def test_a_request_answered_by_callback_on_a_stale_connection_is_reported_not_resent(serve, client) -> None:
    instance = await serve(answer(b"warm"), hang_up, answer(b""))
    await client.request(instance.url, "GET", "/warm-up")
    with pytest.raises(StaleConnection):
        await ask(client, "send_now", instance.url, "GET")
    assert len(instance.requests) == 2


@pytest.mark.parametrize("method", ["GET", "POST"])  # GET: not resent although idempotent
async def test_an_answer_cut_short_is_an_instance_failure_and_never_resent(serve, client, method: str) -> None:
    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(answer(b"[1, 2, 3]")[:-4])
        writer.close()

    instance = await serve(answer(b"warm"), cut_short, answer(b"again"))
    await client.request(instance.url, "GET", "/warm-up")
    with pytest.raises(InstanceError, match="mid-answer") as failed:
        await client.request(instance.url, method, "/")
    assert type(failed.value) is InstanceError
    assert len(instance.requests) == 2


# --- how much is taken ---------------------------------------------------------------------------------------


def endless(first: bytes, then: bytes) -> Act:
    async def write(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(first)
        while not writer.is_closing():
            writer.write(then)
            await writer.drain()

    return write


@pytest.mark.parametrize("via", VIAS)
async def test_an_answer_past_max_answer_bytes_fails_and_closes_its_connection(serve, via: Via) -> None:
    limit = 256 * 1024
    instance = await serve(answer(b"warm"), endless(answer(b"")[:-4] + b"1000000000\r\n\r\n", b"x" * 65536))
    client = InstanceClient(request_timeout=PATIENCE_S, max_answer_bytes=limit)
    await client.request(instance.url, "GET", "/warm-up")
    with pytest.raises(InstanceError, match=f"exceeded max_answer_bytes \\({limit} bytes\\)") as failed:
        await ask(client, via, instance.url)
    assert not failed.value.retryable
    await asyncio.wait_for(instance.hung_up.wait(), PATIENCE_S)
    await client.close()


@pytest.mark.parametrize(("spare", "taken"), [(0, True), (-1, False)])
async def test_max_answer_bytes_counts_the_answer_as_it_comes_on_the_wire(serve, spare: int, taken: bool) -> None:
    big = answer(b"x" * 100_000)
    instance = await serve(big)
    client = InstanceClient(request_timeout=PATIENCE_S, max_answer_bytes=len(big) + spare)
    if taken:
        assert len((await client.request(instance.url, "GET", "/")).body) == 100_000
    else:
        with pytest.raises(InstanceError, match="max_answer_bytes"):
            await client.request(instance.url, "GET", "/")
    await client.close()


ENDLESS_HEADS = {
    "header": endless(b"HTTP/1.1 200 OK\r\nx-long: ", b"a" * 4096),
    "headers": endless(b"HTTP/1.1 200 OK\r\n", b"x-more: a\r\n" * 256),
    "interim answers": endless(b"", b"HTTP/1.1 100 Continue\r\n\r\n" * 128),
}


@pytest.mark.parametrize("head", ENDLESS_HEADS.values(), ids=ENDLESS_HEADS.keys())
async def test_an_answer_head_past_its_limit_fails_before_the_deadline(serve, client, head: Act) -> None:
    instance = await serve(head)
    with pytest.raises(InstanceError, match=f"MAX_ANSWER_HEAD_BYTES \\({MAX_ANSWER_HEAD_BYTES} bytes\\)"):
        await client.request(instance.url, "GET", "/")
    await asyncio.wait_for(instance.hung_up.wait(), PATIENCE_S)


async def test_an_answer_in_one_byte_chunks_takes_less_memory_than_it_takes_on_the_wire(serve, client) -> None:
    chunks, piece = 160, b"1\r\nx\r\n" * 1000

    async def one_byte_chunks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(chunks):
            writer.write(piece)
            await writer.drain()
        writer.write(b"0\r\n\r\n")

    instance = await serve(one_byte_chunks)
    tracemalloc.start()
    try:
        upstream = await client.request(instance.url, "GET", "/")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert upstream.body == b"x" * (chunks * 1000)
    assert peak < chunks * len(piece), peak
