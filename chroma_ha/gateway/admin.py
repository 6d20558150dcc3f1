"""The admin API over HTTP: health, status, the state, contents and statistics of the log, metrics, recommendations,
the dashboard, the actions (a manual prune, a forced rebuild of an instance), and the instances (list, add,
remove). The documents come from an `AdminSource` (operations builds them), the actions from `AdminActions` and the
instances from `MemberAdmin` (replication carries them out); this module only serves them and checks their
parameters, answering bad ones, and refused changes, in Chroma's error shape.

Every route but /health and /metrics asks for an admin credential once any credential is configured: the admin
token, or a data-path token with admin scope (see `guarded`; the gate decides, as it does for reset).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qs

import orjson

from ..errors import MembershipRefused, StoreError
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
    async def wal_stats(self) -> dict[str, Any]: ...
    async def metrics(self, *, as_json: bool) -> tuple[bytes | dict[str, Any], str]: ...
    async def recommendations(self) -> dict[str, Any]: ...
    def openapi(self) -> dict[str, Any]: ...
    def dashboard_page(self) -> bytes: ...
    def dashboard_headers(self, page: bytes) -> list[tuple[bytes, bytes]]: ...
    def data_headers(self) -> list[tuple[bytes, bytes]]: ...
    async def dashboard_data(self) -> dict[str, Any]: ...
    async def wal_entries(self, seq: int, before: int, after: int) -> dict[str, Any]: ...
    async def wal_divergences(self, instance: str, include_resolved: bool) -> dict[str, Any]: ...


class AdminActions(Protocol):
    """What the admin API may change: each answers (document, HTTP status)."""

    async def prune(self, upto: int | None, older_than: float) -> tuple[dict[str, Any], int]: ...
    async def rebuild(self, instance: str) -> tuple[dict[str, Any], int]: ...


class MemberAdmin(Protocol):
    """The list of instances and its changes; a change that cannot be made raises MembershipRefused."""

    async def list(self) -> dict[str, Any]: ...
    async def add(self, given: object) -> dict[str, Any]: ...
    async def remove(self, given: object) -> dict[str, Any]: ...


# how each refusal is answered: status and Chroma's error name
_REFUSED = {
    "invalid": (400, "InvalidArgumentError"),
    "unreachable": (400, "InvalidArgumentError"),
    "duplicate": (409, "Conflict"),
    "unknown": (404, "NotFoundError"),
    "last_active": (409, "Conflict"),
    "changed": (409, "Conflict"),
}


class BadParameter(ValueError):
    """A query parameter or body field of an admin route that cannot be used; its message says which and why."""


def json_response(data: Any, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(data), [(b"content-type", JSON), *(headers or [])])


def _header(request: HttpRequest, name: bytes) -> str:
    return (request.header(name) or b"").decode("latin-1")


def guarded(endpoint: Endpoint, gate: Gate, *, browser: bool = False, write: bool = False) -> Endpoint:
    """Require an admin credential when the gate knows any (asked per request: a reload may add the first), a
    read-write one for a route that changes something (`write`); a browser page asks for it as a Basic password."""
    challenge = 'Basic realm="chroma-ha admin"' if browser else 'Bearer realm="chroma-ha admin"'

    async def check(request: HttpRequest) -> HttpResponse:
        if not gate.guards_admin or gate.is_admin(request.headers, write=write):
            return await endpoint(request)
        body = {"error": "Unauthorized", "message": "This admin route needs the admin token (Authorization: Bearer)"}
        return json_response(body, 401, [(b"www-authenticate", challenge.encode())])

    return check


def _bad(message: str) -> HttpResponse:
    return json_response({"error": "InvalidArgumentError", "message": message}, 400)


def _params(request: HttpRequest) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(request.query, keep_blank_values=True).items()}


def _int(params: dict[str, Any], name: str, default: int | None, *, low: int = 0) -> int | None:
    value = params.get(name, default)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadParameter(f"{name} must be an integer, not {value!r}") from None
    if isinstance(value, bool) or number < low:
        raise BadParameter(f"{name} must be an integer of at least {low}, not {value!r}")
    return number


def _flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0", ""):
        raise BadParameter(f"{name} must be true or false, not {value!r}")
    return value in ("true", "1")


def _body(request: HttpRequest) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise BadParameter("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadParameter("the body must be a JSON object")
    return body


def checked(endpoint: Endpoint) -> Endpoint:
    async def answer(request: HttpRequest) -> HttpResponse:
        try:
            return await endpoint(request)
        except BadParameter as exc:
            return _bad(str(exc))

    return answer


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
        return json_response(await source.wal_stats())

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

    async def wal_entries(request: HttpRequest) -> HttpResponse:
        params = _params(request)
        seq = _int(params, "seq", None, low=1)
        if seq is None:
            raise BadParameter("seq is required: the entries around which seq?")
        before, after = _int(params, "before", 5), _int(params, "after", 5)
        assert before is not None and after is not None
        return json_response(await source.wal_entries(seq, before, after))

    async def wal_divergences(request: HttpRequest) -> HttpResponse:
        params = _params(request)
        document = await source.wal_divergences(params.get("instance", ""), _flag(params, "include_resolved"))
        return json_response(document)

    return {
        "/health": health,
        "/metrics": metrics,
        "/status": guarded(status, gate),
        "/wal/status": guarded(wal_status, gate),
        "/wal/stats": guarded(wal_stats, gate),
        "/wal/entries": guarded(checked(wal_entries), gate),
        "/wal/divergences": guarded(checked(wal_divergences), gate),
        "/recommendations": guarded(recommendations, gate),
        "/admin/openapi.json": guarded(openapi, gate),
        "/dashboard": guarded(dashboard, gate, browser=True),
        "/dashboard/data": guarded(dashboard_data, gate, browser=True),
    }


def admin_actions(actions: AdminActions, members: MemberAdmin, gate: Gate) -> dict[str, Endpoint]:
    """Path -> endpoint of the routes that change something; every one is a POST with a JSON body."""

    async def prune(request: HttpRequest) -> HttpResponse:
        body = _body(request)
        older_than = body.get("older_than", 0.0)
        if isinstance(older_than, bool) or not isinstance(older_than, int | float) or older_than < 0:
            raise BadParameter(f"older_than must be a number of seconds of at least 0, not {older_than!r}")
        document, status = await actions.prune(_int(body, "upto", None), float(older_than))
        return json_response(document, status)

    async def rebuild(request: HttpRequest) -> HttpResponse:
        instance = _body(request).get("instance")
        if not isinstance(instance, str) or not instance:
            raise BadParameter("instance is required: the URL of the instance to rebuild")
        document, status = await actions.rebuild(instance.rstrip("/"))
        return json_response(document, status)

    def member_change(change: Callable[[object], Awaitable[dict[str, Any]]], status: int) -> Endpoint:
        async def answer(request: HttpRequest) -> HttpResponse:
            body = _body(request)
            if set(body) - {"url"}:
                raise BadParameter(f'unknown field(s) {sorted(set(body) - {"url"})}: the body is {{"url": URL}}')
            try:
                return json_response(await change(body.get("url")), status)
            except MembershipRefused as exc:
                code, error = _REFUSED[exc.reason]
                return json_response({"error": error, "message": exc.message}, code)
            except StoreError as exc:
                return json_response({"error": "ServiceUnavailable", "message": f"the log store failed: {exc}"}, 503)

        return guarded(checked(answer), gate, write=True)

    return {
        "/wal/prune": guarded(checked(prune), gate, write=True),
        "/instances/bootstrap": guarded(checked(rebuild), gate, write=True),
        "/instances": member_change(members.add, 202),
        "/instances/remove": member_change(members.remove, 200),
    }


def member_listing(members: MemberAdmin, gate: Gate) -> dict[str, Endpoint]:
    """GET /instances: the members with their state, cursor, lag and health."""

    async def listing(request: HttpRequest) -> HttpResponse:
        try:
            return json_response(await members.list())
        except StoreError as exc:
            return json_response({"error": "ServiceUnavailable", "message": f"the log store failed: {exc}"}, 503)

    return {"/instances": guarded(listing, gate)}
