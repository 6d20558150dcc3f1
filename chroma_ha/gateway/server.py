"""HTTP in: the gateway's routes (Chroma's API v2 beside the admin API) on its own HTTP server, and how it runs."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..errors import SettingsError
from .admin import admin_routes
from .api import ChromaApi
from .http_server import HttpRequest, HttpResponse, HttpServer

if TYPE_CHECKING:
    from ..app import Gateway

log = logging.getLogger(__name__)

API_ROOT = "/api/v2"
_API_PREFIX = API_ROOT + "/"
STOP_GRACE_S = 5.0


class Routes:
    """Chroma's API under /api/v2, and the admin API (GET routes)."""

    def __init__(self, gateway: Gateway) -> None:
        self._api = ChromaApi(gateway)
        self._admin = admin_routes(gateway)

    def __call__(self, request: HttpRequest) -> Awaitable[HttpResponse]:
        """The handler's coroutine itself, not one more around it: every proxied query passes here."""
        path = request.path
        if path.startswith(API_ROOT) and (len(path) == len(API_ROOT) or path[len(API_ROOT)] == "/"):
            return self._api(request)
        return self._admin_answer(request)

    def forward_now(self, request: HttpRequest, respond: Callable[[HttpResponse], None]) -> bool:
        return request.path.startswith(_API_PREFIX) and self._api.forward_now(request, respond)

    async def _admin_answer(self, request: HttpRequest) -> HttpResponse:
        endpoint = self._admin.get(request.path)
        if endpoint is None:
            return HttpResponse.error(404, "NotFound", f"No route {request.path}")
        if request.method != "GET":
            return HttpResponse.error(405, "MethodNotAllowed", f"{request.path} only answers GET")
        return await endpoint(request)


async def serve(
    gateway: Gateway, stop: asyncio.Event, *, on_ready: Callable[[], None] | None = None
) -> None:
    """Start the gateway, answer on its host and port until `stop` is set, then stop gracefully."""
    settings = gateway.settings
    await gateway.start()
    server = HttpServer(Routes(gateway), max_body_bytes=settings.max_body_bytes)
    try:
        try:
            await server.start(settings.host, settings.port)
        except OSError as exc:
            where = f"{settings.host}:{settings.port}"
            raise SettingsError("port", f"cannot listen on {where}: {exc.strerror or exc}") from exc
        log.info("gateway listening on http://%s:%d", settings.host, settings.port)
        if on_ready is not None:
            on_ready()
        await stop.wait()
    finally:
        await server.stop(STOP_GRACE_S)
        await gateway.stop()


async def serve_until_signalled(gateway: Gateway) -> None:
    """`serve`, stopped by SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await serve(gateway, stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
