"""The ASGI app (`gateway/asgi.py`, what uvicorn serves) answers as the gateway's routes answer the request the own
server hands them: called with a scripted receive and send, on a whole gateway in this process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import orjson

from chroma_ha.app import Gateway
from chroma_ha.gateway.asgi import AsgiApp
from chroma_ha.gateway.http_server import HttpRequest, HttpResponse
from chroma_ha.gateway.server import Routes
from tests.fake_chroma import FakeCluster, call, in_process

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"
JSON = (b"content-type", b"application/json")
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


async def asgi(
    app: AsgiApp,
    method: str,
    target: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    parts: tuple[bytes, ...] = (b"",),
) -> Answer:
    """One request through the app as uvicorn makes it: the body in `parts`; (status, headers, body) sent."""
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"gateway"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    events: list[dict[str, Any]] = [
        {"type": "http.request", "body": part, "more_body": n < len(parts) - 1} for n, part in enumerate(parts)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return events.pop(0) if events else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, body = sent  # one answer: its head, then its whole body
    assert start["type"] == "http.response.start" and body["type"] == "http.response.body"
    assert not body.get("more_body", False)
    return start["status"], list(start["headers"]), body["body"]


async def routes(gateway: Gateway, method: str, target: str, body: bytes = b"") -> HttpResponse:
    """The same request as the own server hands it to the routes (HEAD as GET)."""
    path, _, query = target.partition("?")
    return await gateway.routes(HttpRequest(method, path, query, [(b"host", b"gateway"), JSON], body))


def on_the_wire(response: HttpResponse) -> Answer:
    """What the own server sends for it, less the encoding: a Content-Length first, unless 204 or 304."""
    length = [] if response.status in (204, 304) else [(b"content-length", b"%d" % len(response.body))]
    return response.status, [*length, *response.headers], response.body


class FastPathCount:
    """The gateway's routes, counting the requests their fast path took."""

    def __init__(self, routes: Routes) -> None:
        self.routes = routes
        self.taken = 0

    def __call__(self, request: HttpRequest) -> Awaitable[HttpResponse]:
        return self.routes(request)

    def forward_now(self, request: HttpRequest, respond: Callable[[HttpResponse], None]) -> bool:
        taken = self.routes.forward_now(request, respond)
        self.taken += taken
        return taken


async def test_the_app_answers_as_the_routes() -> None:
    async with in_process(FakeCluster()) as gateway:
        fast = FastPathCount(gateway.routes)
        app = AsgiApp(fast, max_body_bytes=gateway.settings.http.max_body_bytes)
        status, made = await call(gateway, "POST", COLLECTIONS, {"name": "docs"})
        assert status == 200
        records = f"{COLLECTIONS}/{made['id']}"
        added = {"ids": ["a", "b"], "embeddings": [[1.0, 0.0], [0.0, 1.0]], "documents": ["A", "B"]}
        assert (await call(gateway, "POST", f"{records}/add", added))[0] == 201

        # a POST read (the fast path), its body in two events as a chunked upload brings it
        get = orjson.dumps({"ids": ["b", "a"], "include": ["documents"]})
        through_app = await asgi(app, "POST", f"{records}/get", headers=[JSON], parts=(get[:5], get[5:]))
        assert through_app == on_the_wire(await routes(gateway, "POST", f"{records}/get", get))
        assert sorted(orjson.loads(through_app[2])["documents"]) == ["A", "B"]
        assert fast.taken == 1  # the read took the fast path, through the app's future

        # a GET with a query
        listed = await asgi(app, "GET", f"{COLLECTIONS}?limit=1&offset=0")
        assert listed == on_the_wire(await routes(gateway, "GET", f"{COLLECTIONS}?limit=1&offset=0"))

        # the heartbeat: the same answer but for the time it tells
        status, headers, body = await asgi(app, "GET", "/api/v2/heartbeat")
        mine = on_the_wire(await routes(gateway, "GET", "/api/v2/heartbeat"))
        assert (status, [h for h in headers if h[0] != b"content-length"]) == (mine[0], mine[1][1:])
        assert orjson.loads(body).keys() == orjson.loads(mine[2]).keys()

        # an unknown route: Chroma's 404, no body (and a Content-Length of 0)
        unknown = await asgi(app, "GET", "/api/v2/nowhere")
        assert (
            unknown
            == on_the_wire(await routes(gateway, "GET", "/api/v2/nowhere"))
            == (404, [(b"content-length", b"0")], b"")
        )

        # HEAD: the head of the GET's answer, its length included, and no body
        status, headers, body = await asgi(app, "HEAD", "/api/v2/version")
        version = on_the_wire(await routes(gateway, "GET", "/api/v2/version"))
        assert (status, headers, body) == (version[0], version[1], b"") and version[2]


async def test_the_handler_gets_the_request_as_the_own_server_hands_it() -> None:
    seen: list[HttpRequest] = []

    class Recorder:
        async def __call__(self, request: HttpRequest) -> HttpResponse:
            seen.append(request)
            return HttpResponse(204, b"", [])

        def forward_now(self, request: HttpRequest, respond: Any) -> bool:
            return False

    app = AsgiApp(Recorder(), max_body_bytes=100)
    sent_headers = [
        (b"connection", b"keep-alive, x-hop"),
        (b"x-hop", b"1"),
        (b"transfer-encoding", b"chunked"),
        (b"proxy-authorization", b"secret"),
        (b"expect", b"100-continue"),
        (b"authorization", b"Bearer t"),
    ]
    answer = await asgi(app, "HEAD", "/api/v2/a%2Fb/c?x=%20y", headers=sent_headers, parts=(b"ab", b"c"))
    assert answer == (204, [], b"")  # a 204 carries no Content-Length
    (request,) = seen
    assert (request.method, request.path, request.query, request.body) == ("GET", "/api/v2/a%2Fb/c", "x=%20y", b"abc")
    assert request.headers == [(b"host", b"gateway"), (b"authorization", b"Bearer t")]


async def test_too_large_a_body_is_refused_and_a_failure_is_a_500() -> None:
    class Failing:
        async def __call__(self, request: HttpRequest) -> HttpResponse:
            raise RuntimeError("a bug")

        def forward_now(self, request: HttpRequest, respond: Any) -> bool:
            return False

    app = AsgiApp(Failing(), max_body_bytes=4)
    status, _, body = await asgi(app, "POST", "/api/v2/x", parts=(b"abc", b"de"))
    assert status == 413 and orjson.loads(body)["error"] == "PayloadTooLarge"
    status, _, body = await asgi(app, "POST", "/api/v2/x", parts=(b"abcd",))
    assert (status, orjson.loads(body)) == (500, orjson.loads(HttpResponse.internal_error().body))
