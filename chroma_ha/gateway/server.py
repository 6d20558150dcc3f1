"""HTTP in: the ASGI application that speaks Chroma's API v2 and the admin API."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute
from starlette.types import Receive, Scope, Send

from ..errors import InstanceError, RequestRejected
from ..ops.metrics import APPENDED_SCOPE_KEY, INSTANCE_SCOPE_KEY, ROUTE_SCOPE_KEY, timed
from .admin import admin_routes
from .reads import STALE_HEADER
from .routes import Kind, classify
from .writes import rejection_body

if TYPE_CHECKING:
    from ..app import Gateway

JSON = "application/json"
API_PREFIX = "/api/v2/"
API_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_PASSED_RESPONSE_HEADERS = ("content-type", "chroma-trace-id")


def error_response(error: RequestRejected) -> Response:
    return Response(rejection_body(error), status_code=error.status, media_type=JSON)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    too_large = RequestRejected(
        413, f"The request body is larger than the gateway's limit of {limit} bytes (max_body_bytes)",
        "PayloadTooLarge",
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def build_asgi(gateway: Gateway) -> Starlette:
    settings = gateway.settings
    cluster_answers: dict[str, Response] = {}

    async def api(request: Request) -> Response:
        method = request.method
        scope = request.scope
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        query = scope["query_string"].decode("latin-1")  # request.url would parse a whole URL per request
        route = classify(method, scope["path"])
        request.scope[ROUTE_SCOPE_KEY] = route.kind.value
        try:
            body = await read_body(request, settings.max_body_bytes)
            if route.kind is Kind.WRITE:
                if route.op == "reset":
                    return await reset(request)
                result = await gateway.writes.handle(route, method, path, query, request.headers, body)
                request.scope[APPENDED_SCOPE_KEY] = len(body)
                return Response(result.body, status_code=result.status, media_type=JSON)
            if route.kind is Kind.LOCAL and route.op == "heartbeat":
                return Response(orjson.dumps({"nanosecond heartbeat": time.time_ns()}), media_type=JSON)
            fresh = route.kind is Kind.READ
            read = await gateway.reads.handle(route, method, path, query, request.headers, body, fresh=fresh)
        except RequestRejected as exc:
            if route.kind is Kind.LOCAL and route.op in cluster_answers:
                return cluster_answers[route.op]  # every instance is down: the cluster's last answer stands
            return error_response(exc)
        request.scope[INSTANCE_SCOPE_KEY] = read.instance
        if route.kind is Kind.LOCAL and read.upstream.ok:
            cluster_answers[route.op] = Response(read.body, media_type=JSON)
        headers = {k: v for k, v in read.upstream.headers.items() if k.lower() in _PASSED_RESPONSE_HEADERS}
        if read.stale_by:
            headers[STALE_HEADER] = str(read.stale_by)
        return Response(read.body, status_code=read.upstream.status, headers=headers)

    async def reset(request: Request) -> Response:
        if not settings.allow_reset:
            body = {"error": "ChromaError", "message": "Reset is disabled by config (CHROMA_HA_ALLOW_RESET)"}
            return Response(orjson.dumps(body), status_code=403, media_type=JSON)
        try:
            answers = await gateway.reset()
        except InstanceError as exc:
            raise RequestRejected(503, f"Reset could not reach every instance: {exc}", "ServiceUnavailable") from exc
        refused = [(i, s, b) for i, s, b in answers if not 200 <= s < 300]
        if refused:
            _, status, refusal = refused[0]
            return Response(refusal, status_code=status, media_type=JSON)
        return Response(b"true", media_type=JSON)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    endpoint = timed(api, gateway.metrics)
    routes = [
        *admin_routes(gateway),
        HttpRoute("/api/v2", endpoint, methods=list(API_METHODS)),
        HttpRoute("/api/v2/{rest:path}", endpoint, methods=list(API_METHODS)),
    ]
    return GatewayApp(endpoint, routes=routes, lifespan=lifespan)


class GatewayApp(Starlette):
    """Starlette, except that Chroma's API goes straight to its endpoint.

    The router (which tries every admin route first) and the middleware stack cost about 40 us per proxied
    query, half of what the gateway's own code costs; the API needs neither (one endpoint, which answers its own
    errors). The admin API, the lifespan and other methods (405) still go through Starlette.
    """

    def __init__(self, api: Callable[[Request], Awaitable[Response]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in API_METHODS and (
            scope["path"].startswith(API_PREFIX) or scope["path"] == "/api/v2"
        ):
            response = await self._api(Request(scope, receive))
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
