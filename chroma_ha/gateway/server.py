"""HTTP in: one ASGI application, Chroma's API v2 beside the admin API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from .admin import admin_routes
from .api import ChromaApi

if TYPE_CHECKING:
    from ..app import Gateway

API_ROOT = "/api/v2"


def build_asgi(gateway: Gateway) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    return GatewayApp(ChromaApi(gateway), routes=admin_routes(gateway), lifespan=lifespan)


class GatewayApp(Starlette):
    """Starlette for the admin API and the lifespan; Chroma's API goes straight to its own ASGI application.

    Routing every proxied query through Starlette's router and middleware would cost more than the gateway's own
    work on it, and the API needs neither: it is one handler that answers its own errors.
    """

    def __init__(self, api: ASGIApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["path"] == API_ROOT or scope["path"].startswith(API_ROOT + "/")):
            await self._api(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
