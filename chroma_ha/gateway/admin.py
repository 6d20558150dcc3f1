"""The admin API over HTTP: health, status, the state and statistics of the log, metrics, recommendations, the
dashboard. The documents come from an `AdminSource` (operations builds them); this module only serves them.

Every route but /health and /metrics asks for the admin token when one is set (see `guarded`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from .http_server import HttpRequest, HttpResponse

JSON = b"application/json"
TOKEN_HEADER = b"x-chroma-ha-token"
_NO_STORE = (b"cache-control", b"no-store")

Endpoint = Callable[[HttpRequest], Awaitable[HttpResponse]]


class AdminSource(Protocol):
    """The documents the admin routes serve."""

    async def health(self) -> tuple[dict[str, Any], int]: ...
    async def status(self) -> dict[str, Any]: ...
    async def wal_status(self) -> dict[str, Any]: ...
    def wal_stats(self) -> dict[str, Any]: ...
    async def metrics(self, *, as_json: bool) -> tuple[bytes | dict[str, Any], str]: ...
    async def recommendations(self) -> dict[str, Any]: ...
    def openapi(self) -> dict[str, Any]: ...
    def dashboard_page(self) -> bytes: ...
    async def dashboard_data(self) -> dict[str, Any]: ...


def json_response(data: Any, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(data), [(b"content-type", JSON), *(headers or [])])


def _header(request: HttpRequest, name: bytes) -> str:
    return (request.header(name) or b"").decode("latin-1")


def presented_tokens(request: HttpRequest) -> list[str]:
    """Tokens the request carries: `Authorization: Bearer`, `X-Chroma-HA-Token`, or a Basic password (browsers)."""
    found = [_header(request, TOKEN_HEADER)]
    scheme, _, value = _header(request, b"authorization").partition(" ")
    if scheme.lower() == "bearer":
        found.append(value.strip())
    elif scheme.lower() == "basic":
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            found.append(base64.b64decode(value.strip()).decode().partition(":")[2])
    return [t for t in found if t]


def guarded(endpoint: Endpoint, token: str, *, browser: bool = False) -> Endpoint:
    """Require the admin token when one is set; a browser page asks for it as a Basic password."""
    if not token:
        return endpoint
    expected = token.encode()
    challenge = 'Basic realm="chroma-ha admin"' if browser else 'Bearer realm="chroma-ha admin"'

    async def check(request: HttpRequest) -> HttpResponse:
        if any(hmac.compare_digest(t.encode(), expected) for t in presented_tokens(request)):
            return await endpoint(request)
        body = {"error": "Unauthorized", "message": "This admin route needs the admin token (Authorization: Bearer)"}
        return json_response(body, 401, [(b"www-authenticate", challenge.encode())])

    return check


def admin_routes(source: AdminSource, token: str) -> dict[str, Endpoint]:
    """Path -> endpoint; every admin route is a GET."""
    page = source.dashboard_page()

    async def health(request: HttpRequest) -> HttpResponse:
        document, status = await source.health()
        return json_response(document, status)

    async def status(request: HttpRequest) -> HttpResponse:
        return json_response(await source.status())

    async def wal_status(request: HttpRequest) -> HttpResponse:
        return json_response(await source.wal_status())

    async def wal_stats(request: HttpRequest) -> HttpResponse:
        return json_response(source.wal_stats())

    async def metrics(request: HttpRequest) -> HttpResponse:
        body, content_type = await source.metrics(as_json="application/json" in _header(request, b"accept"))
        if isinstance(body, dict):
            return json_response(body)
        return HttpResponse(200, body, [(b"content-type", content_type.encode())])

    async def recommendations(request: HttpRequest) -> HttpResponse:
        return json_response(await source.recommendations())

    async def openapi(request: HttpRequest) -> HttpResponse:
        return json_response(source.openapi())

    async def dashboard(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, page, [(b"content-type", b"text/html; charset=utf-8"), _NO_STORE])

    async def dashboard_data(request: HttpRequest) -> HttpResponse:
        body = orjson.dumps(await source.dashboard_data())
        return HttpResponse(200, body, [(b"content-type", JSON), _NO_STORE])

    return {
        "/health": health,
        "/metrics": metrics,
        "/status": guarded(status, token),
        "/wal/status": guarded(wal_status, token),
        "/wal/stats": guarded(wal_stats, token),
        "/recommendations": guarded(recommendations, token),
        "/admin/openapi.json": guarded(openapi, token),
        "/dashboard": guarded(dashboard, token, browser=True),
        "/dashboard/data": guarded(dashboard_data, token, browser=True),
    }
