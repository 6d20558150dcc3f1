"""HTTP in: the gateway's own HTTP/1.1 server, an asyncio protocol on uvloop with httptools as the parser.

Every proxied query crosses this code on its way in and out, and on a machine where the gateway shares its CPUs
with Chroma the hop has to stay small next to the query itself. A general ASGI server builds a scope, runs a
receive/send exchange and makes two writes per response; here a request becomes one `HttpRequest`, its handler
returns one `HttpResponse`, and that goes out in one write. The server does what a proxy in front of Chroma needs:
keep-alive and pipelining, chunked request bodies, `Expect: 100-continue`, limits on head and body sizes, HEAD,
idle timeouts and a graceful stop. It does not do TLS, HTTP/2 or upgrades: a TLS terminator goes in front.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol

import httptools
import orjson

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # request line and headers
MAX_PIPELINED = 16  # complete requests queued on one connection before it stops reading
IDLE_TIMEOUT_S = 75.0  # a kept-alive connection with nothing to do is closed after this long
SWEEP_INTERVAL_S = 5.0
_JSON = (b"content-type", b"application/json")
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_NO_BODY = frozenset({204, 304})  # answers that carry neither a body nor a Content-Length


@dataclass(slots=True)
class HttpRequest:
    method: str  # HEAD arrives as GET: the server leaves the body out of the answer
    path: str  # as sent, percent-encoding kept
    query: str
    headers: list[tuple[bytes, bytes]]  # names in lower case
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(slots=True)
class HttpResponse:
    status: int
    body: bytes
    headers: Sequence[tuple[bytes, bytes]] = field(default_factory=lambda: [_JSON])  # Content-Length is added

    @classmethod
    def error(cls, status: int, error: str, message: str) -> HttpResponse:
        return cls(status, orjson.dumps({"error": error, "message": message}))

    @classmethod
    def internal_error(cls) -> HttpResponse:
        """A failure of the gateway itself; the details go to its log, not to the client."""
        return cls.error(500, "InternalError", "The gateway failed to answer; see its log")


Respond = Callable[[HttpResponse], None]


class Handler(Protocol):
    def __call__(self, request: HttpRequest) -> Awaitable[HttpResponse]:
        """The general path: the answer to any request."""

    def forward_now(self, request: HttpRequest, respond: Respond) -> bool:
        """The fast path: take the request now and call `respond` later, from a callback (no task); or return
        False at once, having done nothing, and the request goes to `__call__`."""


def encode_response(response: HttpResponse, *, head_only: bool = False, close: bool = False) -> bytes:
    status = response.status
    lines = b"".join([b"%s: %s\r\n" % pair for pair in response.headers])
    if close:
        lines += b"connection: close\r\n"
    if status in _NO_BODY:
        return b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, _REASONS.get(status, b""), lines)
    body = response.body
    head = b"HTTP/1.1 %d %s\r\ncontent-length: %d\r\n%s\r\n" % (status, _REASONS.get(status, b""), len(body), lines)
    return head if head_only else head + body


class _Refused(Exception):
    """The request cannot be read: answer this and close the connection."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response


class _Pending:
    """One request as it is parsed, then as it waits its turn on the connection."""

    __slots__ = ("body", "head_bytes", "head_only", "headers", "keep_alive", "method", "refused", "size", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.head_bytes = 0
        self.method = "GET"
        self.head_only = False
        self.keep_alive = True
        self.refused: HttpResponse | None = None

    def request(self) -> HttpRequest:
        path, _, query = self.url.partition(b"?")
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        return HttpRequest(self.method, path.decode("latin-1"), query.decode("latin-1"), self.headers, body)


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, answer requests one at a time in arrival order, keep alive."""

    __slots__ = (
        "_answering", "_busy", "_last_request", "_parser", "_parsing", "_paused", "_queue", "_server", "_transport",
        "_write_paused", "closed", "idle_since",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._parsing = _Pending()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._busy = False
        self._answering = self._parsing  # the request being answered: one at a time
        self._paused = False  # reading, while too many requests wait
        self._write_paused = False  # answering, while the client does not read what it was sent
        self._last_request = False  # close once the queued requests are answered
        self.closed = False
        self.idle_since = time.monotonic()

    @property
    def idle(self) -> bool:
        return not self._busy and not self._queue

    # --- asyncio.Protocol --------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._queue.clear()
        self._server.connections.discard(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if not self._busy:
            self._next()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Not supported: the request is answered as plain HTTP, and nothing after it is read.
            if self.idle:
                self._refuse(HttpResponse.error(400, "BadRequest", "Protocol upgrades are not supported"))
            else:
                self._last_request = True
                if self._transport is not None:
                    self._transport.pause_reading()
        except httptools.HttpParserCallbackError as exc:  # raised in one of the callbacks below
            cause = exc.__context__
            if isinstance(cause, _Refused):
                self._refuse(cause.response)
            else:
                log.error("reading a request failed in the gateway", exc_info=cause)
                self._refuse(HttpResponse.error(500, "InternalError", "The gateway failed to read the request"))
        except httptools.HttpParserError as exc:
            self._refuse(HttpResponse.error(400, "BadRequest", f"Malformed HTTP request: {exc}"))

    # --- httptools callbacks -----------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._parsing = _Pending()

    def on_url(self, url: bytes) -> None:
        pending = self._parsing
        pending.url += url
        pending.head_bytes += len(url)
        if pending.head_bytes > MAX_HEAD_BYTES:
            raise _Refused(_head_too_large())

    def on_header(self, name: bytes, value: bytes) -> None:
        pending = self._parsing
        pending.headers.append((name.lower(), value))
        pending.head_bytes += len(name) + len(value)
        if pending.head_bytes > MAX_HEAD_BYTES:
            raise _Refused(_head_too_large())

    def on_headers_complete(self) -> None:
        pending = self._parsing
        method = self._parser.get_method().decode("latin-1")
        pending.head_only = method == "HEAD"
        pending.method = "GET" if pending.head_only else method
        pending.keep_alive = self._parser.should_keep_alive()
        length, expects_continue = _length_and_expect(pending.headers)
        if length is not None and length > self._server.max_body_bytes:
            if expects_continue and self.idle:
                raise _Refused(self._server.too_large())  # the body will not come: answer now and close
            pending.refused = self._server.too_large()  # answered in turn, once the body has been read past
        elif expects_continue and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        pending = self._parsing
        pending.size += len(body)
        if pending.refused is not None:
            return
        if pending.size > self._server.max_body_bytes:
            pending.refused = self._server.too_large()
            pending.body.clear()
            return
        pending.body.append(body)

    def on_message_complete(self) -> None:
        self._queue.append(self._parsing)
        if len(self._queue) > MAX_PIPELINED and not self._paused and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True
        if not self._busy:
            self._next()

    # --- answering ---------------------------------------------------------------------------------------------

    def _next(self) -> None:
        if self._paused and len(self._queue) <= MAX_PIPELINED // 2 and self._transport and not self._last_request:
            self._transport.resume_reading()
            self._paused = False
        if self.closed or not self._queue:
            self.idle_since = time.monotonic()
            return
        if self._write_paused:
            return  # resume_writing calls again; meanwhile the queue fills and reading pauses
        self._busy = True
        pending = self._answering = self._queue.popleft()
        if pending.refused is not None:
            self._respond(pending.refused, close=True)  # the rest of an oversized body is not read
            return
        request = pending.request()
        if self._server.handler.forward_now(request, self._respond):
            return
        task = asyncio.get_running_loop().create_task(self._answer(request))
        self._server.tasks.add(task)
        task.add_done_callback(self._server.tasks.discard)

    async def _answer(self, request: HttpRequest) -> None:
        try:
            response = await self._server.handler(request)
        except Exception:
            log.exception("%s %s failed in the gateway", request.method, request.path[:200])
            response = HttpResponse.internal_error()
        self._respond(response)

    def _respond(self, response: HttpResponse, *, close: bool = False) -> None:
        """Answer the request being answered (one at a time: answers go out in arrival order), then the next."""
        pending = self._answering
        self._busy = False
        close = close or not pending.keep_alive or self._server.stopping or (self._last_request and not self._queue)
        transport = self._transport
        if self.closed or transport is None or transport.is_closing():
            return  # the client went away; a write it sent is logged and still applied
        transport.write(encode_response(response, head_only=pending.head_only, close=close))
        if close:
            transport.close()
            self.closed = True
            return
        self._next()

    def _refuse(self, response: HttpResponse) -> None:
        """A request that cannot be parsed ends the connection: with an answer when none is due before it, else
        closed at once (answers cannot go out of order)."""
        if self._transport is None or self.closed:
            return
        if self._busy or self._queue:
            self._transport.close()  # cannot answer out of order; the client sees the connection close
        else:
            self._transport.write(encode_response(response, close=True))
            self._transport.close()
        self.closed = True

    def close_if_idle(self, idle_for: float) -> None:
        if self.idle and time.monotonic() - self.idle_since >= idle_for:
            self.close()

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.close()
        self.closed = True


def _head_too_large() -> HttpResponse:
    return HttpResponse.error(
        431, "RequestHeaderFieldsTooLarge", f"The request line and headers pass {MAX_HEAD_BYTES} bytes"
    )


def _length_and_expect(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """The declared Content-Length, and whether the client waits for `100 Continue` before sending the body."""
    fields = dict(headers)  # the parser has refused a request with two different lengths
    length = fields.get(b"content-length")
    expect = fields.get(b"expect")
    return (
        int(length) if length is not None and length.strip().isdigit() else None,
        expect is not None and expect.lower() == b"100-continue",
    )


class HttpServer:
    def __init__(self, handler: Handler, *, max_body_bytes: int, idle_timeout: float = IDLE_TIMEOUT_S) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.idle_timeout = idle_timeout
        self.connections: set[HttpConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def too_large(self) -> HttpResponse:
        return HttpResponse.error(
            413, "PayloadTooLarge",
            f"The request body is larger than the gateway's limit of {self.max_body_bytes} bytes (max_body_bytes)",
        )

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: HttpConnection(self), host, port, backlog=1024)
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            for connection in list(self.connections):
                connection.close_if_idle(self.idle_timeout)

    async def stop(self, grace: float) -> None:
        """Stop listening, let the requests in progress finish (up to `grace` seconds), close every connection."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            for connection in list(self.connections):
                connection.close_if_idle(0)
            if not self.connections and not self.tasks:
                break
            await asyncio.sleep(0.02)
        for task in list(self.tasks):
            task.cancel()
        for connection in list(self.connections):
            connection.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
