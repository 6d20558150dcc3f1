"""HTTP in: the gateway's routes, Chroma's API v2 beside the admin API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from .admin import Endpoint
from .api import ChromaApi
from .http_server import HttpRequest, HttpResponse

API_ROOT = "/api/v2"
_API_PREFIX = API_ROOT + "/"


class Routes:
    """Chroma's API under /api/v2, and the admin API (GET routes, and POST routes for its actions)."""

    def __init__(
        self, api: ChromaApi, admin: Mapping[str, Endpoint], actions: Mapping[str, Endpoint] | None = None
    ) -> None:
        self._api = api
        self._admin = admin
        self._actions = actions or {}

    def __call__(self, request: HttpRequest) -> Awaitable[HttpResponse]:
        """The handler's coroutine itself, not one more around it: every proxied query passes here."""
        path = request.path
        if path.startswith(API_ROOT) and (len(path) == len(API_ROOT) or path[len(API_ROOT)] == "/"):
            return self._api(request)
        return self._admin_answer(request)

    def forward_now(self, request: HttpRequest, respond: Callable[[HttpResponse], None]) -> bool:
        return request.path.startswith(_API_PREFIX) and self._api.forward_now(request, respond)

    async def _admin_answer(self, request: HttpRequest) -> HttpResponse:
        path, method = request.path, request.method
        action, endpoint = self._actions.get(path), self._admin.get(path)
        if action is not None and method == "POST":
            return await action(request)
        if endpoint is not None and method == "GET":
            return await endpoint(request)
        if action is None and endpoint is None:
            return HttpResponse.error(404, "NotFound", f"No route {path}")
        allowed = " and ".join(m for m, e in (("GET", endpoint), ("POST", action)) if e is not None)
        return HttpResponse.error(405, "MethodNotAllowed", f"{path} only answers {allowed}")
