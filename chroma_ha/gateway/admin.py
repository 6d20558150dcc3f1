"""The admin API over HTTP: health, status, the state and statistics of the log, metrics, recommendations, the
dashboard. The documents come from an `AdminSource` (operations builds them); this module only serves them.

Every route but /health and /metrics asks for an admin credential once any credential is configured: the admin
token, or a data-path token with admin scope (see `guarded`; the gate decides, as it does for reset).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from .auth import Gate
from .http_server import HttpRequest, HttpResponse

JSON = b"application/json"
_NO_STORE = (b"cache-control", b"no-store")

Endpoint = Callable[[HttpRequest], Awaitable[HttpResponse]]


class AdminSource(Protocol):
    """The documents the admin routes serve."""

    async def health(self, *, full: bool = False) -> tuple[dict[str, Any], int]: ...
    async def status(self) -> dict[str, Any]: ...
    async def wal_status(self) -> dict[str, Any]: ...
    def wal_stats(self) -> dict[str, Any]: ...
    async def metrics(self, *, as_json: bool) -> tuple[bytes | dict[str, Any], str]: ...
    async def recommendations(self) -> dict[str, Any]: ...
    def openapi(self) -> dict[str, Any]: ...
    def dashboard_page(self) -> bytes: ...
    def dashboard_headers(self, page: bytes) -> list[tuple[bytes, bytes]]: ...
    def data_headers(self) -> list[tuple[bytes, bytes]]: ...
    async def dashboard_data(self) -> dict[str, Any]: ...


def json_response(data: Any, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(data), [(b"content-type", JSON), *(headers or [])])


def _header(request: HttpRequest, name: bytes) -> str:
    return (request.header(name) or b"").decode("latin-1")


def guarded(endpoint: Endpoint, gate: Gate, *, browser: bool = False) -> Endpoint:
    """Require an admin credential when the gate knows any (asked per request: a reload may add the first); a
    browser page asks for it as a Basic password."""
    challenge = 'Basic realm="chroma-ha admin"' if browser else 'Bearer realm="chroma-ha admin"'

    async def check(request: HttpRequest) -> HttpResponse:
        if not gate.guards_admin or gate.is_admin(request.headers):
            return await endpoint(request)
        body = {"error": "Unauthorized", "message": "This admin route needs the admin token (Authorization: Bearer)"}
        return json_response(body, 401, [(b"www-authenticate", challenge.encode())])

    return check


def admin_routes(source: AdminSource, gate: Gate) -> dict[str, Endpoint]:
    """Path -> endpoint; every admin route is a GET."""
    page = source.dashboard_page()
    page_headers = source.dashboard_headers(page)  # its Content-Security-Policy, nosniff
    data_headers = source.data_headers()

    async def health(request: HttpRequest) -> HttpResponse:
        # instance URLs for an admin only (anyone may ask /health: load balancers do)
        document, status = await source.health(full=not gate.guards_admin or gate.is_admin(request.headers))
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
        return HttpResponse(200, page, [(b"content-type", b"text/html; charset=utf-8"), _NO_STORE, *page_headers])

    async def dashboard_data(request: HttpRequest) -> HttpResponse:
        body = orjson.dumps(await source.dashboard_data())
        return HttpResponse(200, body, [(b"content-type", JSON), _NO_STORE, *data_headers])

    return {
        "/health": health,
        "/metrics": metrics,
        "/status": guarded(status, gate),
        "/wal/status": guarded(wal_status, gate),
        "/wal/stats": guarded(wal_stats, gate),
        "/recommendations": guarded(recommendations, gate),
        "/admin/openapi.json": guarded(openapi, gate),
        "/dashboard": guarded(dashboard, gate, browser=True),
        "/dashboard/data": guarded(dashboard_data, gate, browser=True),
    }
