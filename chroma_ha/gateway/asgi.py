"""HTTP in through uvicorn (`http_server = uvicorn`): the gateway's routes as a bare ASGI application, served by
uvicorn's httptools protocol in the running loop, with the `start`/`stop` of the own server (`http_server.py`).

The application hands the handler what the own server hands it: the path percent-encoded as sent, the query without
"?", header names in lower case without the hop-by-hop ones (nor those that `Connection` names), HEAD as GET with
the body left out of the answer. A body past `max_body_bytes` gets 413, a handler that fails a 500 (logged), and
every request exactly one answer. Fresh reads take the handler's fast path (`forward_now`), answered through a future.

Parsing, keep-alive, pipelining, `100 Continue` and flow control are uvicorn's, and it is more lenient than the own
server: a fragment is cut from the target rather than refused, a malformed percent-encoding is passed on, a missing
Host is accepted, and no time limit bounds a request head.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import uvicorn

from .http_server import IDLE_TIMEOUT_S, MAX_CONNECTIONS, Handler, HttpRequest, HttpResponse

log = logging.getLogger(__name__)

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"expect"})
_NO_BODY = frozenset({204, 304})  # answers that carry neither a body nor a Content-Length
_BACKLOG = 1024


class _TooLarge(Exception):
    pass


class AsgiApp:
    """An ASGI 3 application over a `Handler` (the gateway's `Routes`)."""

    def __init__(self, handler: Handler, *, max_body_bytes: int) -> None:
        self._handler = handler
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan (uvicorn runs with it off), no websockets
        head_only = scope["method"] == "HEAD"
        try:
            body = await self._body(receive)
        except _TooLarge:
            response = self._too_large()
        else:
            if body is None:
                return  # the client went away before its body arrived
            path = scope["raw_path"].partition(b"?")[0].decode("latin-1")
            query = scope["query_string"].decode("latin-1")
            method = "GET" if head_only else scope["method"]
            response = await self._answer(HttpRequest(method, path, query, _handed_on(scope["headers"]), body))
        headers = list(response.headers)
        if response.status not in _NO_BODY:
            headers.insert(0, (b"content-length", b"%d" % len(response.body)))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head_only else response.body})

    async def _body(self, receive: Receive) -> bytes | None:
        """The whole body, or None when the client disconnects first."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _answer(self, request: HttpRequest) -> HttpResponse:
        try:
            answer: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()

            def respond(response: HttpResponse) -> None:
                if not answer.done():  # the first answer stands, as in the own server
                    answer.set_result(response)

            if self._handler.forward_now(request, respond):
                return await answer
            return await self._handler(request)
        except Exception:
            log.exception("%s %s failed in the gateway", request.method, request.path[:200])
            return HttpResponse.internal_error()

    def _too_large(self) -> HttpResponse:
        return HttpResponse.error(
            413,
            "PayloadTooLarge",
            f"The request body is larger than the gateway's limit of {self._max_body_bytes} bytes (max_body_bytes)",
        )


def _handed_on(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers a handler sees: uvicorn gives names in lower case; hop-by-hop ones are left out."""
    headers = list(headers)
    dropped = _HOP_BY_HOP
    for name, value in headers:
        if name == b"connection":
            dropped = dropped | {token.strip().lower() for token in value.split(b",")}
    return [(name, value) for name, value in headers if name not in dropped and not name.startswith(b"proxy-")]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the gateway's own signal handlers stop it (`serve_until_signalled`), not uvicorn's


class UvicornServer:
    """The own server's `start` and `stop`, with uvicorn answering: its httptools protocol, in the running loop."""

    def __init__(self, handler: Handler, *, max_body_bytes: int) -> None:
        self._app = AsgiApp(handler, max_body_bytes=max_body_bytes)
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        """Listening when it returns; OSError when the address cannot be had (bound here: uvicorn would exit)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=_BACKLOG)
        config = uvicorn.Config(
            self._app,
            loop="none",  # the running uvloop loop
            http="httptools",
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,  # leaves the gateway's logging alone
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # no middleware around the app
            server_header=False,  # the own server sends neither header
            date_header=False,
            timeout_keep_alive=int(IDLE_TIMEOUT_S),
            limit_concurrency=MAX_CONNECTIONS,
            backlog=_BACKLOG,
        )
        self._server = server = _Server(config)
        self._task = task = asyncio.create_task(server.serve(sockets=[listener]), name="uvicorn")
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)

    async def stop(self, grace: float) -> None:
        """Stop listening, let the requests in progress finish (up to `grace` seconds), close every connection."""
        if self._server is None or self._task is None:
            return
        self._server.config.timeout_graceful_shutdown = max(1, round(grace))  # read by uvicorn as it shuts down
        self._server.should_exit = True
        await self._task
