"""Chroma's API v2 as a plain ASGI application: classify, read the body, hand it to the read or write path, answer.

Every proxied query pays for this code, so it speaks ASGI directly: no framework Request or Response objects, the
answer sent as one start and one body message with a Content-Length, and the timing recorded inline.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson
from starlette.types import Receive, Scope, Send

from ..errors import InstanceError, RequestRejected
from .reads import STALE_HEADER, ReadResult
from .routes import Kind, Route, classify
from .writes import rejection_body

if TYPE_CHECKING:
    from ..app import Gateway

log = logging.getLogger(__name__)

API_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_JSON = (b"content-type", b"application/json")
# Instance answer headers the client sees; the rest describe the instance's hop (length, date, server).
_PASSED_HEADERS = ("content-type", "chroma-trace-id")


@dataclass(slots=True)
class Answer:
    """What the client gets: status, body, the headers beyond Content-Length, and who answered (for metrics)."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=lambda: [_JSON])
    answered_by: str = "gateway"

    @classmethod
    def rejected(cls, error: RequestRejected) -> Answer:
        return cls(error.status, rejection_body(error))


def _too_large(limit: int) -> RequestRejected:
    return RequestRejected(
        413, f"The request body is larger than the gateway's limit of {limit} bytes (max_body_bytes)",
        "PayloadTooLarge",
    )


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refused with 413 as soon as it (or its declared length) passes `limit`."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise RequestRejected(400, "The client went away before sending the whole body", "ClientDisconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ChromaApi:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._limit = gateway.settings.max_body_bytes
        self._allow_reset = gateway.settings.allow_reset
        # The last good answer of each cluster-wide route (version, pre-flight checks): it stands while every
        # instance is down, so clients that check the server first can still reach the log.
        self._cluster_answers: dict[str, Answer] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method: str = scope["method"]
        if method == "HEAD":
            method = "GET"  # as Chroma does; the HTTP server leaves the body out
        route = classify(method, scope["path"])
        try:
            answer = await self._answer(route, method, scope, receive)
        except Exception:
            log.exception("%s %s failed in the gateway", method, scope["path"])
            answer = Answer(500, orjson.dumps({"error": "InternalError", "message": "The gateway failed; see its log"}))
        await send({
            "type": "http.response.start", "status": answer.status,
            "headers": [(b"content-length", b"%d" % len(answer.body)), *answer.headers],
        })
        await send({"type": "http.response.body", "body": answer.body})
        self._gateway.metrics.observe_request(
            route.kind.value, answer.answered_by, answer.status, time.perf_counter() - started
        )

    async def _answer(self, route: Route, method: str, scope: Scope, receive: Receive) -> Answer:
        if method not in API_METHODS:
            return Answer(405, orjson.dumps({"error": "MethodNotAllowed", "message": f"{method} is not allowed"}))
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        query = scope["query_string"].decode("latin-1")
        try:
            body = await read_body(scope, receive, self._limit)
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            if route.kind is Kind.WRITE:
                if route.op == "reset":
                    return await self._reset()
                result = await self._gateway.writes.handle(route, method, path, query, headers, body)
                self._gateway.metrics.appended_bytes += len(body)
                return Answer(result.status, result.body, answered_by="log")
            if route.kind is Kind.LOCAL and route.op == "heartbeat":
                return Answer(200, orjson.dumps({"nanosecond heartbeat": time.time_ns()}))
            read = await self._gateway.reads.handle(
                route, method, path, query, headers, body, fresh=route.kind is Kind.READ
            )
        except RequestRejected as exc:
            if route.kind is Kind.LOCAL and route.op in self._cluster_answers:
                return self._cluster_answers[route.op]  # every instance is down: the cluster's last answer stands
            return Answer.rejected(exc)
        answer = _read_answer(read)
        if route.kind is Kind.LOCAL and read.upstream.ok:
            self._cluster_answers[route.op] = answer
        return answer

    async def _reset(self) -> Answer:
        if not self._allow_reset:
            body = {"error": "ChromaError", "message": "Reset is disabled by config (CHROMA_HA_ALLOW_RESET)"}
            return Answer(403, orjson.dumps(body))
        try:
            answers = await self._gateway.reset()
        except InstanceError as exc:
            raise RequestRejected(503, f"Reset could not reach every instance: {exc}", "ServiceUnavailable") from exc
        refused = [(status, refusal) for _, status, refusal in answers if not 200 <= status < 300]
        if refused:
            return Answer(*refused[0])
        return Answer(200, b"true")


def _read_answer(read: ReadResult) -> Answer:
    upstream = read.upstream
    headers = [(k.encode("latin-1"), upstream.headers[k].encode("latin-1")) for k in _PASSED_HEADERS
               if k in upstream.headers]
    if read.stale_by:
        headers.append((STALE_HEADER.encode(), b"%d" % read.stale_by))
    return Answer(upstream.status, read.body, headers, read.instance or "gateway")
