"""Retention and bootstrap: a wiped instance, once the log is pruned, is rebuilt by copying from an in-sync one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import chromadb
import httpx

from chroma_ha.local_cluster import ChromaServer
from chroma_ha.store.sqlite import SQLiteStore
from tests.harness import GatewayProcess, run_cli, snapshot, wait_for

TENANT, DATABASE = "acme", "projects"
BOOTSTRAP_TIMEOUT_S = 120.0


def bootstrap_done(gateway: GatewayProcess, instance: str) -> dict[str, Any]:
    """Until the bootstrap of `instance` is done; what /wal/status says of it."""
    return wait_for(
        f"the bootstrap of {instance}",
        lambda: gateway.wal_status()["bootstrap"].get(instance, {}),
        BOOTSTRAP_TIMEOUT_S,
        until=lambda shown: shown.get("state") == "done",
    )


def assert_same(first: dict[str, Any], second: dict[str, Any]) -> None:
    """Harness snapshots equal, embeddings within float32 precision: Chroma reads a cosine collection's vectors back
    as norm * unit vector, so a copied vector can differ from the original in its last digits."""
    assert first.keys() == second.keys()
    for name, held in first.items():
        other = second[name]
        assert (held["metadata"], held["configuration"]) == (other["metadata"], other["configuration"])
        assert held["records"].keys() == other["records"].keys(), name
        for rid, (embedding, *rest) in held["records"].items():
            their_embedding, *their_rest = other["records"][rid]
            assert rest == their_rest, rid
            scale = max(abs(x) for x in embedding + their_embedding)
            assert all(abs(x - y) <= 1e-5 * scale for x, y in zip(embedding, their_embedding, strict=True)), rid


def write_some(gateway: GatewayProcess, prefix: str, count: int) -> None:
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).get_collection("main", embedding_function=None)
    for n in range(count):
        col.upsert(ids=[f"{prefix}-{n}"], embeddings=[[float(n), 0.5]], metadatas=[{"batch": prefix}])
        if n % 3 == 0:
            col.delete(ids=[f"seed-{n}"])


def test_a_wiped_instance_is_bootstrapped_after_the_log_was_pruned(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]
) -> None:
    servers = chroma_pair
    gateway = gateway_with({"CHROMA_HA_RETENTION": "0.5"})
    httpx.post(f"{gateway.url}/api/v2/tenants", json={"name": TENANT}, timeout=10).raise_for_status()
    httpx.post(
        f"{gateway.url}/api/v2/tenants/{TENANT}/databases", json={"name": DATABASE}, timeout=10
    ).raise_for_status()
    client = chromadb.HttpClient(host="127.0.0.1", port=gateway.port)
    main = client.create_collection(
        "main", metadata={"kind": "main"}, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
    )
    main.add(
        ids=[f"seed-{n}" for n in range(1500)],
        embeddings=[[float(n), 1.0] for n in range(1500)],
        documents=[f"seed {n}" for n in range(1500)],
        metadatas=[{"n": n} for n in range(1500)],
    )
    main.update(ids=["seed-1"], metadatas=[{"n": -1, "touched": True}])
    main.delete(where={"n": {"$gte": 1400}})
    gone = client.create_collection("dropped", embedding_function=None)
    gone.add(ids=["x"], embeddings=[[1.0, 1.0]])
    client.delete_collection("dropped")
    other = chromadb.HttpClient(host="127.0.0.1", port=gateway.port, tenant=TENANT, database=DATABASE)
    other.create_collection("tickets", embedding_function=None).add(
        ids=["t1", "t2"], embeddings=[[0.1, 0.2], [0.3, 0.4]], uris=["s3://a", None]
    )
    gateway.wait_drained()
    wait_for(
        "the log to be pruned",
        lambda: gateway.wal_status()["oldest"],
        BOOTSTRAP_TIMEOUT_S,
        until=lambda oldest: oldest > 10,
    )

    servers[1].wipe()
    write_some(gateway, "while-down", 20)
    servers[1].start()
    with ThreadPoolExecutor(1) as pool:
        writing = pool.submit(write_some, gateway, "during", 60)
        done = bootstrap_done(gateway, servers[1].url)
        writing.result()  # the writes during the bootstrap all succeeded
    gateway.wait_drained()

    assert done["source"] == servers[0].url and done["start_seq"] > 1
    assert done["records_copied"] >= 1400 and done["collections_total"] == 2
    assert_same(snapshot(servers[0].url), snapshot(servers[1].url))  # a cosine collection
    assert snapshot(servers[0].url, TENANT, DATABASE) == snapshot(servers[1].url, TENANT, DATABASE)  # l2: exact
    verified = run_cli(gateway, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    held = snapshot(servers[1].url)
    assert set(held) == {"main"} and held["main"]["metadata"] == {"kind": "main"}
    assert held["main"]["configuration"]["hnsw"]["space"] == "cosine"
    expected = {f"seed-{n}" for n in range(1400) if not (n < 60 and n % 3 == 0)}
    expected |= {f"while-down-{n}" for n in range(20)} | {f"during-{n}" for n in range(60)}
    assert set(held["main"]["records"]) == expected
    assert held["main"]["records"]["seed-1"][1] == {"n": -1, "touched": True}
    # pages of records (`get` with limit and offset) are the same on the copy: it was filled in the source's order
    assert record_pages(servers[0].url, "main", 7) == record_pages(servers[1].url, "main", 7)

    # and it keeps following the log like any instance
    main.delete(ids=["seed-100"])
    gateway.wait_drained()
    assert "seed-100" not in snapshot(servers[1].url)["main"]["records"]
    assert gateway.wal_status()["divergences"] == []


def test_an_instance_left_behind_the_oldest_kept_entry_is_bootstrapped(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    servers = chroma_pair
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("main", embedding_function=None)
    col.add(ids=[f"seed-{n}" for n in range(300)], embeddings=[[float(n), 1.0] for n in range(300)])
    gateway.wait_drained()
    servers[1].kill()
    col.delete(ids=[f"seed-{n}" for n in range(100)])
    col.upsert(ids=["late"], embeddings=[[0.5, 0.5]], documents=["written while the instance was down"])
    gateway.stop()
    head = asyncio.run(prune_everything(gateway.store))  # an operator prunes past the lagging cursor
    servers[1].start()
    gateway.start()
    done = bootstrap_done(gateway, servers[1].url)
    gateway.wait_drained()
    assert done["start_seq"] == head
    held = snapshot(servers[1].url)
    assert held == snapshot(servers[0].url)
    assert set(held["main"]["records"]) == {f"seed-{n}" for n in range(100, 300)} | {"late"}


def record_pages(url: str, name: str, size: int) -> list[list[str]]:
    """Every page of `size` records of a collection in the default database, as that instance orders them."""
    base = f"{url}/api/v2/tenants/default_tenant/databases/default_database/collections"
    own = httpx.get(f"{base}/{name}", timeout=10).raise_for_status().json()["id"]
    pages: list[list[str]] = []
    while True:
        body = {"limit": size, "offset": size * len(pages), "include": []}
        ids = httpx.post(f"{base}/{own}/get", json=body, timeout=10).raise_for_status().json()["ids"]
        if not ids:
            return pages
        pages.append(ids)


async def prune_everything(store_url: str) -> int:
    assert store_url.startswith("sqlite:///"), store_url
    store = SQLiteStore(store_url.removeprefix("sqlite:///"))
    await store.open()
    try:
        head = await store.head()
        await store.prune(head)
        return head
    finally:
        await store.close()
