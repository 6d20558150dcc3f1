"""The official client, sync and async, performs every API call through the gateway; instances end identical.
Each runs with auth off, and with a read-write token sent in either of the headers of Chroma's token auth."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chromadb
import httpx
import pytest
from chromadb.api import ClientAPI
from chromadb.config import Settings
from chromadb.errors import ChromaError, NotFoundError

from chroma_ha.gateway.tokens import mint, toml_entry
from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, admin_client, client_auth, client_headers, snapshot

EMB = [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9], [1.0, 1.1, 1.2]]


def assert_instances_identical(
    gateway: GatewayProcess, servers: list[ChromaServer], scopes: list[tuple[str, str]]
) -> None:
    gateway.wait_drained()
    for tenant, database in scopes:
        first, second = (snapshot(s.url, tenant, database) for s in servers)
        assert first == second, f"instances differ in {tenant}/{database}"


AUTH_MODES = ["off", "Authorization", "X-Chroma-Token"]


@pytest.fixture(params=AUTH_MODES)
def authed(
    request: pytest.FixtureRequest, tmp_path: Path, gateway_with: Callable[..., GatewayProcess]
) -> tuple[GatewayProcess, dict[str, Any]]:
    """A gateway and the official client's settings for it: auth off, or a read-write token for every tenant
    from a token file, sent in the header the parameter names."""
    if request.param == "off":
        return gateway_with(), {}
    token = mint()
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(toml_entry("app", token, ["*"], ["*"], write=True, admin=False), encoding="utf-8")
    env = {"CHROMA_HA_AUTH_TOKENS_FILE": str(tokens), "CHROMA_HA_ADMIN_TOKEN": mint()}
    return gateway_with(env), client_auth(token, request.param)


def exercise_sync(client: ClientAPI, port: int, prefix: str, auth: dict[str, Any]) -> None:
    assert client.heartbeat() > 0
    assert client.get_version()
    assert client.get_max_batch_size() > 0
    identity = client.get_user_identity()
    if auth:  # the token's name and scope, answered by the gateway
        assert (identity.user_id, identity.tenant, identity.databases) == ("app", "*", ["*"])
    else:  # as an instance without auth answers it
        assert identity.tenant == "default_tenant"

    admin = admin_client(port, auth)
    admin.create_tenant(f"{prefix}tenant")
    assert admin.get_tenant(f"{prefix}tenant")["name"] == f"{prefix}tenant"
    admin.create_database(f"{prefix}db", tenant=f"{prefix}tenant")
    assert admin.get_database(f"{prefix}db", tenant=f"{prefix}tenant")["name"] == f"{prefix}db"
    admin.create_database(f"{prefix}gone", tenant=f"{prefix}tenant")
    admin.delete_database(f"{prefix}gone", tenant=f"{prefix}tenant")
    names = [d["name"] for d in admin.list_databases(tenant=f"{prefix}tenant")]
    assert names == [f"{prefix}db"]

    col = client.create_collection(f"{prefix}docs", metadata={"topic": "a"}, embedding_function=None)
    assert client.get_collection(f"{prefix}docs", embedding_function=None).id == col.id
    assert client.get_or_create_collection(f"{prefix}docs", embedding_function=None).id == col.id
    with pytest.raises(ChromaError, match=rf"Collection \[{prefix}docs\] already exists"):
        client.create_collection(f"{prefix}docs", embedding_function=None)

    col.add(
        ids=["a", "b", "c"],
        embeddings=EMB[:3],
        documents=["alpha", "beta", "gamma"],
        metadatas=[{"n": 1}, {"n": 2}, {"n": 3}],
        uris=["u1", "u2", "u3"],
    )
    col.upsert(ids=["c", "d"], embeddings=EMB[2:], documents=["gamma2", "delta"], metadatas=[{"n": 3}, {"n": 4}])
    col.update(ids=["a"], metadatas=[{"n": 10}])
    col.delete(ids=["b"])
    col.delete(where={"n": 4})
    assert col.count() == 2
    got = col.get(include=["metadatas", "documents", "uris"])
    assert sorted(got["ids"]) == ["a", "c"]
    assert col.get(ids=["a"], include=["metadatas"])["metadatas"] == [{"n": 10}]
    assert col.peek(limit=1)["ids"]
    result = col.query(query_embeddings=[EMB[0]], n_results=1, include=["documents"])
    assert result["ids"] == [["a"]]
    assert col.get(where_document={"$contains": "gamma2"})["ids"] == ["c"]
    col.delete(where_document={"$contains": "gamma2"})
    assert col.count() == 1

    col.modify(name=f"{prefix}docs2", metadata={"topic": "b"})
    renamed = client.get_collection(f"{prefix}docs2", embedding_function=None)
    assert renamed.id == col.id and renamed.metadata == {"topic": "b"}
    assert client.count_collections() == 1
    assert [c.name for c in client.list_collections()] == [f"{prefix}docs2"]

    other = client.create_collection(f"{prefix}other", embedding_function=None)
    other.add(ids=["x"], embeddings=[EMB[0]])
    client.delete_collection(f"{prefix}other")
    with pytest.raises(NotFoundError, match="does not exist"):
        client.get_collection(f"{prefix}other")
    again = client.create_collection(f"{prefix}other", embedding_function=None)
    assert again.id != other.id and again.count() == 0

    scoped = chromadb.HttpClient(
        host="127.0.0.1", port=port, tenant=f"{prefix}tenant", database=f"{prefix}db", settings=Settings(**auth)
    )
    inner = scoped.create_collection("inner", embedding_function=None)
    inner.add(ids=["i"], embeddings=[EMB[1]], documents=["inside"])
    assert scoped.get_collection("inner", embedding_function=None).count() == 1

    # A fork changes one instance in a way the log cannot replay: the gateway answers 501 NotImplementedError,
    # a name the official client has no class for, so it raises a bare Exception with the gateway's answer.
    with pytest.raises(Exception, match="'fork' changes one Chroma server") as refused:
        col.fork(f"{prefix}forked")
    assert type(refused.value) is Exception and json.loads(str(refused.value))["error"] == "NotImplementedError"


def test_official_sync_client_every_call(
    authed: tuple[GatewayProcess, dict[str, Any]], chroma_pair: list[ChromaServer]
) -> None:
    gateway, auth = authed
    client = chromadb.HttpClient(host="127.0.0.1", port=gateway.port, settings=Settings(**auth))
    exercise_sync(client, gateway.port, "s_", auth)
    assert_instances_identical(gateway, chroma_pair, [("default_tenant", "default_database"), ("s_tenant", "s_db")])
    status = gateway.wal_status()
    assert status["divergences"] == []


def test_official_async_client_every_call(
    authed: tuple[GatewayProcess, dict[str, Any]], chroma_pair: list[ChromaServer]
) -> None:
    gateway, auth = authed

    async def scenario() -> None:
        client = await chromadb.AsyncHttpClient(
            host="127.0.0.1", port=gateway.port, headers=client_headers(auth), settings=Settings(**auth)
        )
        assert await client.heartbeat() > 0
        col = await client.create_collection("a_docs", embedding_function=None)
        await col.add(ids=["a", "b"], embeddings=EMB[:2], documents=["x", "y"])
        await asyncio.gather(*(col.upsert(ids=[f"u{n}"], embeddings=[EMB[n % 4]]) for n in range(20)))
        await col.update(ids=["a"], embeddings=[EMB[2]], documents=["x2"])
        await col.delete(ids=["b"])
        assert await col.count() == 21
        got = await col.get(ids=["a"], include=["documents"])
        assert got["documents"] == ["x2"]
        [[nearest]] = (await col.query(query_embeddings=[EMB[0]], n_results=1))["ids"]
        assert nearest in {f"u{n}" for n in range(0, 20, 4)}  # the records at distance 0
        await col.modify(name="a_docs2")
        assert [c.name for c in await client.list_collections()] == ["a_docs2"]
        gone = await client.create_collection("a_gone", embedding_function=None)
        await gone.add(ids=["z"], embeddings=[EMB[3]])
        await client.delete_collection("a_gone")
        assert await client.count_collections() == 1

    asyncio.run(scenario())
    assert_instances_identical(gateway, chroma_pair, [("default_tenant", "default_database")])


def test_reset_needs_allow_reset(gateway: GatewayProcess) -> None:
    response = httpx.post(f"{gateway.url}/api/v2/reset")
    assert response.status_code == 403
    assert response.json()["error"] == "ChromaError"
