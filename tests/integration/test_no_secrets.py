"""No client secret at rest: after authenticated writes (the official client sending its token as
`Authorization: Bearer` and as `X-Chroma-Token`), no byte of either token is in the store (the SQLite file and its
-wal, or every PostgreSQL table), the entries still apply to both instances, and the SQLite files are the owner's
only. The instance client never sends a client's credentials to an instance, whoever hands them over: a logged
entry of an older store that still holds them is replayed without them."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import chromadb
import httpx
import psycopg
from aiohttp import web

from chroma_ha.local_cluster import ChromaServer
from chroma_ha.upstream.client import InstanceClient
from tests.harness import GatewayProcess, on_every_store, serving, snapshot, wait_for

BEARER_TOKEN = "tok-bearer-4c1d9e7a0b2f"
HEADER_TOKEN = "tok-header-93e8b15c6d70"
ADMIN_TOKEN = "tok-admin-2a7f06c1d9b3"
TOKENS = (BEARER_TOKEN, HEADER_TOKEN, ADMIN_TOKEN)
PROVIDER = "chromadb.auth.token_authn.TokenAuthClientProvider"


def client(port: int, token: str, header: str) -> chromadb.ClientAPI:
    """The official client sending `token` as Chroma's token auth does, in `header`."""
    settings = chromadb.Settings(
        chroma_client_auth_provider=PROVIDER,
        chroma_client_auth_credentials=token,
        chroma_auth_token_transport_header=header,
    )
    return chromadb.HttpClient(host="127.0.0.1", port=port, settings=settings)


def store_bytes(store: str) -> bytes:
    """Everything the store holds, as bytes: the SQLite file and its -wal and -shm, or every PostgreSQL table."""
    if store.startswith("sqlite:///"):
        path = Path(store.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())
    with psycopg.connect(store) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
            )
        ]
        assert "entries" in tables
        dumped = []
        for table in tables:
            with conn.cursor().copy(f'COPY "{table}" TO STDOUT') as copy:  # type: ignore[arg-type]
                dumped.extend(bytes(block) for block in copy)
        return b"".join(dumped)


@on_every_store
def test_authenticated_writes_leave_no_token_in_the_store_and_still_apply(
    tmp_path: Path, store_url: str, chroma_pair: list[ChromaServer]
) -> None:
    hashed = ",".join(
        f"{name}:{hashlib.sha256(token.encode()).hexdigest()}"
        for name, token in (("bearer-writer", BEARER_TOKEN), ("header-writer", HEADER_TOKEN))
    )
    env = {"CHROMA_HA_AUTH_TOKENS": hashed, "CHROMA_HA_ADMIN_TOKEN": ADMIN_TOKEN}
    gateway = GatewayProcess([s.url for s in chroma_pair], store_url, tmp_path / "gateway", env=env)
    try:
        gateway.start()
        bearer = client(gateway.port, BEARER_TOKEN, "Authorization")
        header = client(gateway.port, HEADER_TOKEN, "X-Chroma-Token")
        first = bearer.create_collection("by-bearer", embedding_function=None)
        first.add(ids=[f"b{n}" for n in range(50)], embeddings=[[float(n), 0.0] for n in range(50)])
        first.update(ids=["b1"], metadatas=[{"v": 1}])
        first.delete(ids=["b2"])
        second = header.create_collection("by-header", embedding_function=None)
        second.upsert(ids=[f"h{n}" for n in range(50)], embeddings=[[0.0, float(n)] for n in range(50)])
        header.get_collection("by-bearer").add(ids=["x"], embeddings=[[9.0, 9.0]])
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        wait_for(
            "every instance to apply the whole log",
            lambda: httpx.get(f"{gateway.url}/wal/status", headers=admin, timeout=10).json(),
            60,
            until=lambda s: all(i["cursor"] >= s["head"] for i in s["instances"].values()),
        )
    finally:
        gateway.stop()

    held = snapshot(chroma_pair[0].url)
    assert snapshot(chroma_pair[1].url) == held
    assert set(held["by-bearer"]["records"]) == {f"b{n}" for n in range(50)} - {"b2"} | {"x"}
    assert set(held["by-header"]["records"]) == {f"h{n}" for n in range(50)}

    kept = store_bytes(store_url).lower()

    def holds(text: str) -> bool:  # as text, or in the hex COPY writes a bytea in
        return text.encode() in kept or text.encode().hex().encode() in kept

    assert holds("by-bearer") and holds("by-header")  # the dump holds the writes...
    for token in (BEARER_TOKEN, HEADER_TOKEN):
        assert not holds(token)  # ...and no byte of a client's token
    assert not holds("x-chroma-token") and not holds("bearer ")
    if store_url.startswith("sqlite:///"):
        path = Path(store_url.removeprefix("sqlite:///"))
        for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if file.exists():
                assert stat.S_IMODE(os.stat(file).st_mode) == 0o600, file


def test_a_new_sqlite_store_and_its_folder_are_the_owners_only(
    gateway_with: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    store = tmp_path / "fresh" / "folder" / "wal.db"
    gateway = gateway_with({"CHROMA_HA_STORE": f"sqlite:///{store}"})
    chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("owned", embedding_function=None)
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(f"{store}-wal").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.parent).st_mode) == 0o700


async def test_a_client_credential_is_never_sent_to_an_instance_whoever_hands_it_over() -> None:
    seen: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    async with serving(app) as url:
        own = {url: [("Authorization", "Bearer gateway-own"), ("X-Instance-Key", "k1")]}
        instance_client = InstanceClient(10.0, credentials=own)
        old_entry = {  # as an entry logged before credentials were kept out of the log holds them
            "authorization": "Bearer client-old",
            "x-chroma-token": "client-old",
            "x-chroma-ha-token": "admin-old",
            "X-Instance-Key": "client-chosen",
            "content-type": "application/json",
        }
        await instance_client.request(url, "POST", "/api/v2/x", headers=old_entry, body=b"{}")
        client_pairs = [(k.lower().encode(), v.encode()) for k, v in old_entry.items()]
        await instance_client.request(url, "GET", "/api/v2/y", headers=client_pairs)
        bare = InstanceClient(10.0)
        await bare.request(url, "GET", "/api/v2/z", headers=client_pairs)
        await asyncio.gather(instance_client.close(), bare.close())
    for headers in seen[:2]:
        assert headers["authorization"] == "Bearer gateway-own" and headers["x-instance-key"] == "k1"
        assert "x-chroma-token" not in headers and "x-chroma-ha-token" not in headers
        assert headers["content-type"] == "application/json"
    assert "authorization" not in seen[2] and "x-chroma-token" not in seen[2] and "x-chroma-ha-token" not in seen[2]
    assert seen[2]["x-instance-key"] == "client-chosen"  # a header the gateway does not set is the client's
