"""The gateway's HTTP server against h11, byte stream for byte stream.

The same raw streams (valid, malformed, pipelined, chunked with and without trailers, some split at every byte)
go to a real `HttpServer` over a socket and to `h11.Connection(h11.SERVER)`, the state machine of a strict HTTP/1.1
server. Both must take the same decision (accept every request, or refuse at the same point with the same status)
and read the same requests: method, target, headers without the hop-by-hop ones, body.

Where a strict server may rightly decide otherwise than h11, the case names the difference and its reason, and the
test checks that the difference is still exactly that one (so the list cannot go stale).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from chroma_ha.gateway.http_server import MAX_HEAD_BYTES, HttpRequest, HttpResponse, HttpServer, Respond
from tests.http_wire import Outcome, Parsed, answers_in, free_port, h11_reads, split_target


class Recorder:
    """Records every request it is handed and answers it with its number, no body (HEAD answers have none)."""

    def __init__(self) -> None:
        self.requests: list[Parsed] = []

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        parsed = Parsed(request.method, request.path, request.query, tuple(request.headers), request.body)
        self.requests.append(parsed)
        return HttpResponse(200, b"", [(b"x-index", b"%d" % (len(self.requests) - 1))])

    def forward_now(self, request: HttpRequest, respond: Respond) -> bool:
        return False


class Gateway:
    def __init__(self, port: int, recorder: Recorder) -> None:
        self.port = port
        self.recorder = recorder

    async def reads(self, pieces: list[bytes]) -> Outcome:
        """What the server makes of the stream sent in these pieces (each read on its own), then EOF."""
        self.recorder.requests.clear()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            if len(pieces) > 1:
                await asyncio.sleep(0.001)  # so the server reads this piece before the next one comes
        writer.write_eof()
        answers = answers_in(await asyncio.wait_for(reader.read(), 10))
        writer.close()
        accepted = [fields for status, fields in answers if status == 200]
        assert [fields[b"x-index"] for fields in accepted] == [b"%d" % n for n in range(len(accepted))]
        assert len(accepted) == len(self.recorder.requests), "one answer per request"
        refusals = [status for status, _ in answers if status != 200]
        assert len(refusals) <= 1 and answers[-len(refusals) or len(answers) :] == answers[len(accepted) :]
        return Outcome(tuple(self.recorder.requests), refusals[0] if refusals else None)


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[Gateway]:
    recorder = Recorder()
    server = HttpServer(recorder, max_body_bytes=1 << 20)
    port = free_port()
    await server.start("127.0.0.1", port)
    yield Gateway(port, recorder)
    await server.stop(1.0)


def request(head: bytes, *fields: bytes, body: bytes = b"") -> bytes:
    return head + b"\r\n" + b"".join(field + b"\r\n" for field in fields) + b"\r\n" + body


HOST = b"host: example.com"
CHUNKED = b"transfer-encoding: chunked"

SAME = {
    "get": request(b"GET / HTTP/1.1", HOST),
    "post-with-length": request(
        b"POST /api/v2/tenants/t/databases?limit=10 HTTP/1.1",
        HOST,
        b"content-type: application/json",
        b"content-length: 12",
        body=b'{"name":"a"}',
    ),
    "pipelined": request(b"GET /a HTTP/1.1", HOST)
    + request(b"POST /b HTTP/1.1", HOST, b"content-length: 3", body=b"abc")
    + request(b"GET /c?x HTTP/1.1", HOST),
    "chunked": request(b"POST /c HTTP/1.1", HOST, CHUNKED, body=b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"),
    "chunked-with-trailers": request(
        b"POST /c HTTP/1.1",
        HOST,
        b"authorization: Bearer real",
        CHUNKED,
        body=b"3\r\nabc\r\n0\r\nauthorization: Bearer evil\r\nx-t: 1\r\n\r\n",
    ),
    "chunk-extension": request(b"POST /c HTTP/1.1", HOST, CHUNKED, body=b"3;name=value\r\nabc\r\n0\r\n\r\n"),
    "chunked-then-more": request(b"POST /c HTTP/1.1", HOST, CHUNKED, body=b"1\r\na\r\n0\r\n\r\n")
    + request(b"GET /after HTTP/1.1", HOST),
    "head": request(b"HEAD /h HTTP/1.1", HOST),
    "options-asterisk": request(b"OPTIONS * HTTP/1.1", HOST),
    "absolute-form": request(b"GET http://example.com:8000/a/b?q=1 HTTP/1.1", HOST),
    "http-1.0": request(b"GET /old HTTP/1.0"),
    "http-1.0-keep-alive-then-more": request(b"GET /old HTTP/1.0", b"connection: keep-alive")
    + request(b"GET /never HTTP/1.0"),
    "close-then-more": request(b"GET /a HTTP/1.1", HOST, b"connection: close") + request(b"GET /never HTTP/1.1", HOST),
    "percent-encoding": request(b"GET /a%20b/%E2%98%83?x=%2F&y HTTP/1.1", HOST),
    "obs-text-value": request(b"GET / HTTP/1.1", HOST, b"x-a: caf\xe9"),
    "empty-value": request(b"GET / HTTP/1.1", HOST, b"x-empty:"),
    "expect-continue": request(b"POST /e HTTP/1.1", HOST, b"expect: 100-continue", b"content-length: 2", body=b"ok"),
    "hop-by-hop": request(
        b"GET /h HTTP/1.1",
        HOST,
        b"connection: keep-alive, x-secret",
        b"x-secret: 1",
        b"keep-alive: timeout=5",
        b"te: trailers",
        b"trailer: x-t",
        b"proxy-authorization: Basic eA==",
        b"expect: 100-continue",
        b"authorization: Bearer t",
    ),
    "whitespace-around-values": request(b"GET / HTTP/1.1", HOST, b"x-a:   v \t", b"x-b:\tw"),
    "many-headers": request(b"GET / HTTP/1.1", HOST, *(b"x-h%d: %d" % (n, n) for n in range(60))),
    "question-marks": request(b"GET /a?b?c HTTP/1.1", HOST),
    "empty-body": request(b"POST /p HTTP/1.1", HOST, b"content-length: 0"),
    "repeated-header": request(b"GET / HTTP/1.1", HOST, b"x-a: 1", b"x-a: 2"),
    "methods": request(b"PUT /a HTTP/1.1", HOST, b"content-length: 1", body=b"1")
    + request(b"PATCH /a HTTP/1.1", HOST, b"content-length: 1", body=b"2")
    + request(b"DELETE /a HTTP/1.1", HOST),
    "host-forms": request(b"GET / HTTP/1.1", b"host: 127.0.0.1:8000") + request(b"GET / HTTP/1.1", b"host: [::1]:80"),
    "head-near-the-limit": request(b"GET / HTTP/1.1", HOST, b"x-big: " + b"a" * (MAX_HEAD_BYTES - 200)),
    # refused by both, at the same point, with the same status
    "garbage": b"NOT HTTP AT ALL\r\n\r\n",
    "bad-length": request(b"POST / HTTP/1.1", HOST, b"content-length: nope"),
    "negative-length": request(b"POST / HTTP/1.1", HOST, b"content-length: -1"),
    "no-host": request(b"GET / HTTP/1.1"),
    "two-hosts": request(b"GET / HTTP/1.1", HOST, HOST),
    "http-1.0-two-hosts": request(b"GET / HTTP/1.0", HOST, HOST),
    "control-in-target": request(b"GET /a\x01b HTTP/1.1", HOST),
    "byte-over-127-in-target": request(b"GET /caf\xe9 HTTP/1.1", HOST),
    "space-in-target": request(b"GET /a b HTTP/1.1", HOST),
    "space-in-header-name": request(b"GET / HTTP/1.1", HOST, b"x y: 1"),
    "header-without-colon": request(b"GET / HTTP/1.1", HOST, b"xy"),
    "nul-in-value": request(b"GET / HTTP/1.1", HOST, b"x-a: a\x00b"),
    "version-1.10": request(b"GET / HTTP/1.10", HOST),
    "transfer-coding": request(b"POST / HTTP/1.1", HOST, b"transfer-encoding: gzip, chunked", body=b"0\r\n\r\n"),
    "bad-chunk-size": request(b"POST / HTTP/1.1", HOST, CHUNKED, body=b"zz\r\nabc\r\n0\r\n\r\n"),
    "chunk-overrun": request(b"POST / HTTP/1.1", HOST, CHUNKED, body=b"3\r\nabcX\r\n0\r\n\r\n"),
    "valid-then-malformed": request(b"GET /a HTTP/1.1", HOST) + b"BAD\r\n\r\n" + request(b"GET /b HTTP/1.1", HOST),
    "head-over-the-limit": request(b"GET / HTTP/1.1", HOST, b"x-big: " + b"a" * (MAX_HEAD_BYTES + 8192)),
}


@dataclass(frozen=True)
class Differs:
    stream: bytes
    gateway: Outcome | int | None  # the gateway's outcome; an int: refused with that status before any request
    why: str


def one(target: bytes) -> Parsed:
    """A GET of `target` with only the Host of these streams."""
    return Parsed("GET", *split_target(target), ((b"host", b"example.com"),), b"")


DIFFERENT = {
    "fragment": Differs(
        request(b"GET /a#f HTTP/1.1", HOST), 400, "a client never sends a fragment: one that does is confused"
    ),
    "bad-percent-encoding": Differs(
        request(b"GET /a%zz HTTP/1.1", HOST), 400, "RFC 3986: '%' starts two hex digits; h11 checks no URI syntax"
    ),
    "asterisk-not-options": Differs(request(b"GET * HTTP/1.1", HOST), 400, "RFC 9112 3.2.4: '*' is for OPTIONS only"),
    "connect": Differs(request(b"CONNECT h:443 HTTP/1.1", HOST), 400, "authority-form is for proxies; this is none"),
    "userinfo": Differs(request(b"GET http://u:p@h/ HTTP/1.1", HOST), 400, "RFC 9110 4.2.4: userinfo is an error"),
    "not-http-scheme": Differs(request(b"GET ftp://h/a HTTP/1.1", HOST), 400, "an origin server serves http(s) only"),
    "http-0.9": Differs(request(b"GET / HTTP/0.9", HOST), 400, "h11 reads any d.d version; HTTP/0.9 is refused"),
    "http-2.0": Differs(request(b"GET / HTTP/2.0", HOST), 505, "RFC 9110 15.6.6: a major version not served: 505"),
    "invalid-host": Differs(request(b"GET / HTTP/1.1", b"host: a b"), 400, "RFC 9112 3.2: an invalid Host is a 400"),
    "leading-empty-line": Differs(
        b"\r\n" + request(b"GET / HTTP/1.1", HOST),
        Outcome((one(b"/"),), None),
        "RFC 9112 2.2: a server SHOULD ignore an empty line before the request line",
    ),
    "empty-line-between-requests": Differs(
        request(b"GET / HTTP/1.1", HOST) + b"\r\n" + request(b"GET /2 HTTP/1.1", HOST),
        Outcome((one(b"/"), one(b"/2")), None),
        "RFC 9112 2.2, as above, between two requests",
    ),
    "bare-lf": Differs(
        b"GET / HTTP/1.1\nhost: a\n\n", 400, "RFC 9112 2.2: a bare LF MAY be taken for CRLF; llhttp does not"
    ),
    "obs-fold": Differs(
        request(b"GET / HTTP/1.1", HOST, b"x-a: 1", b" 2"), 400, "RFC 9112 5.2: a server MAY refuse obs-fold"
    ),
    "extra-spaces-in-request-line": Differs(
        request(b"GET  / HTTP/1.1", HOST),
        Outcome((one(b"/"),), None),
        "RFC 9112 3: a server MAY split the request line on any whitespace",
    ),
    "unknown-method": Differs(request(b"FOO / HTTP/1.1", HOST), 400, "llhttp knows a fixed list of methods"),
    "lower-case-method": Differs(request(b"get / HTTP/1.1", HOST), 400, "methods are case-sensitive; none is 'get'"),
    "repeated-content-length": Differs(
        request(b"POST / HTTP/1.1", HOST, b"content-length: 1", b"content-length: 1", body=b"x"),
        400,
        "RFC 9112 6.3: a server MAY refuse repeated lengths instead of merging them",
    ),
    "length-and-chunked": Differs(
        request(b"POST / HTTP/1.1", HOST, b"content-length: 5", CHUNKED, body=b"0\r\n\r\n"),
        400,
        "RFC 9112 6.3: both framings at once is the request-smuggling shape; refused",
    ),
    "upgrade-then-more": Differs(
        request(b"GET /u HTTP/1.1", HOST, b"connection: upgrade", b"upgrade: websocket")
        + request(b"GET /next HTTP/1.1", HOST),
        Outcome((one(b"/u"),), None),
        "no upgrades: the request is answered as plain HTTP, then the connection ends (what follows may not be HTTP)",
    ),
    "upgrade-with-body": Differs(
        request(b"POST /u HTTP/1.1", HOST, b"connection: upgrade", b"upgrade: x", b"content-length: 2", body=b"ab"),
        400,
        "llhttp would read the body as the new protocol's bytes",
    ),
    "del-in-value": Differs(
        request(b"GET / HTTP/1.1", HOST, b"x-a: a\x7fb"), 400, "RFC 9110 5.5: DEL is no field-vchar; h11 lets it by"
    ),
}

SPLIT_EVERYWHERE = ["pipelined", "chunked-with-trailers", "valid-then-malformed", "expect-continue"]


@pytest.mark.parametrize("name", list(SAME))
async def test_the_gateway_reads_a_stream_as_h11_does(gateway: Gateway, name: str) -> None:
    stream = SAME[name]
    expected = h11_reads([stream])
    assert await gateway.reads([stream]) == expected


@pytest.mark.parametrize("name", list(DIFFERENT))
async def test_where_a_strict_server_rightly_differs_from_h11_the_difference_is_the_listed_one(
    gateway: Gateway, name: str
) -> None:
    case = DIFFERENT[name]
    expected = case.gateway if isinstance(case.gateway, Outcome) else Outcome((), case.gateway)
    assert await gateway.reads([case.stream]) == expected
    assert h11_reads([case.stream]) != expected, f"h11 now agrees: {name} ({case.why}) belongs with the others"


@pytest.mark.parametrize("name", SPLIT_EVERYWHERE)
async def test_a_stream_split_at_any_byte_reads_the_same(gateway: Gateway, name: str) -> None:
    stream = SAME[name]
    expected = h11_reads([stream])
    for cut in range(1, len(stream)):
        pieces = [stream[:cut], stream[cut:]]
        assert h11_reads(pieces) == expected
        assert await gateway.reads(pieces) == expected, f"cut after byte {cut}"
