"""Chroma's API v2: classify the request, ask the gate whether its token may, hand it to the read or write path,
and answer as Chroma would.

A write is logged with the name of the token that made it (its author), never with the token itself. A reset
clears the log only when every instance reset: with one refusing, the log stays and the instances that did reset
are rebuilt from it."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import orjson

from ..errors import InstanceError, RequestRejected, StoreError
from .auth import Gate, Level, forbidden, identity, need_of, unauthorized
from .consistency import RETRY_AFTER_S
from .http_server import HttpRequest, HttpResponse
from .reads import STALE_HEADER, ReadPath, ReadResult
from .routes import Kind, Route, allowed_methods, classify
from .tokens import Token
from .validation import reserved_tenant
from .writes import WritePath, rejection_body

log = logging.getLogger(__name__)

_STALE_HEADER = STALE_HEADER.encode()

# How each API request is counted: (route kind, who answered, status, seconds).
Observer = Callable[[str, str, int, float], None]
# Resets every instance in turn, stopping at the first that refuses, and the catalog and the log only when all
# did; each instance's (url, status, body) as far as it went.
ClusterReset = Callable[[], Awaitable[list[tuple[str, int, bytes]]]]


def rejected(error: RequestRejected) -> HttpResponse:
    if error.retry_after is None:
        return HttpResponse(error.status, rejection_body(error))
    retry = (b"retry-after", b"%d" % error.retry_after)
    return HttpResponse(error.status, rejection_body(error), [(b"content-type", b"application/json"), retry])


class ChromaApi:
    def __init__(
        self,
        *,
        reads: ReadPath,
        writes: WritePath,
        observe: Observer,
        reset: ClusterReset | None = None,
        gate: Gate | None = None,
    ) -> None:
        """`reset`: given only when resetting is allowed. `gate`: who may do what (none: anyone, no reset)."""
        self._gate = gate or Gate()
        self._reads = reads
        self._writes = writes
        self._observe = observe
        self._reset_cluster = reset
        # The last good answer of each cluster-wide route (version, pre-flight checks): it stands while every
        # instance is down, so clients that check the server first can still reach the log.
        self._cluster_answers: dict[str, HttpResponse] = {}

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        route = classify(request.method, request.path)
        try:
            token = self._admit(route, request)
            if isinstance(token, HttpResponse):
                response, answered_by = token, "gateway"
            elif token is not None and route.op == "identity":
                response, answered_by = HttpResponse(200, orjson.dumps(identity(token))), "gateway"
            else:
                response, answered_by = await self._answer(route, request, token.name if token else "")
        except Exception:
            self._count(route, "gateway", 500, time.perf_counter() - started)
            raise
        self._count(route, answered_by, response.status, time.perf_counter() - started)
        return response

    def _count(self, route: Route, answered_by: str, status: int, seconds: float) -> None:
        self._observe(route.kind.value, answered_by, status, seconds)

    def forward_now(self, request: HttpRequest, respond: Callable[[HttpResponse], None]) -> bool:
        """A fresh read forwarded at once and answered by callback (see `ReadPath.forward_now`); False when the
        request takes the general path (`__call__`)."""
        route = classify(request.method, request.path)
        if route.kind is not Kind.READ or (
            self._gate.enabled and isinstance(self._admit(route, request), HttpResponse)
        ):
            return False  # a refusal is answered by the general path
        started = time.perf_counter()

        def deliver(outcome: ReadResult | BaseException) -> None:
            if isinstance(outcome, ReadResult):
                response, answered_by = _read_answer(outcome), outcome.instance or "gateway"
            elif isinstance(outcome, RequestRejected):
                response, answered_by = rejected(outcome), "gateway"
            elif isinstance(outcome, StoreError):  # as on the general path: 503, never 500
                response, answered_by = _store_unreachable(outcome), "gateway"
            else:
                log.error("%s %s failed in the gateway", request.method, request.path[:200], exc_info=outcome)
                response = HttpResponse.internal_error()
                answered_by = "gateway"
            took = time.perf_counter() - started
            respond(response)  # counted once it is on its way
            self._count(route, answered_by, response.status, took)

        return self._reads.forward_now(
            route, request.method, request.path, request.query, request.headers, request.body, deliver
        )

    def _admit(self, route: Route, request: HttpRequest) -> Token | HttpResponse | None:
        """The token the request is made with (None: auth is off, or the route is open to all), or the 401 or
        403 that answers it."""
        if route.op == "reset":
            return None if self._gate.is_admin(request.headers, write=True) else self._reset_refusal(request)
        if not self._gate.enabled:
            return None
        created = _created_name(request.body) if route.op == "create_tenant" else None
        need = need_of(route, request.path, created)
        return None if need.level is Level.OPEN else self._gate.admits(need, request.headers)

    def _reset_refusal(self, request: HttpRequest) -> HttpResponse:
        if self._reset_cluster is None:
            return HttpResponse.error(403, "ChromaError", "Reset is disabled by config (CHROMA_HA_ALLOW_RESET)")
        if not self._gate.guards_admin:
            return forbidden("reset needs an admin token, and none is configured (admin_token, or admin = true)")
        token = self._gate.token(request.headers)
        if isinstance(token, HttpResponse):
            return unauthorized("reset needs an admin token (Authorization: Bearer)")
        why = "is read-only" if token.admin else "is not one"
        return forbidden(f"reset needs a read-write admin token; token '{token.name}' {why}")

    async def _answer(self, route: Route, request: HttpRequest, author: str) -> tuple[HttpResponse, str]:
        method = request.method
        if route.kind is Kind.UNKNOWN:
            return unknown_route(request.path), "gateway"
        if route.kind is Kind.UNREPLICABLE:
            return not_replicable(route), "gateway"
        if route.kind is Kind.RESERVED:
            return rejected(reserved_tenant()), "gateway"
        try:
            if route.kind is Kind.WRITE:
                if route.op == "reset":
                    return await self._reset(), "gateway"
                result = await self._writes.handle(
                    route, method, request.path, request.query, request.headers, request.body, author=author
                )
                return HttpResponse(result.status, result.body), "log"
            if route.kind is Kind.LOCAL and route.op == "heartbeat":
                return HttpResponse(200, orjson.dumps({"nanosecond heartbeat": time.time_ns()})), "gateway"
            read = await self._reads.handle(
                route, method, request.path, request.query, request.headers, request.body, fresh=route.kind is Kind.READ
            )
        except RequestRejected as exc:
            if route.kind is Kind.LOCAL and route.op in self._cluster_answers:
                return self._cluster_answers[route.op], "gateway"  # every instance is down: the last answer stands
            return rejected(exc), "gateway"
        except StoreError as exc:  # a read that had to ask the store (ids to learn) while it is down
            return _store_unreachable(exc), "gateway"
        response = _read_answer(read)
        if route.kind is Kind.LOCAL and read.upstream.ok:
            self._cluster_answers[route.op] = response
        return response, read.instance or "gateway"

    async def _reset(self) -> HttpResponse:
        if self._reset_cluster is None:
            return HttpResponse.error(403, "ChromaError", "Reset is disabled by config (CHROMA_HA_ALLOW_RESET)")
        try:
            answers = await self._reset_cluster()
        except InstanceError as exc:
            message = f"Reset could not reach every instance, so the log is kept: {exc}"
            raise RequestRejected(503, message, "ServiceUnavailable") from exc
        for n, (_, status, refusal) in enumerate(answers, 1):
            if not 200 <= status < 300:
                said = _message_of(refusal)
                message = (
                    f"Reset refused by instance {n} ({status}: {said}), so the log is kept; the "
                    f"{n - 1} instance(s) reset before it are rebuilt from the log"
                )
                return HttpResponse.error(status, "ChromaError", message)
        return HttpResponse(200, b"true")


def _created_name(body: bytes) -> str | None:
    """The tenant a create_tenant names; None when the body names none (the write path refuses it then)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    name = payload.get("name") if isinstance(payload, dict) else None
    return name if isinstance(name, str) else None


def _message_of(body: bytes) -> str:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        return str(payload["message"])[:200]
    return body[:200].decode("utf-8", "replace")


def unknown_route(path: str) -> HttpResponse:
    """As Chroma answers a request no route of its API takes: 405 with `allow` where another method would be
    taken, else 404; neither has a body."""
    methods = allowed_methods(path)
    if methods:
        return HttpResponse(405, b"", [(b"allow", ",".join(methods).encode())])
    return HttpResponse(404, b"", [])


def not_replicable(route: Route) -> HttpResponse:
    return HttpResponse.error(
        501,
        "NotImplementedError",
        f"'{route.op}' changes one Chroma server in a way the gateway cannot replay on every instance, so the "
        "gateway does not offer it.",
    )


def _read_answer(read: ReadResult) -> HttpResponse:
    upstream = read.upstream
    headers = upstream.headers
    if read.stale_by:
        headers = [*headers, (_STALE_HEADER, b"%d" % read.stale_by)]
    return HttpResponse(upstream.status, read.body, headers)


def _store_unreachable(exc: StoreError) -> HttpResponse:
    message = f"The write-ahead log is unreachable: {exc}"
    return rejected(RequestRejected(503, message, "ServiceUnavailable", retry_after=RETRY_AFTER_S))
