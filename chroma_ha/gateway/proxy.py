"""Forward one request to one instance. The only place that speaks HTTP to Chroma servers.

A lean HTTP/1.1 client: one asyncio.Protocol per keep-alive connection, httptools (the parser the gateway's
own server uses) to parse answers, a LIFO pool of idle connections per instance. It does what a proxy hop
needs and nothing else: no redirects, cookies, proxies or decompression.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from ..errors import InstanceError

# Headers that describe one hop, not the request: never forwarded in either direction.
HOP_HEADERS = frozenset({
    "host", "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "content-length", "accept-encoding", "content-encoding", "date", "server",
})
_HOP_HEADER_BYTES = frozenset(name.encode() for name in HOP_HEADERS)
# Client headers kept with a logged write, so the applier sends them to every instance (auth included).
LOGGED_HEADERS = frozenset({"authorization", "x-chroma-token", "content-type", "x-chroma-tenant"})
# Headers as the gateway's HTTP server hands them over: raw (name, value) pairs, names in lower case.
HeaderPairs = Sequence[tuple[bytes, bytes]]
MAX_CONNECTIONS_PER_INSTANCE = 256
MAX_IDLE_PER_INSTANCE = 64


@dataclass(frozen=True)
class Upstream:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def forwardable(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}


def _request_head(method: str, target: str, host: str, headers: Mapping[str, str] | HeaderPairs | None,
                  length: int) -> bytes:
    parts = [b"%s %s HTTP/1.1\r\nhost: %s\r\ncontent-length: %d\r\n" % (
        method.encode(), target.encode("latin-1"), host.encode(), length
    )]
    if isinstance(headers, Mapping):
        parts.extend(
            f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items() if k.lower() not in HOP_HEADERS
        )
    elif headers:
        parts.extend(b"%s: %s\r\n" % (k, v) for k, v in headers if k not in _HOP_HEADER_BYTES)
    parts.append(b"\r\n")
    return b"".join(parts)


class _Closed(ConnectionError):
    pass


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.status, self.keep_alive = 0, True
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []

    def begin(self) -> asyncio.Future[None]:
        self.status, self.keep_alive, self.headers, self.body = 0, True, {}, []
        self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.abort(exc)

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        if key not in HOP_HEADERS:
            self.headers[key] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.abort(exc or _Closed("connection closed by the instance"))

    def abort(self, exc: BaseException) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


class InstanceClient:
    def __init__(self, request_timeout: float, pool_size: int = MAX_CONNECTIONS_PER_INSTANCE) -> None:
        self._timeout = request_timeout
        self._pool_size = pool_size
        self._idle: dict[str, list[_Connection]] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._ssl: ssl.SSLContext | None = None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.abort(_Closed("gateway stopping"))
        self._idle.clear()

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

    async def request(
        self,
        instance: str,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Mapping[str, str] | HeaderPairs | None = None,
        body: bytes = b"",
        timeout: float | None = None,
    ) -> Upstream:
        """`headers`: a mapping, or the raw pairs a client sent (hop-by-hop ones are left out either way)."""
        target = f"{path}?{query}" if query else path
        wire = _request_head(method, target, instance.partition("://")[2], headers, len(body)) + body
        idle = self._idle.setdefault(instance, [])
        slots = self._slots.get(instance) or self._slots.setdefault(instance, asyncio.Semaphore(self._pool_size))
        loop = asyncio.get_running_loop()
        limit = timeout or self._timeout
        deadline = loop.time() + limit
        connection: _Connection | None = None
        try:
            # The slow paths (all connections busy, a new connection) are timed with wait_for; the answer itself
            # with one timer that aborts the connection: the common path stays cheap.
            await (asyncio.wait_for(slots.acquire(), limit) if slots.locked() else slots.acquire())
            try:
                while True:
                    connection = self._idle_connection(idle)
                    reused = connection is not None
                    if connection is None:
                        connection = await asyncio.wait_for(self._connect(instance), deadline - loop.time())
                    done = connection.begin()
                    assert connection.transport is not None
                    connection.transport.write(wire)
                    timer = loop.call_at(deadline, connection.abort, TimeoutError(f"no answer within {limit:g}s"))
                    try:
                        await done
                    except (_Closed, ConnectionResetError, BrokenPipeError):
                        if reused:
                            continue  # a kept-alive connection the instance had already closed: use another
                        raise
                    finally:
                        timer.cancel()
                    break
            finally:
                slots.release()
        except BaseException as exc:
            if connection is not None:
                connection.abort(_Closed("request abandoned"))  # its answer may still come: never reuse it
            if isinstance(exc, (OSError, TimeoutError, httptools.HttpParserError)):
                raise InstanceError(instance, f"{type(exc).__name__}: {exc}", retryable=True) from exc
            raise
        if connection.keep_alive and not connection.closed and len(idle) < MAX_IDLE_PER_INSTANCE:
            idle.append(connection)
        else:
            connection.abort(_Closed("not kept alive"))
        return Upstream(connection.status, connection.headers, b"".join(connection.body))
