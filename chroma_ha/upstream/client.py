"""Requests to instances: the only place that speaks HTTP to Chroma servers.

A lean HTTP/1.1 client: one asyncio.Protocol per keep-alive connection, httptools (the parser the gateway's
own server uses) to parse answers, a LIFO pool of idle connections per instance. It does what a proxy hop
needs and nothing else: no redirects, cookies, proxies or decompression.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from ..errors import InstanceError, StaleConnection
from ..pulse import Pulse

# Headers that describe one hop, not the request: never forwarded in either direction.
HOP_HEADERS = frozenset({
    "host", "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "content-length", "accept-encoding", "content-encoding", "date", "server",
})
_HOP_HEADER_BYTES = frozenset(name.encode() for name in HOP_HEADERS)
# Instance answer headers the client sees; the rest describe the instance's hop (length, date, server).
ANSWER_HEADERS = frozenset({b"content-type", b"chroma-trace-id"})
MAX_CONNECTIONS_PER_INSTANCE = 256
MAX_IDLE_PER_INSTANCE = 64
# Answers are checked against their deadline this often, by one timer for every request in flight: a timer per
# request would cost the proxied query more than its whole routing. A timeout fires up to this much late.
WATCH_INTERVAL_S = 0.1


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


def _request_head(method: str, target: str, host: str, headers: Headers, length: int) -> bytes:
    parts = [b"%s %s HTTP/1.1\r\nhost: %s\r\ncontent-length: %d\r\n" % (
        method.encode(), target.encode("latin-1"), host.encode(), length
    )]
    if isinstance(headers, list):  # raw pairs from a client (the common case: tested first, and cheaply)
        parts.append(b"".join([b"%s: %s\r\n" % pair for pair in headers if pair[0] not in _HOP_HEADER_BYTES]))
    elif isinstance(headers, Mapping):
        parts.extend(
            f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items() if k.lower() not in HOP_HEADERS
        )
    parts.append(b"\r\n")
    return b"".join(parts)


class _Closed(ConnectionError):
    pass


# A request's end: the connection it used, and the error it failed with (None: the answer is on the connection).
Finished = Callable[["_Connection", BaseException | None], None]
# An answer delivered by callback: the instance's answer, or the error (an InstanceError) instead.
Answered = Callable[[Upstream | None, InstanceError | None], None]


class _Connection(asyncio.Protocol):
    __slots__ = (
        "body", "closed", "deadline", "finished", "headers", "keep_alive", "limit", "parser", "status", "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.finished: Finished | None = None
        self.closed = False
        self.status, self.keep_alive = 0, True
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.deadline, self.limit = 0.0, 0.0

    def send(self, wire: bytes, finished: Finished, deadline: float, limit: float) -> None:
        self.status, self.keep_alive, self.headers, self.body = 0, True, [], []
        self.finished = finished
        self.deadline, self.limit = deadline, limit
        assert self.transport is not None
        self.transport.write(wire)

    def time_out(self) -> None:
        self.abort(TimeoutError(f"no answer within {self.limit:g}s"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.abort(exc)

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in ANSWER_HEADERS:
            self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self._finish(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.abort(exc or _Closed("connection closed by the instance"))

    def abort(self, exc: BaseException) -> None:
        self.closed = True
        self._finish(exc)
        if self.transport is not None:
            self.transport.close()

    def _finish(self, error: BaseException | None) -> None:
        finished, self.finished = self.finished, None
        if finished is not None:
            finished(self, error)

    def answer(self) -> Upstream:
        return Upstream(self.status, self.headers, self.body[0] if len(self.body) == 1 else b"".join(self.body))


def _stale(error: BaseException) -> bool:
    """The failure of a kept-alive connection the instance had already closed: another connection will do."""
    return isinstance(error, (_Closed, ConnectionResetError, BrokenPipeError))


class InstanceClient:
    """Requests to instances over pooled keep-alive connections, awaited (`request`) or answered by callback
    (`send_now`, the proxy's fast path: no task and no future between a client's request and its answer)."""

    def __init__(self, request_timeout: float, pool_size: int = MAX_CONNECTIONS_PER_INSTANCE) -> None:
        self._timeout = request_timeout
        self._pool_size = pool_size
        self._idle: dict[str, list[_Connection]] = {}
        self._in_flight: dict[str, int] = {}
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

    def _send(self, connection: _Connection, wire: bytes, finished: Finished, deadline: float, limit: float) -> None:
        """Send on `connection`, watched until it is answered or its `deadline` (`limit` seconds) passes."""
        self._waiting.add(connection)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(WATCH_INTERVAL_S, self._time_out_overdue)
        connection.send(wire, finished, deadline, limit)

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
        parts = urlsplit(instance)
        secure = parts.scheme == "https"
        if secure and self._ssl is None:
            self._ssl = ssl.create_default_context()
        _, connection = await asyncio.get_running_loop().create_connection(
            _Connection, parts.hostname or "", parts.port or (443 if secure else 80),
            ssl=self._ssl if secure else None,
        )
        return connection

    def _free_slot(self, instance: str) -> None:
        self._in_flight[instance] -= 1
        self._freed.fire()

    def _recycle(self, instance: str, connection: _Connection, error: BaseException | None) -> None:
        """A request on `connection` ended: keep the connection for the next one if it can be."""
        self._waiting.discard(connection)
        idle = self._idle.setdefault(instance, [])
        if error is None and connection.keep_alive and not connection.closed and len(idle) < MAX_IDLE_PER_INSTANCE:
            idle.append(connection)
        elif not connection.closed:
            connection.abort(_Closed("request abandoned" if error else "not kept alive"))  # never reuse it

    @staticmethod
    def _wire(instance: str, method: str, path: str, query: str, headers: Headers, body: bytes) -> bytes:
        target = f"{path}?{query}" if query else path
        return _request_head(method, target, instance.partition("://")[2], headers, len(body)) + body

    def send_now(
        self, instance: str, method: str, path: str, *, query: str = "", headers: Headers = None,
        body: bytes = b"", answered: Answered,
    ) -> bool:
        """Send on an idle kept-alive connection at once and call `answered` with the result; False (and nothing
        sent) when no such connection is free. A stale connection is reported as an error, not retried."""
        idle = self._idle.get(instance)
        in_flight = self._in_flight.get(instance, 0)
        if not idle or in_flight >= self._pool_size:
            return False
        connection = self._idle_connection(idle)
        if connection is None:
            return False
        self._in_flight[instance] = in_flight + 1

        def finished(connection: _Connection, error: BaseException | None) -> None:
            try:  # the answer first, the bookkeeping after: the client waits for one and not the other
                if error is None:
                    answered(connection.answer(), None)
                else:
                    answered(None, _instance_error(instance, error, reused=True))
            finally:
                self._free_slot(instance)
                self._recycle(instance, connection, error)

        wire = self._wire(instance, method, path, query, headers, body)
        self._send(connection, wire, finished, asyncio.get_running_loop().time() + self._timeout, self._timeout)
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
    ) -> Upstream:
        """`headers`: a mapping, or the raw pairs a client sent (hop-by-hop ones are left out either way)."""
        wire = self._wire(instance, method, path, query, headers, body)
        loop = asyncio.get_running_loop()
        limit = timeout or self._timeout
        deadline = loop.time() + limit
        try:
            while self._in_flight.get(instance, 0) >= self._pool_size:  # every connection busy: wait for one
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(f"no free connection to the instance within {limit:g}s")
                await self._freed.wait(remaining)
            self._in_flight[instance] = self._in_flight.get(instance, 0) + 1
            try:
                return await self._exchange(instance, wire, deadline, limit)
            finally:
                self._free_slot(instance)
        except (OSError, TimeoutError, httptools.HttpParserError) as exc:
            raise _instance_error(instance, exc) from exc

    async def _exchange(self, instance: str, wire: bytes, deadline: float, limit: float) -> Upstream:
        """One request and its answer, on a kept-alive connection (another one if that had been closed) or a new
        one; the caller holds a slot."""
        loop = asyncio.get_running_loop()
        idle = self._idle.setdefault(instance, [])
        while True:
            connection = self._idle_connection(idle)
            reused = connection is not None
            if connection is None:
                connection = await asyncio.wait_for(self._connect(instance), deadline - loop.time())
            done: asyncio.Future[None] = loop.create_future()
            self._send(connection, wire, functools.partial(_settle, done), deadline, limit)
            try:
                await done
            except BaseException as exc:
                self._recycle(instance, connection, exc)
                if reused and _stale(exc):
                    continue  # a kept-alive connection the instance had already closed: use another
                raise
            self._recycle(instance, connection, None)
            return connection.answer()


def _settle(done: asyncio.Future[None], connection: _Connection, error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _instance_error(instance: str, error: BaseException, *, reused: bool = False) -> InstanceError:
    kind = StaleConnection if reused and _stale(error) else InstanceError
    return kind(instance, f"{type(error).__name__}: {error}", retryable=True)
