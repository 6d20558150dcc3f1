"""Every instance down with `ack=log`: real Chroma servers SIGKILLed behind a gateway process, writes made with the
official client while none is up, then the servers started again on their data.

Database and tenant writes, and the collection writes whose answer is known without an instance, are answered at
once as Chroma answers them; a create that needs an instance is refused at once with a 503 saying so. `/health` says
it accepts writes and serves no reads, with a 200. Once the instances are back, both hold the result, and the
client's later reads see its writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import chromadb
import httpx
import pytest
from chromadb.errors import NotFoundError

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, wait_for

WRITE_TIMEOUT_S = 10.0  # the default: no answer below may take it
DATABASES = "/api/v2/tenants/default_tenant/databases"
COLLECTIONS = f"{DATABASES}/default_database/collections"


def admin_client(port: int) -> Any:
    return chromadb.AdminClient(
        chromadb.Settings(
            chroma_api_impl="chromadb.api.fastapi.FastAPI", chroma_server_host="127.0.0.1", chroma_server_http_port=port
        )
    )


def at_once(write: Callable[[], Any]) -> Any:
    started = time.monotonic()
    result = write()
    assert time.monotonic() - started < WRITE_TIMEOUT_S
    return result


def test_with_ack_log_writes_made_while_every_instance_is_down_reach_both_when_they_are_back(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]
) -> None:
    gateway = gateway_with({"CHROMA_HA_ACK": "log", "CHROMA_HA_WRITE_TIMEOUT": f"{WRITE_TIMEOUT_S:g}"})
    client = chromadb.HttpClient(host="127.0.0.1", port=gateway.port)
    admin = admin_client(gateway.port)
    kept = client.create_collection("kept", embedding_function=None)
    kept.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]])
    client.create_collection("doomed", embedding_function=None).add(ids=["x"], embeddings=[[1.0, 1.0]])
    gateway.wait_drained()

    for server in chroma_pair:
        server.kill()
    health = wait_for(
        "every instance seen down",
        lambda: httpx.get(f"{gateway.url}/health", timeout=5),
        until=lambda r: r.json()["healthy_instances"] == "0/2",
    )
    assert health.status_code == 200  # a load balancer keeps the only thing that still takes writes
    assert (health.json()["reads"], health.json()["writes"]) == ("unavailable", "available")
    assert "no instance is up: accepting writes, serving no reads" in health.json()["reasons"]

    at_once(lambda: admin.create_database("offline"))
    at_once(lambda: kept.add(ids=["c"], embeddings=[[0.5, 0.5]]))
    at_once(lambda: client.delete_collection("doomed"))
    again = at_once(lambda: client.get_or_create_collection("kept", embedding_function=None))
    assert again.id == kept.id
    refused = at_once(lambda: httpx.post(f"{gateway.url}{COLLECTIONS}", json={"name": "fresh"}, timeout=30))
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "ServiceUnavailable"
    assert refused.json()["message"].startswith("Creating a collection needs an instance")
    with pytest.raises(Exception, match="Creating a collection needs an instance"):  # not an error type of chromadb's
        at_once(lambda: client.create_collection("fresh", embedding_function=None))

    for server in chroma_pair:
        server.start()
    gateway.wait_drained()
    for server in chroma_pair:
        names = {c["name"] for c in httpx.get(f"{server.url}{COLLECTIONS}", timeout=10).raise_for_status().json()}
        assert names == {"kept"}, server.url
        own = httpx.get(f"{server.url}{COLLECTIONS}/kept", timeout=10).raise_for_status().json()["id"]
        got = httpx.post(f"{server.url}{COLLECTIONS}/{own}/get", json={"include": []}, timeout=10).json()
        assert sorted(got["ids"]) == ["a", "b", "c"], server.url
        assert httpx.get(f"{server.url}{DATABASES}/offline", timeout=10).status_code == 200, server.url

    assert sorted(client.get_collection("kept").get()["ids"]) == ["a", "b", "c"]  # the client's reads see its writes
    assert "offline" in {d["name"] for d in admin.list_databases()}
    assert [c.name for c in client.list_collections()] == ["kept"]
    with pytest.raises(NotFoundError):
        client.get_collection("doomed")
