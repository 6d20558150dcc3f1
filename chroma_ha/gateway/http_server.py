"""HTTP in: the gateway's own HTTP/1.1 server, an asyncio protocol on uvloop with httptools as the parser.

Every proxied query crosses this code on its way in and out, and on a machine where the gateway shares its CPUs
with Chroma the hop has to stay small next to the query itself. A general ASGI server builds a scope, runs a
receive/send exchange and makes two writes per response; here a request becomes one `HttpRequest`, its handler
returns one `HttpResponse`, and that goes out in one write. It does not do TLS, HTTP/2 or upgrades: a TLS
terminator goes in front.

What it guarantees on every connection:

- **One answer per request, in request order.** Answers go out one at a time in the order the requests came; a
  second answer to a request is ignored and logged (`_Pending.respond` is the one place that decides), so a handler
  failing after it answered cannot answer twice.
- **A request it cannot accept ends the connection, after what came before.** The requests that came before it are
  answered first, in order, then its 4xx/5xx (a Chroma-shaped `{"error", "message"}` body), then the connection
  closes. Nothing after it is read; nor after a request with `Connection: close`, an HTTP/1.0 request or an upgrade
  request, which are answered and end the connection.
- **Strict parsing**, as h11 or a strict origin server: 400 for a request target with a fragment, a malformed
  percent-encoding, control characters or spaces, or that is neither origin-form (`/path?query`) nor an absolute
  `http(s)` URL (taken as its path) nor `*` for OPTIONS; for HTTP/0.9; for a missing Host on HTTP/1.1 and for a
  repeated or invalid Host. 501 for a transfer coding other than `chunked`, 505 for HTTP/2 and later.
- **Bounded memory and CPU per connection.** A request head and a chunked body's trailers are counted as their bytes
  arrive (431 past `MAX_HEAD_BYTES`) and reach the parser only once whole: fed to it in pieces, a head costs time
  that grows with the square of its size. A body is refused past `max_body_bytes` (413). Reading stops while
  `MAX_OWED_ANSWERS` answers are owed, while the bodies of requests waiting their turn reach `max_body_bytes`, and
  while the client does not read what it was sent; a client that reads nothing for `send_timeout` is disconnected.
- **Time limits refreshed by data.** A request head must arrive within `head_timeout` of its first byte (or of the
  connection), a body must keep arriving (`idle_timeout` between bytes), a kept-alive connection with nothing to do
  is closed after `idle_timeout`. Slow uploads are not cut while bytes keep coming.
- **At most `max_connections` connections**; past that a 503 and close.
- **`100 Continue` only in turn**: when the body is about to be read and no earlier answer is owed.

Headers the handler never sees (hop-by-hop, RFC 9110 §7.6.1): `connection`, `keep-alive`, `te`, `trailer`,
`transfer-encoding`, `upgrade`, `expect`, every `proxy-*`, every header that `Connection` names, and the trailers of
a chunked body (dropped: never merged into the head). Every other header is handed on as sent, in order, with its
name in lower case; `host` and `content-length` included.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol

import httptools
import orjson

from ..settings.groups import (
    DEFAULT_HEAD_TIMEOUT_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SEND_TIMEOUT_S,
)

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # request line and headers; also a chunked body's trailers, and one chunk-size line
MAX_OWED_ANSWERS = 8  # requests received and not yet answered on one connection before it stops reading
# The limits a deployment sets (`settings.http`), by default: the number of connections; a kept-alive connection
# with nothing to do, or a body that stopped arriving; from a head's first byte (or from the connection) to its blank
# line (slowloris); a client that reads none of its answers.
MAX_CONNECTIONS = DEFAULT_MAX_CONNECTIONS
IDLE_TIMEOUT_S = DEFAULT_IDLE_TIMEOUT_S
HEAD_TIMEOUT_S = DEFAULT_HEAD_TIMEOUT_S
SEND_TIMEOUT_S = DEFAULT_SEND_TIMEOUT_S
# After the last answer the connection reads and drops what the client still sends for this long before closing:
# closing a socket with unread data resets it, and a reset can destroy the answer before the client reads it.
# It drains while bytes keep coming (a body refused with 413 may still be on its way), up to MAX_LINGER_S.
LINGER_S = 2.0
MAX_LINGER_S = 30.0
SWEEP_INTERVAL_S = 5.0
_MIN_SWEEP_INTERVAL_S = 0.05
_JSON = (b"content-type", b"application/json")
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_NO_BODY = frozenset({204, 304})  # answers that carry neither a body nor a Content-Length
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_BLANK = b"\r\n\r\n"  # the end of a head (llhttp accepts no bare LF)
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"expect"})
_PLAIN_CONNECTION = frozenset({b"close", b"keep-alive", b"upgrade", b""})  # options that name no header
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_READ_HERE = _HOP_BY_HOP | {b"host", b"content-length"}
# What a Host can hold: a name, an IPv4 or a bracketed IPv6 address, a port (RFC 3986 reg-name characters).
_HOST_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%!$&'()*+,;=:[]"
_HEX = re.compile(rb"[0-9A-Fa-f]+")
_HTTP_11 = b"HTTP/1.1\r\n"
_METHOD_NAMES = {m.encode(): m for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")}

# What the bytes being read belong to.
_HEAD, _FIXED, _CHUNKED, _DONE = range(4)  # _DONE: nothing more is parsed on this connection
# A read parsed whole: in progress, one request complete in it, a second one began (undone and parsed again).
_WHOLE, _WHOLE_DONE, _REWIND = 1, 2, 3
# Where a chunked body is, as far as finding its end needs (the parser stays the judge of what is valid).
_CHUNK_SIZE, _CHUNK_DATA, _CHUNK_TRAILERS, _CHUNK_LOST = range(4)


@dataclass(slots=True)
class HttpRequest:
    method: str  # HEAD arrives as GET: the server leaves the body out of the answer
    path: str  # as sent, percent-encoding kept
    query: str  # without the "?"
    headers: list[tuple[bytes, bytes]]  # names in lower case, hop-by-hop headers left out
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


class _Rewind(Exception):
    """A second request begins in a read parsed whole: it is parsed again, one request at a time."""


class _Refused(Exception):
    """The request cannot be accepted: answer this, after the requests before it, and close the connection."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response


def _bad_request(message: str) -> _Refused:
    return _Refused(HttpResponse.error(400, "BadRequest", message))


def _too_long(what: str) -> _Refused:
    return _Refused(HttpResponse.error(431, "RequestHeaderFieldsTooLarge", f"{what} pass {MAX_HEAD_BYTES} bytes"))


class _Pending:
    """One request as it is parsed, then as it waits its turn, then as it is answered (once)."""

    __slots__ = (
        "answered",
        "awaits_continue",
        "body",
        "connection",
        "head_only",
        "headers",
        "hop",
        "hosts",
        "last",
        "length",
        "method",
        "path",
        "query",
        "refused",
        "size",
        "url",
    )

    def __init__(self, connection: HttpConnection) -> None:
        self.connection = connection
        self.url = b""
        self.path = self.query = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self.hop: list[tuple[bytes, bytes]] = []  # hop-by-hop headers: read here, never handed on
        self.hosts = 0
        self.length: bytes | None = None
        self.body: list[bytes] = []
        self.size = 0
        self.method = "GET"
        self.head_only = False
        self.last = False  # the connection ends with this answer
        self.awaits_continue = False
        self.answered = False
        self.refused: HttpResponse | None = None  # answered with this, without the handler

    def request(self) -> HttpRequest:
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        return HttpRequest(self.method, self.path, self.query, self.headers, body)

    def respond(self, response: HttpResponse) -> None:
        """The one answer to this request; any later one is a bug in a handler, logged and dropped."""
        if self.answered:
            log.error("a second answer (%d) to %s %s was dropped", response.status, self.method, self.path[:200])
            return
        self.answered = True
        self.connection._deliver(self, response)


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, answer requests one at a time in arrival order, keep alive."""

    __slots__ = (
        "_active_at",
        "_begun",
        "_chunk",
        "_current",
        "_ended_at",
        "_head_since",
        "_held",
        "_host_ok",
        "_line_head",
        "_line_len",
        "_linger",
        "_parser",
        "_parsing",
        "_partial",
        "_peer_done",
        "_phase",
        "_pumping",
        "_queue",
        "_reading",
        "_remaining",
        "_server",
        "_transport",
        "_whole",
        "_whole_data",
        "_write_blocked_since",
        "closed",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._parsing = _Pending(self)
        self._queue: collections.deque[_Pending] = collections.deque()  # complete, waiting their turn
        self._current: _Pending | None = None  # the request being answered: one at a time
        self._phase = _HEAD
        self._remaining = 0  # of a body with a Content-Length, or of a chunk (with its CRLF)
        self._chunk = _CHUNK_SIZE
        self._line_head = b""  # the start of a chunk-size line split across reads
        self._line_len = 0
        self._partial = bytearray()  # a head (or trailers) still arriving: it goes to the parser whole
        self._held = b""  # bytes received and not parsed yet: reading waits for room
        self._pumping = False
        self._reading = True
        self._whole = 0  # a read parsed whole: see `_feed_whole`
        self._whole_data: bytes | None = None
        self._host_ok = b"\0"  # the last Host found valid (none can hold a NUL)
        self._begun = False  # the parser is inside a message
        self._peer_done = False  # the client sent EOF
        self._linger: asyncio.TimerHandle | None = None
        now = time.monotonic()
        self._active_at = now
        self._head_since: float | None = now  # the first request's head is awaited from the connection on
        self._write_blocked_since: float | None = None
        self._ended_at: float | None = None
        self.closed = False  # no more answers go out (the socket may still be draining)

    @property
    def idle(self) -> bool:
        return self._current is None and not self._queue

    @property
    def owed(self) -> int:
        """Requests received in full and not answered yet (at most MAX_OWED_ANSWERS, then reading stops)."""
        return len(self._queue) + (self._current is not None)

    # --- asyncio.Protocol --------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        server = self._server
        if len(server.connections) >= server.max_connections:
            self._overloaded()
            return
        server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._phase = _DONE
        self._queue.clear()
        self._held = b""
        self._partial.clear()
        if self._linger is not None:
            self._linger.cancel()
        self._server.connections.discard(self)

    def pause_writing(self) -> None:
        self._write_blocked_since = time.monotonic()
        self._sync_reading()

    def resume_writing(self) -> None:
        self._write_blocked_since = None
        self._pump()

    def data_received(self, data: bytes) -> None:
        self._active_at = time.monotonic()
        if self._phase == _DONE:
            return  # after the last request: dropped
        if self._held:
            self._held += data  # reading was paused as this arrived: it waits behind the rest
        elif not (
            self._phase == _HEAD
            and len(data) <= MAX_HEAD_BYTES
            and not self._partial
            and self._current is None
            and not self._queue
            and self._write_blocked_since is None
            and self._feed_whole(data)
        ):
            self._feed_parts(data)
        self._pump()

    def eof_received(self) -> bool:
        self._peer_done = True
        if self._held:
            return True  # the end of input is applied once what was held back is parsed
        return self._end_of_input()

    # --- reading -----------------------------------------------------------------------------------------------

    def _feed_whole(self, data: bytes) -> bool:
        """The common case, a read that holds one whole request, parsed in one call. A read that turns out to hold
        more than one request, or to end inside a head or a chunked body, is undone (False) and parsed again by
        `_feed_parts`, which stops between any two requests and holds heads back until they are whole."""
        queued, head_since = len(self._queue), self._head_since
        if head_since is None:
            self._head_since = self._active_at  # the time this read arrived
        self._whole, self._whole_data = _WHOLE, data
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._parse_failed(exc)
        whole, self._whole, self._whole_data = self._whole, 0, None
        if self._phase == _DONE:
            return True  # refused, or ended: what came before is queued, what came after is dropped
        if whole != _REWIND and (not self._begun or self._phase == _FIXED):
            if self._begun:  # the body goes on in the next reads
                self._remaining = int(self._parsing.length or 0) - self._parsing.size
            return True
        while len(self._queue) > queued:
            self._queue.pop()
        self._parser = httptools.HttpRequestParser(self)
        self._parsing = _Pending(self)
        self._phase, self._begun, self._head_since = _HEAD, False, head_since
        return False

    def _feed_parts(self, data: bytes) -> None:
        """Parse `data` one message part at a time, holding the rest back when there is no room for more."""
        pos, size, view = 0, len(data), memoryview(data)
        while pos < size and self._phase != _DONE:
            if (self._queue or self._current or self._write_blocked_since is not None) and self._must_wait():
                self._held = data[pos:]
                return
            try:
                part, pos = self._next_part(data, view, pos, size)
            except _Refused as exc:
                self._refuse(exc.response)
                return
            if part is None:
                continue
            try:
                self._parser.feed_data(part)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
                self._parse_failed(exc)

    def _parse_failed(self, exc: Exception) -> None:
        if isinstance(exc, httptools.HttpParserUpgrade):
            self._stop_parsing()  # the upgrade request is answered as plain HTTP, and is the last one
        elif isinstance(exc, httptools.HttpParserCallbackError):  # raised in one of the callbacks below
            self._callback_failed(exc.__context__)
        elif self._phase != _DONE:  # after the last request (Connection: close) anything is dropped
            self._refuse(HttpResponse.error(400, "BadRequest", f"Malformed HTTP request: {exc}"))

    def _must_wait(self) -> bool:
        if self._write_blocked_since is not None:
            return True
        owed = len(self._queue) + (self._current is not None)
        if self._phase == _HEAD:
            return owed >= MAX_OWED_ANSWERS
        # a body arriving behind answers still owed: the bodies waiting their turn stay within one body's limit
        if not owed:
            return False
        waiting = self._parsing.size + sum(pending.size for pending in self._queue)
        return waiting >= self._server.max_body_bytes

    def _next_part(self, data: bytes, view: memoryview, pos: int, size: int) -> tuple[bytes | memoryview | None, int]:
        """What to hand the parser next (None: kept until more arrives), and where it ends in `data`. The parser
        gets one message part at a time, so reading can stop between any two requests."""
        phase = self._phase
        if phase == _FIXED:
            end = min(size, pos + self._remaining)
            self._remaining -= end - pos
            return view[pos:end], end
        if phase == _HEAD:
            if self._head_since is None:
                self._head_since = self._active_at
            return self._section(data, view, pos, size, trailers=False)
        return self._chunked(data, view, pos, size)

    def _section(
        self, data: bytes, view: memoryview, pos: int, size: int, *, trailers: bool
    ) -> tuple[bytes | memoryview | None, int]:
        """A head (or a trailer section) up to its blank line, once all of it has arrived."""
        partial = self._partial
        if not partial:
            if trailers and data.startswith(b"\r\n", pos):
                return view[pos : pos + 2], pos + 2
            i = data.find(_BLANK, pos, pos + MAX_HEAD_BYTES)
            if i >= 0:
                return view[pos : i + 4], i + 4
            if size - pos >= MAX_HEAD_BYTES:
                raise _too_long("The trailers of the chunked body" if trailers else "The request line and headers")
            partial += view[pos:size]
            return None, size
        seen = len(partial)
        partial += view[pos : pos + MAX_HEAD_BYTES - seen]
        if trailers and partial.startswith(b"\r\n"):
            end = 2
        else:
            end = partial.find(_BLANK, max(0, seen - 3)) + 4
            if end < 4:  # not yet: everything that arrived is kept
                if len(partial) >= MAX_HEAD_BYTES:
                    raise _too_long("The trailers of the chunked body" if trailers else "The request line and headers")
                return None, size
        section = bytes(partial[:end])
        partial.clear()
        return section, pos + end - seen

    def _chunked(self, data: bytes, view: memoryview, pos: int, size: int) -> tuple[bytes | memoryview | None, int]:
        """Chunks up to the end of the body, the trailers whole: the parser reads no further than this message."""
        start = pos
        while pos < size:
            state = self._chunk
            if state == _CHUNK_DATA:
                step = min(self._remaining, size - pos)
                self._remaining -= step
                pos += step
                if not self._remaining:
                    self._chunk = _CHUNK_SIZE
            elif state == _CHUNK_SIZE:
                pos = self._size_line(data, pos, size)
                if self._chunk == _CHUNK_TRAILERS:
                    return view[start:pos], pos
            elif state == _CHUNK_TRAILERS:
                section, end = self._section(data, view, pos, size, trailers=True)
                if section is not None:
                    self._chunk = _CHUNK_LOST  # the message ends here; on_message_complete says it did
                return section, end
            else:
                break  # lost track (the parser will say what is wrong): hand it all on
        return view[start:size], size

    def _size_line(self, data: bytes, pos: int, size: int) -> int:
        newline = data.find(b"\n", pos)
        end = size if newline < 0 else newline
        if len(self._line_head) < 32:  # enough for any valid size; the rest of the line is only counted
            self._line_head += data[pos : min(end, pos + 32)]
        self._line_len += end - pos
        if self._line_len > MAX_HEAD_BYTES:
            raise _bad_request(f"A chunk-size line passes {MAX_HEAD_BYTES} bytes")
        if newline < 0:
            return size
        digits = _HEX.match(self._line_head)
        self._line_head, self._line_len = b"", 0
        if digits is None:
            self._chunk = _CHUNK_LOST
        elif chunk_size := int(digits.group(), 16):
            self._remaining = chunk_size + 2
            self._chunk = _CHUNK_DATA
        else:
            self._chunk = _CHUNK_TRAILERS
        return newline + 1

    def _callback_failed(self, cause: BaseException | None) -> None:
        if isinstance(cause, _Rewind):
            return
        if isinstance(cause, _Refused):
            self._refuse(cause.response)
            return
        log.error("reading a request failed in the gateway", exc_info=cause)
        self._refuse(HttpResponse.error(500, "InternalError", "The gateway failed to read the request"))

    def _refuse(self, response: HttpResponse) -> None:
        """Nothing more is read: the requests before this one are answered first, then this answer, then the close."""
        self._stop_parsing()
        refusal = _Pending(self)
        refusal.refused = response
        refusal.last = True
        self._queue.append(refusal)

    def _stop_parsing(self) -> None:
        self._phase = _DONE
        self._held = b""
        self._partial.clear()

    def _end_of_input(self) -> bool:
        """The client sent EOF: answer what it asked in full, then close (the transport stays open while owed)."""
        self._stop_parsing()  # a request it left unfinished is dropped
        owed = self._queue[-1] if self._queue else self._current
        if owed is None or self.closed:
            return False
        owed.last = True
        return True

    def _sync_reading(self) -> None:
        """Read while there is room; once the last answer is out, read again, to drain and drop."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        blocked = self._write_blocked_since is not None or bool(self._held) or self._phase == _DONE
        want = self.closed or not blocked
        if want != self._reading:
            self._reading = want
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()

    # --- httptools callbacks -----------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._whole == _WHOLE_DONE:
            self._whole = _REWIND
            raise _Rewind
        self._begun = True
        self._parsing = _Pending(self)

    def on_url(self, url: bytes) -> None:
        self._parsing.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._phase != _HEAD:
            return  # a trailer: dropped (merged into the head, a trailer `authorization` would override the real one)
        name = name.lower()
        value = value.rstrip(b" \t")  # the parser keeps trailing whitespace, which is no part of a value
        if name not in _READ_HERE and (name[0] != 0x70 or not name.startswith(b"proxy-")):  # 0x70: "p"
            self._parsing.headers.append((name, value))  # the common case: one set lookup
            return
        pending = self._parsing
        if name == b"connection" and value.lower() in _PLAIN_CONNECTION:
            return  # keep-alive or close, which the parser reads itself
        if name == b"host":
            pending.hosts += 1
            if value != self._host_ok:  # a client sends the same Host on every request
                if value.translate(None, _HOST_CHARS):
                    raise _bad_request("The Host header is not a valid host")
                self._host_ok = value
        elif name == b"content-length":
            pending.length = value  # the parser has refused a second one, and one that is not a number
        else:
            pending.hop.append((name, value))  # hop-by-hop: read here, never handed on
            return
        pending.headers.append((name, value))

    def on_headers_complete(self) -> None:
        pending = self._parsing
        parser = self._parser
        self._head_since = None
        raw_method = parser.get_method()
        method = _METHOD_NAMES.get(raw_method) or raw_method.decode("latin-1")
        # httptools formats the version with str.format, which costs more than all the other checks of a head: a
        # read parsed whole has the request line at its start, so "HTTP/1.1" is looked for right after the target
        whole = self._whole_data
        if whole is not None and whole.startswith(_HTTP_11, len(raw_method) + len(pending.url) + 2):
            version = "1.1"
        else:
            version = parser.get_http_version()
            if version != "1.1":
                _check_version(version)
        pending.head_only = method == "HEAD"
        pending.method = "GET" if pending.head_only else method
        url = pending.url
        if url[0] == 0x2F and 0x23 not in url and 0x25 not in url:  # "/", no "#", no "%": nearly every request
            path, _, query = url.partition(b"?")  # exactly what httptools.parse_url makes of it (a test holds it)
            pending.path, pending.query = path.decode("latin-1"), query.decode("latin-1")
        else:
            pending.path, pending.query = _split_target(url, method)
        if pending.hosts != 1 and (pending.hosts or version == "1.1"):
            raise _bad_request("An HTTP/1.1 request needs exactly one Host header, and no request has two")
        chunked, expects_continue = _read_hop_by_hop(pending) if pending.hop else (False, False)
        length = int(pending.length) if pending.length is not None else 0
        if length > self._server.max_body_bytes:
            raise _Refused(self._server.too_large())
        pending.last = version != "1.1" or not parser.should_keep_alive()
        if parser.should_upgrade():
            if length or chunked:  # the parser would take the body for the new protocol's bytes
                raise _bad_request("Protocol upgrades are not supported, and an upgrade request cannot carry a body")
            pending.last = True  # answered as plain HTTP; what follows may already be another protocol
        if expects_continue:
            pending.awaits_continue = version == "1.1" and (chunked or length > 0)
        self._remaining = length
        if chunked:
            self._phase, self._chunk = _CHUNKED, _CHUNK_SIZE
        else:
            self._phase = _FIXED

    def on_body(self, body: bytes) -> None:
        pending = self._parsing
        pending.awaits_continue = False  # the client did not wait for it
        pending.size += len(body)
        if pending.size > self._server.max_body_bytes:
            raise _Refused(self._server.too_large())
        pending.body.append(body)

    def on_message_complete(self) -> None:
        if self._whole:
            self._whole = _WHOLE_DONE
        self._begun = False
        pending = self._parsing
        self._queue.append(pending)
        self._phase = _DONE if pending.last else _HEAD
        self._chunk = _CHUNK_SIZE

    # --- answering ---------------------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Start the next request when none is being answered, and parse what was held back once there is room."""
        if self._pumping:
            return  # a pump further up the stack goes on
        self._pumping = True
        try:
            while not self.closed:
                while self._current is None and self._queue and self._write_blocked_since is None:
                    self._start(self._queue.popleft())
                    if self.closed:
                        return
                if self._parsing.awaits_continue:
                    self._maybe_continue()
                if not self._held or self._must_wait():
                    break
                held, self._held = self._held, b""
                self._feed_parts(held)
                if self._peer_done and not self._held and not self._end_of_input():
                    self._finish()  # the client sent EOF behind what was held, and nothing is owed
                    return
        finally:
            self._pumping = False
            if not self._reading or self._held or self._write_blocked_since is not None or self._phase == _DONE:
                self._sync_reading()

    def _start(self, pending: _Pending) -> None:
        self._current = pending
        if pending.refused is not None:
            pending.respond(pending.refused)
            return
        request = pending.request()
        handler = self._server.handler
        try:
            taken = handler.forward_now(request, pending.respond)
        except Exception:
            log.exception("%s %s failed in the gateway", request.method, request.path[:200])
            pending.respond(HttpResponse.internal_error())  # dropped if it answered before failing
            return
        if taken or pending.answered:
            return
        task = asyncio.get_running_loop().create_task(self._answer(pending, request))
        self._server.tasks.add(task)
        task.add_done_callback(self._server.tasks.discard)

    async def _answer(self, pending: _Pending, request: HttpRequest) -> None:
        try:
            response = await self._server.handler(request)
        except Exception:
            log.exception("%s %s failed in the gateway", request.method, request.path[:200])
            response = HttpResponse.internal_error()
        pending.respond(response)

    def _deliver(self, pending: _Pending, response: HttpResponse) -> None:
        """Write the answer of the request being answered (called once per request, by `_Pending.respond`)."""
        if pending is not self._current:
            log.error("an answer for a request not being answered was dropped (%s %s)", pending.method, pending.path)
            return
        self._current = None
        transport = self._transport
        if self.closed or transport is None or transport.is_closing():
            return  # the client went away; a write it sent is logged and still applied
        last = pending.last or self._server.stopping
        transport.write(encode_response(response, head_only=pending.head_only, close=last))
        self._active_at = time.monotonic()
        if last:
            self._finish()
        else:
            self._pump()

    def _maybe_continue(self) -> None:
        pending = self._parsing
        if (
            self._phase in (_FIXED, _CHUNKED)
            and self.idle
            and not self._held
            and self._write_blocked_since is None
            and self._transport is not None
        ):
            pending.awaits_continue = False
            self._transport.write(_CONTINUE)

    def _finish(self) -> None:
        """The last answer is written: send EOF, drain and drop what the client still sends, then close."""
        if self._ended_at is not None:
            return
        self._stop_parsing()
        self.closed = True
        self._ended_at = time.monotonic()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._peer_done or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._sync_reading()
        self._linger = asyncio.get_running_loop().call_later(LINGER_S, self._linger_over)

    def _linger_over(self) -> None:
        now = time.monotonic()
        assert self._ended_at is not None and self._transport is not None
        if now - self._active_at < LINGER_S and now - self._ended_at < MAX_LINGER_S:
            self._linger = asyncio.get_running_loop().call_later(LINGER_S, self._linger_over)  # still sending
            return
        self._transport.close()

    def _overloaded(self) -> None:
        limit = self._server.max_connections
        message = f"The gateway has {limit} connections open, its limit (max_connections); retry later"
        response = HttpResponse.error(503, "ServiceUnavailable", message)
        response.headers = [_JSON, (b"retry-after", b"1")]
        if self._transport is not None:
            self._transport.write(encode_response(response, close=True))
        self._finish()

    # --- time limits -------------------------------------------------------------------------------------------

    def check_timers(self, now: float) -> None:
        """Close what waited too long: called by the server's sweep, so the request path sets no timer."""
        server = self._server
        if self._ended_at is not None:
            if now - self._ended_at > server.send_timeout + MAX_LINGER_S:
                self._abort()  # the client never read its last answer
            return
        if self._write_blocked_since is not None:
            if now - self._write_blocked_since > server.send_timeout:
                self._abort()
            return
        if self._held or self._phase == _DONE:
            return  # waiting for answers, not for the client
        if self._head_since is not None and self._phase == _HEAD:
            if now - self._head_since > server.head_timeout:
                self._timed_out(f"The request head did not arrive within {server.head_timeout:g} s")
        elif self._phase != _HEAD:
            # a client waiting for its `100 Continue` (held back by answers owed) is not late with its body
            if now - self._active_at > server.idle_timeout and not self._parsing.awaits_continue:
                self._timed_out(f"The request body stopped arriving for {server.idle_timeout:g} s")
        elif self.idle:
            self.close_if_idle(server.idle_timeout, now)

    def _timed_out(self, message: str) -> None:
        if self._phase == _HEAD and not self._partial and self.idle:
            self.close()  # nothing of a request arrived: an answer could cross one the client is just sending
            return
        self._refuse(HttpResponse.error(408, "RequestTimeout", message))
        self._pump()

    def close_if_idle(self, idle_for: float, now: float | None = None) -> None:
        waited = (now if now is not None else time.monotonic()) - self._active_at
        if self.idle and not self._partial and not self._held and waited >= idle_for:
            self.close()

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        self.closed = True

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        self.closed = True


def _check_version(version: str) -> None:
    if version in ("1.1", "1.0"):
        return
    if version == "0.9":
        raise _bad_request("HTTP/0.9 is not supported; use HTTP/1.1")
    raise _Refused(
        HttpResponse.error(505, "HTTPVersionNotSupported", f"HTTP/{version} is not supported here; use HTTP/1.1")
    )


def _split_target(url: bytes, method: str) -> tuple[str, str]:
    """The path (percent-encoding kept) and the query of a request target, or a 400 for one a strict server refuses.
    The parser has already refused control characters, spaces and bytes outside ASCII."""
    if 0x23 in url:  # "#"; an int is found several times faster than a one-byte string
        raise _bad_request("The request target carries a fragment ('#'), which is never sent to a server")
    if 0x25 in url and _BAD_ESCAPE.search(url):  # "%"
        raise _bad_request("The request target has a malformed percent-encoding")
    if url[0] == 0x2F:  # origin-form: httptools.parse_url splits it at its first "?" exactly so, at a sixth of the cost
        path, _, query = url.partition(b"?")
        return path.decode("latin-1"), query.decode("latin-1")
    if url == b"*":
        if method != "OPTIONS":
            raise _bad_request("The request target '*' is only for OPTIONS")
        return "*", ""
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        raise _bad_request("The request target is not a valid URL") from None
    if parsed.schema not in (b"http", b"https") or not parsed.host or parsed.userinfo:
        raise _bad_request("The request target must be a path (/path?query) or an absolute http URL")
    return (parsed.path or b"/").decode("latin-1"), (parsed.query or b"").decode("latin-1")


def _read_hop_by_hop(pending: _Pending) -> tuple[bool, bool]:
    """Whether the body is chunked and the client waits for `100 Continue`; drops the headers Connection names."""
    chunked = expects_continue = False
    named: set[bytes] = set()
    for name, value in pending.hop:
        if name == b"connection":
            if value.lower() not in _PLAIN_CONNECTION:
                named.update(token.strip().lower() for token in value.split(b","))
        elif name == b"transfer-encoding":
            if value.strip().lower() != b"chunked":
                raise _Refused(
                    HttpResponse.error(501, "NotImplemented", "Only Transfer-Encoding: chunked is supported")
                )
            chunked = True
        elif name == b"expect":
            expects_continue = value.strip().lower() == b"100-continue"
    named -= _PLAIN_CONNECTION
    if named:
        pending.headers = [pair for pair in pending.headers if pair[0] not in named]
    return chunked, expects_continue


class HttpServer:
    def __init__(
        self,
        handler: Handler,
        *,
        max_body_bytes: int,
        idle_timeout: float = IDLE_TIMEOUT_S,
        head_timeout: float = HEAD_TIMEOUT_S,
        send_timeout: float = SEND_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.idle_timeout = idle_timeout
        self.head_timeout = head_timeout
        self.send_timeout = send_timeout
        self.max_connections = max_connections
        self.connections: set[HttpConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def too_large(self) -> HttpResponse:
        return HttpResponse.error(
            413,
            "PayloadTooLarge",
            f"The request body is larger than the gateway's limit of {self.max_body_bytes} bytes (max_body_bytes)",
        )

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: HttpConnection(self), host, port, backlog=1024)
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        # Often enough that a time limit is late by a quarter of itself at most.
        shortest = min(self.idle_timeout, self.head_timeout, self.send_timeout)
        interval = max(_MIN_SWEEP_INTERVAL_S, min(SWEEP_INTERVAL_S, shortest / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.check_timers(now)

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
                if connection.closed or connection.idle:
                    connection.close()  # no answer owed (a request still arriving is dropped)
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
