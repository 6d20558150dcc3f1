"""The membership routes of the admin API, as raw HTTP against a gateway process with an admin token: every bad
request (no token, malformed body, bad URL, a URL with credentials, a duplicate, an unknown instance, the last
active one, a wrong method) gets a clear 4xx in Chroma's error shape and changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from chroma_ha.local_cluster import ChromaServer, free_port
from tests.harness import GatewayProcess

TOKEN = "membership-admin-token"


@pytest.fixture
def admin(gateway_with: Callable[..., GatewayProcess]) -> GatewayProcess:
    return gateway_with({"CHROMA_HA_ADMIN_TOKEN": TOKEN, "CHROMA_HA_MEMBERSHIP_POLL": "0.2"})


def send(
    gateway: GatewayProcess, method: str, path: str, content: bytes | None = None, token: str | None = TOKEN
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"} if token else {}
    return httpx.request(method, f"{gateway.url}{path}", content=content, headers=headers, timeout=30)


def refused(answer: httpx.Response, status: int, error: str, words: str = "") -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error", "message"} and body["error"] == error, body
    assert words in body["message"], body
    return str(body["message"])


def urls(gateway: GatewayProcess) -> list[str]:
    return [i["url"] for i in send(gateway, "GET", "/instances").raise_for_status().json()["instances"]]


def test_without_the_admin_token_nothing_is_listed_or_changed(
    admin: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    a, _ = chroma_pair
    for method, path, body in (
        ("GET", "/instances", None),
        ("POST", "/instances", b'{"url": "http://127.0.0.1:9"}'),
        ("POST", "/instances/remove", f'{{"url": "{a.url}"}}'.encode()),
    ):
        for token in (None, "not-the-token"):
            answer = send(admin, method, path, body, token=token)
            refused(answer, 401, "Unauthorized", "admin token")
            assert answer.headers["www-authenticate"].startswith("Bearer")
    assert urls(admin) == [s.url for s in chroma_pair]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "JSON object"),
        (b"[1, 2]", "JSON object"),
        (b"{}", "url is required"),
        (b'{"url": 5}', "url is required"),
        (b'{"url": ""}', "url is required"),
        (b'{"url": "ftp://127.0.0.1:8000"}', "not an http(s) URL"),
        (b'{"url": "127.0.0.1:8000"}', "not an http(s) URL"),
        (b'{"url": "http://127.0.0.1:port"}', "not a URL"),
        (b'{"url": "http://127.0.0.1:8000/?x=1"}', "no query"),
        (b'{"url": "http://127.0.0.1:8000", "weight": 2}', "unknown field"),
    ],
)
def test_a_malformed_add_is_a_400_and_adds_nothing(
    admin: GatewayProcess, chroma_pair: list[ChromaServer], body: bytes, words: str
) -> None:
    refused(send(admin, "POST", "/instances", body), 400, "InvalidArgumentError", words)
    assert urls(admin) == [s.url for s in chroma_pair]


def test_an_instance_url_with_credentials_is_refused_without_repeating_them(
    admin: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    body = b'{"url": "http://operator:hunter2@127.0.0.1:8000"}'
    message = refused(send(admin, "POST", "/instances", body), 400, "InvalidArgumentError", "instance_headers")
    assert "hunter2" not in message
    assert "hunter2" not in send(admin, "GET", "/instances").text


def test_duplicates_unreachable_and_unknown_instances_are_refused(
    admin: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    a, b = chroma_pair
    refused(
        send(admin, "POST", "/instances", f'{{"url": "{a.url}/"}}'.encode()), 409, "Conflict", "already an instance"
    )
    nowhere = f"http://127.0.0.1:{free_port()}"
    refused(
        send(admin, "POST", "/instances", f'{{"url": "{nowhere}"}}'.encode()),
        400,
        "InvalidArgumentError",
        "cannot reach",
    )
    refused(
        send(admin, "POST", "/instances/remove", f'{{"url": "{nowhere}"}}'.encode()), 404, "NotFoundError", "not one of"
    )
    refused(send(admin, "POST", "/instances/remove", b"{}"), 400, "InvalidArgumentError", "url is required")
    assert urls(admin) == [a.url, b.url]


def test_the_last_active_instance_is_kept(admin: GatewayProcess, chroma_pair: list[ChromaServer]) -> None:
    a, b = chroma_pair
    removed = send(admin, "POST", "/instances/remove", f'{{"url": "{a.url}"}}'.encode())
    assert removed.status_code == 200 and removed.json()["state"] == "removed", removed.text
    last = send(admin, "POST", "/instances/remove", f'{{"url": "{b.url}"}}'.encode())
    refused(last, 409, "Conflict", "last active instance")
    assert urls(admin) == [b.url]
    assert httpx.get(f"{admin.url}/health", timeout=10).json()["healthy_instances"] == "1/1"


def test_the_wrong_method_is_a_405(admin: GatewayProcess, chroma_pair: list[ChromaServer]) -> None:
    refused(send(admin, "DELETE", "/instances"), 405, "MethodNotAllowed", "only answers GET and POST")
    refused(send(admin, "GET", "/instances/remove"), 405, "MethodNotAllowed", "only answers POST")
    refused(send(admin, "PUT", "/instances/remove", b"{}"), 405, "MethodNotAllowed", "only answers POST")
