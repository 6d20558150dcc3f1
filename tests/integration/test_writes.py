"""The write path against real servers: rejections, malformed input, ack policies, idempotent replay."""

from __future__ import annotations

import json
from collections.abc import Callable

import chromadb
import httpx
import pytest
from chromadb.errors import InvalidArgumentError

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, catalog_and_data_churn, snapshot, wait_until_identical

API = "/api/v2/tenants/default_tenant/databases/default_database"


def direct_count(server: ChromaServer, name: str) -> int:
    client = chromadb.HttpClient(host="127.0.0.1", port=server.port)
    return client.get_collection(name, embedding_function=None).count()


def test_a_rejected_write_gets_chromas_answer_and_is_applied_nowhere(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("dims", embedding_function=None)
    col.add(ids=["a"], embeddings=[[1.0, 2.0]])
    with pytest.raises(InvalidArgumentError, match="dimension of 2, got 3"):
        col.add(ids=["b"], embeddings=[[1.0, 2.0, 3.0]])
    gateway.wait_drained()
    assert [direct_count(s, "dims") for s in chroma_pair] == [1, 1]
    assert gateway.wal_status()["divergences"] == []


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, b"JSON"),
        (b'{"ids": "a", "embeddings": [[1, 2]]}', 400, b"ids"),
        (b'{"ids": ["a"], "embeddings": [[1, 2], [3, 4]]}', 400, b"embeddings"),
        (b'{"ids": ["a"], "metadatas": [7]}', 400, b"metadata"),
    ],
)
def test_malformed_writes_get_a_clear_4xx_and_are_not_logged(
    gateway: GatewayProcess, body: bytes, status: int, needle: bytes
) -> None:
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("bad", embedding_function=None)
    head = gateway.wal_status()["head"]
    response = httpx.post(
        f"{gateway.url}{API}/collections/{col.id}/add", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    assert needle in response.content and response.json()["error"] == "InvalidArgumentError"
    assert gateway.wal_status()["head"] == head
    col.add(ids=["ok"], embeddings=[[1.0, 2.0]])  # and the gateway keeps serving
    assert col.count() == 1


def test_oversized_body_gets_413_and_is_not_logged(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]
) -> None:
    gateway = gateway_with({"CHROMA_HA_MAX_BODY_BYTES": "1000"})
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("big", embedding_function=None)
    head = gateway.wal_status()["head"]
    too_large = {
        "error": "PayloadTooLarge",
        "message": "The request body is larger than the gateway's limit of 1000 bytes (max_body_bytes)",
    }
    # The official client knows no error of that name: it raises a bare Exception carrying the gateway's answer.
    with pytest.raises(Exception, match="larger than the gateway's limit") as raised:
        col.add(ids=[f"id{n}" for n in range(100)], embeddings=[[0.5, 0.5]] * 100)
    assert type(raised.value) is Exception and json.loads(str(raised.value)) == too_large
    sized = httpx.post(f"{gateway.url}{API}/collections/{col.id}/add", json={"ids": ["y" * 1200]})
    assert (sized.status_code, sized.json()) == (413, too_large)
    streamed = httpx.post(  # no Content-Length: the limit holds while the chunks arrive
        f"{gateway.url}{API}/collections/{col.id}/add",
        content=iter([b'{"ids": ["', b"x" * 600, b"x" * 600, b'"]}']),
        headers={"content-type": "application/json"},
    )
    assert (streamed.status_code, streamed.json()) == (413, too_large)
    assert gateway.wal_status()["head"] == head
    col.add(ids=["small"], embeddings=[[0.5, 0.5]])
    assert col.count() == 1


def test_head_is_a_get_without_body_and_other_methods_get_405(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    head = httpx.head(f"{gateway.url}/api/v2/version")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(httpx.get(f"{gateway.url}/api/v2/version").content)
    # As Chroma answers a method no route takes: 405, the methods that are taken, no body.
    refused, direct = (httpx.request("OPTIONS", f"{url}/api/v2/heartbeat") for url in (gateway.url, chroma_pair[0].url))
    assert (refused.status_code, refused.headers.get("allow"), refused.content) == (405, "GET,HEAD", b"")
    assert (direct.status_code, direct.headers.get("allow"), direct.content) == (405, "GET,HEAD", b"")
    assert httpx.get(f"{gateway.url}/api/v2/heartbeat").json()["nanosecond heartbeat"] > 0


def test_unknown_collection_is_chromas_404_and_not_logged(gateway: GatewayProcess) -> None:
    head = gateway.wal_status()["head"]
    missing = "0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b"
    response = httpx.post(f"{gateway.url}{API}/collections/{missing}/add", json={"ids": ["a"]})
    assert response.status_code == 404 and response.json()["error"] == "NotFoundError"
    assert gateway.wal_status()["head"] == head


def test_ack_all_means_every_up_instance_holds_the_write(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]
) -> None:
    gateway = gateway_with({"CHROMA_HA_ACK": "all"})
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("all", embedding_function=None)
    for n in range(10):
        col.add(ids=[f"r{n}"], embeddings=[[float(n), 1.0]])
        assert [direct_count(s, "all") for s in chroma_pair] == [n + 1, n + 1]


def test_ack_log_keeps_taking_writes_while_every_instance_is_down(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]
) -> None:
    gateway = gateway_with({"CHROMA_HA_ACK": "log"})
    client = chromadb.HttpClient(host="127.0.0.1", port=gateway.port)
    col = client.create_collection("offline", embedding_function=None)
    col.add(ids=["before"], embeddings=[[0.0, 1.0]])
    for s in chroma_pair:
        s.kill()
    for n in range(5):
        col.add(ids=[f"r{n}"], embeddings=[[float(n), 1.0]])
    col.delete(ids=["r0"])
    for s in chroma_pair:
        s.start()
    gateway.wait_drained()
    assert [direct_count(s, "offline") for s in chroma_pair] == [5, 5]


def test_write_timeout_answers_503_saying_the_write_is_logged(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]
) -> None:
    gateway = gateway_with({"CHROMA_HA_WRITE_TIMEOUT": "1"})
    client = chromadb.HttpClient(host="127.0.0.1", port=gateway.port)
    col = client.create_collection("late", embedding_function=None)
    for s in chroma_pair:
        s.kill()
    response = httpx.post(
        f"{gateway.url}{API}/collections/{col.id}/add", json={"ids": ["x"], "embeddings": [[1.0, 2.0]]}, timeout=10
    )
    assert response.status_code == 503
    assert "logged as seq" in response.json()["message"]
    for s in chroma_pair:
        s.start()
    gateway.wait_drained()
    assert [direct_count(s, "late") for s in chroma_pair] == [1, 1]


def test_a_wiped_instance_is_rebuilt_from_the_log(gateway: GatewayProcess, chroma_pair: list[ChromaServer]) -> None:
    servers = chroma_pair
    catalog_and_data_churn(gateway.port)
    gateway.wait_drained()
    servers[1].wipe()
    servers[1].start()
    rebuilt = wait_until_identical([servers[0].url, servers[1].url])
    assert snapshot(servers[1].url) == snapshot(servers[0].url) == rebuilt
    assert snapshot(servers[1].url)["renamed"]["records"]
    client = chromadb.HttpClient(host="127.0.0.1", port=gateway.port)
    servers[0].kill()  # reads by canonical id now go to the rebuilt instance
    assert client.get_collection("renamed").count() == 2
