"""Requests to instances: the only place that speaks HTTP to Chroma servers.

A lean HTTP/1.1 client: one asyncio.Protocol per keep-alive connection, httptools (the parser the gateway's
own server uses) to parse answers, a LIFO pool of idle connections per instance. It does what a proxy hop
needs and nothing else: no redirects, cookies, proxies or decompression.

What it guarantees, whatever the caller hands it and however an instance behaves:

- The gateway's own credentials go out, a client's never: each instance gets the headers configured for it
  (`credentials`), and a client's `authorization`, `x-chroma-token` and the admin token's header stay behind,
  whoever hands them over (a client's request, a logged entry written before credentials were kept out of the
  log), as does any client header of a name the gateway sets itself.
- Only end-to-end headers go out. Hop-by-hop ones (`connection`, `keep-alive`, `expect`, `te`, `trailer`,
  `transfer-encoding`, `upgrade`, every `proxy-*`) and every header the request's own `Connection` names stay
  behind; `host` and `content-length` are the client's own. The request target goes out as visible ASCII:
  any other character (a space, CR, LF, non-ASCII) is percent-encoded, so nothing can split the request line.
- One answer per request, the final one: 1xx interim answers are skipped, a HEAD answer ends with its head,
  an answer without a length ends where the instance closes the connection, trailers never become headers.
- A pooled connection is reused only while it is in step with the instance: its last answer was complete and
  kept alive, and not a byte arrived since. A byte with no request in flight closes the connection.
- Bounded: an answer's head may take `MAX_ANSWER_HEAD_BYTES`, the whole answer (interim answers, head,
  framing, body) `max_answer_bytes`; past either the request fails and the connection is closed, unread.
  Every request has a deadline.
- Sent twice only where that is harmless: a request whose pooled connection the instance had closed before a
  byte of answer came back is resent on another connection when it is idempotent (see `request`); otherwise it
  fails with `StaleConnection` and the caller decides.
- Every failure is an `InstanceError` (`StaleConnection` for the case above), never a parser's or a socket's
  own exception.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import httptools

from ..errors import InstanceError, StaleConnection
from ..pulse import Pulse
from ..settings.groups import DEFAULT_MAX_ANSWER_BYTES

# Headers that describe one hop, not the request (RFC 9110 7.6.1), and those this client sets itself (host,
# content-length). Also left out: accept-encoding (answers are not decompressed here), content-encoding, date
# and server.
HOP_HEADERS = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "expect",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "accept-encoding",
        "content-encoding",
        "date",
        "server",
    }
)
HOP_HEADER_PREFIX = "proxy-"  # proxy-authorization, proxy-connection, ...: meant for a proxy, never an instance
# What clients authenticate to the gateway with: the gateway's business, never an instance's.
CLIENT_CREDENTIAL_HEADERS = frozenset({"authorization", "x-chroma-token", "x-chroma-ha-token"})
_HOP_HEADER_BYTES = frozenset(name.encode() for name in HOP_HEADERS | CLIENT_CREDENTIAL_HEADERS)
_HOP_PREFIX_BYTES = HOP_HEADER_PREFIX.encode()
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close"})  # Connection values that name no other header
# Instance answer headers the client sees; the rest describe the instance's hop (length, date, server).
ANSWER_HEADERS = frozenset({b"content-type", b"chroma-trace-id"})
# Answer headers that frame a body; an answer with neither ends where the instance closes the connection.
_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
MAX_CONNECTIONS_PER_INSTANCE = 256
MAX_IDLE_PER_INSTANCE = 64
# The largest answer head (and interim answers before it): httptools buffers a header until it ends, at a cost
# that grows with the square of its length, so a head is cut long before that matters.
MAX_ANSWER_HEAD_BYTES = 64 * 1024
# Methods resent on a stale connection when the caller does not say: sent twice, they change nothing and answer
# the same. PUT and DELETE, idempotent by RFC 9110 9.2.2, do not answer the same: a DELETE resent after the first
# one took effect answers 404.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD"})
# Answers are checked against their deadline this often, by one timer for every request in flight: a timer per
# request would cost the proxied query more than its whole routing. A timeout fires up to this much late.
WATCH_INTERVAL_S = 0.1
_VISIBLE_ASCII = string.punctuation  # with letters and digits, which quote() always keeps


# Headers as the gateway's HTTP server hands them over: raw (name, value) pairs, names in lower case.
HeaderPairs = Sequence[tuple[bytes, bytes]]
Headers = Mapping[str, str] | HeaderPairs | None


@dataclass(slots=True)
class Upstream:
    status: int
    headers: HeaderPairs  # those of ANSWER_HEADERS the instance sent
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


# The gateway's own headers for each instance: (name, value) pairs, by instance URL.
Credentials = Mapping[str, Sequence[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where an instance URL points: what to connect to, the Host it is asked as, the path its API is under; the
    gateway's own header lines for it (`own`), and the names a forwarded header may not have (`dropped`)."""

    hostname: str
    port: int
    secure: bool
    host: bytes
    prefix: str
    own: bytes
    dropped: frozenset[bytes]

    @classmethod
    def of(cls, instance: str, own: Iterable[tuple[str, str]] = ()) -> _Origin:
        parts = urlsplit(instance)
        secure = parts.scheme == "https"
        host = parts.netloc.rpartition("@")[2]  # never credentials in a Host header
        port = parts.port or (443 if secure else 80)
        lines, names = [], set()
        for name, value in own:
            line = f"{name}: {value}"
            if "\r" in line or "\n" in line or "\0" in line:
                raise ValueError(f"header {name!r} for an instance: CR, LF and NUL cannot be sent")
            lines.append(f"{line}\r\n".encode("latin-1"))
            names.add(name.lower().encode("latin-1"))
        dropped = _HOP_HEADER_BYTES | names if names else _HOP_HEADER_BYTES
        prefix = parts.path.rstrip("/")
        return cls(parts.hostname or "", port, secure, host.encode("idna"), prefix, b"".join(lines), dropped)


def _target(path: str, query: str) -> bytes:
    """The request target as it goes on the wire; characters that may not appear there are percent-encoded
    (UTF-8), so that a name put into a path can neither fail to encode nor split the request line."""
    target = f"{path}?{query}" if query else path
    if target.isascii() and target.isprintable() and " " not in target:
        return target.encode("ascii")
    return quote(target, safe=_VISIBLE_ASCII).encode("ascii")


def _connection_named(values: list[bytes]) -> frozenset[bytes]:
    """The headers that the request's Connection headers name: hop-by-hop too (RFC 9110 7.6.1)."""
    return frozenset(token.strip().lower() for value in values for token in value.split(b","))


def _forwarded_pairs(headers: HeaderPairs, dropped: frozenset[bytes]) -> bytes:
    # one pass for the common case, where Connection names nothing but itself (keep-alive, close): the read fast
    # path crosses this for every query
    lines = []
    names_more = False
    for pair in headers:
        name = pair[0]
        if name in dropped:
            names_more = names_more or (name == b"connection" and pair[1] not in _PLAIN_CONNECTION)
        elif not name.startswith(_HOP_PREFIX_BYTES):
            lines.append(b"%s: %s\r\n" % pair)
    if names_more:
        named = _connection_named([value for name, value in headers if name == b"connection"])
        lines = [
            b"%s: %s\r\n" % pair
            for pair in headers
            if pair[0] not in named and pair[0] not in dropped and not pair[0].startswith(_HOP_PREFIX_BYTES)
        ]
    return b"".join(lines)


def _forwarded_mapping(headers: Mapping[str, str], dropped: frozenset[bytes]) -> bytes:
    named = [v.encode("latin-1") for k, v in headers.items() if k.lower() == "connection"]
    drop = _connection_named(named) | dropped
    lines = []
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith(HOP_HEADER_PREFIX) or lowered.encode("latin-1") in drop:
            continue
        line = f"{name}: {value}"
        if "\r" in line or "\n" in line or "\0" in line:  # a header line ends here and nowhere else
            raise ValueError(f"header {name!r}: CR, LF and NUL cannot be sent")
        lines.append(f"{line}\r\n".encode("latin-1"))
    return b"".join(lines)


def _request_head(method: str, target: bytes, origin: _Origin, headers: Headers, length: int) -> bytes:
    head = b"%s %s HTTP/1.1\r\nhost: %s\r\ncontent-length: %d\r\n%s" % (
        method.encode(),
        target,
        origin.host,
        length,
        origin.own,
    )
    if isinstance(headers, list):  # raw pairs from a client (the common case: tested first, and cheaply)
        return head + _forwarded_pairs(headers, origin.dropped) + b"\r\n"
    if isinstance(headers, Mapping):
        return head + _forwarded_mapping(headers, origin.dropped) + b"\r\n"
    if headers:
        return head + _forwarded_pairs(headers, origin.dropped) + b"\r\n"
    return head + b"\r\n"


class _Closed(ConnectionError):
    pass


class _Misbehaved(Exception):
    """The instance broke HTTP/1.1, or one of this client's limits: the connection cannot be trusted further."""

    retryable = True


class _TooLarge(_Misbehaved):
    retryable = False  # the same request would get the same answer


class _Stop(Exception):
    """Raised from a parser callback to stop parsing: the answer is complete and the connection is done."""


# A request's end: the connection it used, and the error it failed with (None: the answer is on the connection).
Finished = Callable[["_Connection", BaseException | None], None]
# An answer delivered by callback: the instance's answer, or the error (an InstanceError) instead.
Answered = Callable[[Upstream | None, InstanceError | None], None]


class _Connection(asyncio.Protocol):
    __slots__ = (
        "body",
        "closed",
        "deadline",
        "finished",
        "framed",
        "head_done",
        "head_only",
        "headers",
        "keep_alive",
        "limit",
        "max_bytes",
        "parser",
        "received",
        "status",
        "transport",
    )

    def __init__(self, max_bytes: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.finished: Finished | None = None
        self.closed = False
        self.max_bytes = max_bytes
        self.status, self.keep_alive = 0, True
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: bytes | bytearray = b""
        self.received, self.head_done, self.head_only, self.framed = 0, False, False, False
        self.deadline, self.limit = 0.0, 0.0

    def send(self, wire: bytes, finished: Finished, deadline: float, limit: float, head_only: bool) -> None:
        self.finished, self.received, self.head_only = finished, 0, head_only
        self.deadline, self.limit = deadline, limit
        assert self.transport is not None
        self.transport.write(wire)

    def stale(self, error: BaseException) -> bool:
        """Whether `error` means the instance had closed this connection before it read the request: it ended
        before a byte of answer came back. The instance may or may not have acted on the request."""
        return self.received == 0 and isinstance(error, (_Closed, ConnectionResetError, BrokenPipeError))

    def time_out(self) -> None:
        self.abort(TimeoutError(f"no answer within {self.limit:g}s"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.finished is None:  # nothing was asked: whatever this is, the connection is out of step
            self.abort(_Misbehaved("the instance sent bytes with no request in flight"))
            return
        self.received += len(data)
        if self.received > self.max_bytes:  # checked before parsing, so nothing past the cap is ever buffered
            self.abort(_TooLarge(f"the answer exceeded max_answer_bytes ({self.max_bytes} bytes)"))
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self.abort(_reason(exc))
            return
        if not self.head_done and self.received > MAX_ANSWER_HEAD_BYTES and self.finished is not None:
            self.abort(_TooLarge(f"the answer's head exceeded MAX_ANSWER_HEAD_BYTES ({MAX_ANSWER_HEAD_BYTES} bytes)"))

    def eof_received(self) -> bool | None:
        if self.finished is not None and self.head_done and not self.framed:
            # an answer with neither length nor chunks ends where the instance closes (RFC 9112 6.3)
            self._complete(self.parser.get_status_code(), keep_alive=False)
        return None  # close our side too: connection_lost follows

    def on_message_begin(self) -> None:
        if self.finished is None:  # bytes after the answer, in the same read
            raise _Misbehaved("the instance sent more than one answer to one request")
        self.headers, self.body, self.head_done, self.framed = [], b"", False, False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:  # a trailer: it describes the transfer, never the answer
            return
        name = name.lower()
        if name in ANSWER_HEADERS:
            self.headers.append((name, value))
        elif name in _FRAMING_HEADERS:
            self.framed = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 100 or status == 101:  # no upgrade is ever asked for; below 100 is not HTTP
            raise _Misbehaved(f"the instance answered with status {status}")
        if status < 200:
            return
        self.head_done = True
        if self.head_only:  # httptools cannot be told that a HEAD answer has no body: it ends here, unparsed
            self._complete(status, keep_alive=False)
            raise _Stop

    def on_body(self, body: bytes) -> None:
        # one piece (most answers) is kept as it came; more are joined as they come, never held as a list of
        # pieces: an answer in one-byte chunks would take many times its size
        if not self.body:
            self.body = body
        elif isinstance(self.body, bytearray):
            self.body += body
        else:
            self.body = bytearray(self.body) + body

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue, 103 Early Hints): the final one follows
            return
        self._complete(status, self.parser.should_keep_alive())

    def connection_lost(self, exc: Exception | None) -> None:
        self.abort(exc or _Closed("connection closed by the instance" + (" mid-answer" if self.received else "")))

    def abort(self, exc: BaseException) -> None:
        self.closed = True
        self._finish(exc)
        if self.transport is not None:
            self.transport.abort()  # what is still unsent would only reach an instance out of step

    def _complete(self, status: int, keep_alive: bool) -> None:
        self.status, self.keep_alive = status, keep_alive
        self._finish(None)

    def _finish(self, error: BaseException | None) -> None:
        finished, self.finished = self.finished, None
        if finished is not None:
            finished(self, error)

    def answer(self) -> Upstream:
        body, headers = self.body, self.headers
        self.body, self.headers = b"", []  # an idle connection holds on to no answer
        return Upstream(self.status, headers, body if isinstance(body, bytes) else bytes(body))


def _reason(error: Exception) -> Exception:
    """The reason a parse failed: ours when one of our callbacks raised it, else the parser's error."""
    cause = error.__context__
    return cause if isinstance(cause, (_Misbehaved, _Stop)) else error


# What a request to an instance can fail with, besides InstanceError itself: each becomes an InstanceError.
_FAILURES = (OSError, TimeoutError, httptools.HttpParserError, httptools.HttpParserUpgrade, _Misbehaved)


class InstanceClient:
    """Requests to instances over pooled keep-alive connections, awaited (`request`) or answered by callback
    (`send_now`, the proxy's fast path: no task and no future between a client's request and its answer).

    `max_answer_bytes`: the largest answer taken from an instance, counted on the wire (head, framing, body);
    a larger one fails its request with a non-retryable InstanceError that names the limit. `credentials`: the
    headers sent with every request to each instance (by its URL), the gateway's own."""

    def __init__(
        self,
        request_timeout: float,
        pool_size: int = MAX_CONNECTIONS_PER_INSTANCE,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        credentials: Credentials | None = None,
    ) -> None:
        if max_answer_bytes <= 0:
            raise ValueError(f"max_answer_bytes must be positive, got {max_answer_bytes}")
        self._timeout = request_timeout
        self._pool_size = pool_size
        self._new_connection = functools.partial(_Connection, max_answer_bytes)
        self._idle: dict[str, list[_Connection]] = {}
        self._in_flight: dict[str, int] = {}
        self._origins: dict[str, _Origin] = {}
        self._credentials = {url.rstrip("/"): tuple(own) for url, own in (credentials or {}).items()}
        self._freed = Pulse()
        self._ssl: ssl.SSLContext | None = None
        self._waiting: set[_Connection] = set()  # sent, not yet answered: what the watchdog looks at
        self._watchdog: asyncio.TimerHandle | None = None

    async def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.abort(_Closed("gateway stopping"))
        self._idle.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _origin(self, instance: str) -> _Origin:
        origin = self._origins.get(instance)
        if origin is None:
            origin = _Origin.of(instance, self._credentials.get(instance.rstrip("/"), ()))
            self._origins[instance] = origin
        return origin

    def _send(
        self, connection: _Connection, wire: bytes, finished: Finished, deadline: float, limit: float, head: bool
    ) -> None:
        """Send on `connection`, watched until it is answered or its `deadline` (`limit` seconds) passes."""
        self._waiting.add(connection)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(WATCH_INTERVAL_S, self._time_out_overdue)
        connection.send(wire, finished, deadline, limit, head)

    def _time_out_overdue(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in [c for c in self._waiting if c.deadline <= now]:
            self._waiting.discard(connection)
            connection.time_out()
        self._watchdog = loop.call_later(WATCH_INTERVAL_S, self._time_out_overdue) if self._waiting else None

    @staticmethod
    def _idle_connection(idle: list[_Connection]) -> _Connection | None:
        """The most recently used idle connection still open; ones the instance closed meanwhile are dropped."""
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.transport is not None and not connection.transport.is_closing():
                return connection
        return None

    async def _connect(self, instance: str) -> _Connection:
        origin = self._origin(instance)
        if origin.secure and self._ssl is None:
            self._ssl = ssl.create_default_context()
        _, connection = await asyncio.get_running_loop().create_connection(
            self._new_connection, origin.hostname, origin.port, ssl=self._ssl if origin.secure else None
        )
        if connection.closed:  # the instance spoke first, or hung up, before we could ask anything
            raise _Closed("connection closed by the instance before the request was sent")
        return connection

    def _free_slot(self, instance: str) -> None:
        self._in_flight[instance] -= 1
        self._freed.fire()

    def _recycle(self, instance: str, connection: _Connection, error: BaseException | None) -> None:
        """A request on `connection` ended: keep the connection for the next one if it can be."""
        self._waiting.discard(connection)
        idle = self._idle.setdefault(instance, [])
        reusable = error is None and connection.keep_alive and not connection.closed and _sent(connection)
        if reusable and len(idle) < MAX_IDLE_PER_INSTANCE:
            idle.append(connection)
        elif not connection.closed:
            connection.abort(_Closed("request abandoned" if error else "not kept alive"))  # never reuse it

    def _wire(self, instance: str, method: str, path: str, query: str, headers: Headers, body: bytes) -> bytes:
        origin = self._origin(instance)
        target = _target(origin.prefix + path, query)
        return _request_head(method, target, origin, headers, len(body)) + body

    def send_now(
        self,
        instance: str,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Headers = None,
        body: bytes = b"",
        answered: Answered,
    ) -> bool:
        """Send on an idle kept-alive connection at once and call `answered` with the result; False (and nothing
        sent) when no such connection is free. A stale connection is reported as StaleConnection, never resent:
        the caller knows whether sending again is harmless."""
        idle = self._idle.get(instance)
        in_flight = self._in_flight.get(instance, 0)
        if not idle or in_flight >= self._pool_size:
            return False
        wire = self._wire(instance, method, path, query, headers, body)
        connection = self._idle_connection(idle)
        if connection is None:
            return False
        self._in_flight[instance] = in_flight + 1

        def finished(connection: _Connection, error: BaseException | None) -> None:
            try:  # the answer first, the bookkeeping after: the client waits for one and not the other
                if error is None:
                    answered(connection.answer(), None)
                else:
                    answered(None, _instance_error(instance, error, stale=connection.stale(error)))
            finally:
                self._free_slot(instance)
                self._recycle(instance, connection, error)

        deadline = asyncio.get_running_loop().time() + self._timeout
        self._send(connection, wire, finished, deadline, self._timeout, method == "HEAD")
        return True

    async def request(
        self,
        instance: str,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Headers = None,
        body: bytes = b"",
        timeout: float | None = None,
        idempotent: bool | None = None,
    ) -> Upstream:
        """One request and its final answer. `headers`: a mapping, or the raw pairs a client sent (hop-by-hop
        ones are left out either way).

        `idempotent`: whether sending this request twice is harmless; None means by its method (GET and HEAD
        are). A pooled connection may turn out to have been closed by the instance just as it was reused: no
        answer came back, and the instance may or may not have acted on the request. An idempotent request is
        then resent on another connection; any other one fails with StaleConnection and the caller decides.
        Pass True for a POST whose replay is harmless (a log entry an applier applies, a read sent as POST:
        get, query, search); a plain POST is never resent by default."""
        head_only = method == "HEAD"
        resend = idempotent if idempotent is not None else method in IDEMPOTENT_METHODS
        loop = asyncio.get_running_loop()
        limit = timeout or self._timeout
        deadline = loop.time() + limit
        try:
            wire = self._wire(instance, method, path, query, headers, body)
            while self._in_flight.get(instance, 0) >= self._pool_size:  # every connection busy: wait for one
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(f"no free connection to the instance within {limit:g}s")
                await self._freed.wait(remaining)
            self._in_flight[instance] = self._in_flight.get(instance, 0) + 1
            try:
                return await self._exchange(instance, wire, deadline, limit, head_only, resend)
            finally:
                self._free_slot(instance)
        except _FAILURES as exc:
            raise _instance_error(instance, exc) from exc
        except RuntimeError as exc:  # uvloop's write to a connection the instance has just closed
            if "closed" not in str(exc):
                raise
            raise _instance_error(instance, ConnectionResetError(str(exc))) from exc

    async def _exchange(
        self, instance: str, wire: bytes, deadline: float, limit: float, head_only: bool, resend: bool
    ) -> Upstream:
        """One request and its answer, on a kept-alive connection (another one if that was stale and `resend`
        allows) or a new one; the caller holds a slot."""
        loop = asyncio.get_running_loop()
        idle = self._idle.setdefault(instance, [])
        while True:
            connection = self._idle_connection(idle)
            reused = connection is not None
            if connection is None:
                connection = await asyncio.wait_for(self._connect(instance), deadline - loop.time())
            done: asyncio.Future[None] = loop.create_future()
            self._send(connection, wire, functools.partial(_settle, done), deadline, limit, head_only)
            try:
                await done
            except BaseException as exc:
                self._recycle(instance, connection, exc)
                if not (reused and connection.stale(exc)):
                    raise
                if resend:
                    continue  # a kept-alive connection the instance had already closed: use another
                raise _instance_error(instance, exc, stale=True) from exc
            self._recycle(instance, connection, None)
            return connection.answer()


def _sent(connection: _Connection) -> bool:
    """Whether the whole request went out: an instance that answered before reading all of it may take what is
    left of it for the next request."""
    transport = connection.transport
    return transport is not None and transport.get_write_buffer_size() == 0


def _settle(done: asyncio.Future[None], connection: _Connection, error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _instance_error(instance: str, error: BaseException, *, stale: bool = False) -> InstanceError:
    if isinstance(error, _Misbehaved):
        return InstanceError(instance, str(error), retryable=error.retryable)
    if stale:
        message = f"the kept-alive connection was closed before an answer ({type(error).__name__}: {error})"
        return StaleConnection(instance, f"{message}; the request was not resent", retryable=True)
    return InstanceError(instance, f"{type(error).__name__}: {error}", retryable=True)
