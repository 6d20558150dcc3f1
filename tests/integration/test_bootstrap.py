"""Retention and bootstrap: a wiped instance, once the log is pruned, is rebuilt by copying from an in-sync one."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import chromadb
import httpx

from chroma_ha.store.sqlite import SQLiteStore
from tests.harness import GatewayProcess, snapshot, start_chroma

TENANT, DATABASE = "acme", "projects"


def verify_exit_code(gateway: GatewayProcess) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_HA_")}
    env.update({"CHROMA_HA_INSTANCES": ",".join(gateway.instances), "CHROMA_HA_STORE": gateway.store})
    done = subprocess.run([sys.executable, "-m", "chroma_ha", "verify"], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    return done.returncode


def wait_for(what: str, check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


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


def test_a_wiped_instance_is_bootstrapped_after_the_log_was_pruned(tmp_path: Path) -> None:
    servers = start_chroma(tmp_path, 2)
    gateway = GatewayProcess(
        [s.url for s in servers], f"sqlite:///{tmp_path / 'wal.db'}", tmp_path / "gw",
        env={"CHROMA_HA_RETENTION": "0.5"},
    ).start()
    try:
        httpx.post(f"{gateway.url}/api/v2/tenants", json={"name": TENANT}, timeout=10).raise_for_status()
        httpx.post(f"{gateway.url}/api/v2/tenants/{TENANT}/databases", json={"name": DATABASE},
                   timeout=10).raise_for_status()
        client = chromadb.HttpClient(host="127.0.0.1", port=gateway.port)
        main = client.create_collection("main", metadata={"kind": "main"}, embedding_function=None,
                                        configuration={"hnsw": {"space": "cosine"}})
        main.add(ids=[f"seed-{n}" for n in range(1500)], embeddings=[[float(n), 1.0] for n in range(1500)],
                 documents=[f"seed {n}" for n in range(1500)], metadatas=[{"n": n} for n in range(1500)])
        main.update(ids=["seed-1"], metadatas=[{"n": -1, "touched": True}])
        main.delete(where={"n": {"$gte": 1400}})
        gone = client.create_collection("dropped", embedding_function=None)
        gone.add(ids=["x"], embeddings=[[1.0, 1.0]])
        client.delete_collection("dropped")
        other = chromadb.HttpClient(host="127.0.0.1", port=gateway.port, tenant=TENANT, database=DATABASE)
        other.create_collection("tickets", embedding_function=None).add(
            ids=["t1", "t2"], embeddings=[[0.1, 0.2], [0.3, 0.4]], uris=["s3://a", None])
        gateway.wait_drained()
        wait_for("the log to be pruned", lambda: gateway.wal_status()["oldest"] > 10)

        servers[1].wipe()
        write_some(gateway, "while-down", 20)
        servers[1].start()
        writer = threading.Thread(target=write_some, args=(gateway, "during", 60))
        writer.start()
        done = wait_for("the bootstrap", lambda: gateway.wal_status()["bootstrap"].get(servers[1].url, {}).get(
            "state") == "done" and gateway.wal_status()["bootstrap"][servers[1].url])
        writer.join()
        gateway.wait_drained()

        assert done["source"] == servers[0].url and done["start_seq"] > 1
        assert done["records_copied"] >= 1400 and done["collections_total"] == 2
        assert_same(snapshot(servers[0].url), snapshot(servers[1].url))  # a cosine collection
        assert snapshot(servers[0].url, TENANT, DATABASE) == snapshot(servers[1].url, TENANT, DATABASE)  # l2: exact
        assert verify_exit_code(gateway) == 0
        held = snapshot(servers[1].url)
        assert set(held) == {"main"} and held["main"]["metadata"] == {"kind": "main"}
        assert held["main"]["configuration"]["hnsw"]["space"] == "cosine"
        expected = {f"seed-{n}" for n in range(1400) if not (n < 60 and n % 3 == 0)}
        expected |= {f"while-down-{n}" for n in range(20)} | {f"during-{n}" for n in range(60)}
        assert set(held["main"]["records"]) == expected
        assert held["main"]["records"]["seed-1"][1] == {"n": -1, "touched": True}

        # and it keeps following the log like any instance
        main.delete(ids=["seed-100"])
        gateway.wait_drained()
        assert "seed-100" not in snapshot(servers[1].url)["main"]["records"]
        assert gateway.wal_status()["divergences"] == []
    finally:
        gateway.stop()
        for server in servers:
            server.stop()


def test_an_instance_left_behind_the_oldest_kept_entry_is_bootstrapped(tmp_path: Path) -> None:
    servers = start_chroma(tmp_path, 2)
    store = f"sqlite:///{tmp_path / 'wal.db'}"
    gateway = GatewayProcess([s.url for s in servers], store, tmp_path / "gw").start()
    try:
        col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection(
            "main", embedding_function=None)
        col.add(ids=[f"seed-{n}" for n in range(300)], embeddings=[[float(n), 1.0] for n in range(300)])
        gateway.wait_drained()
        servers[1].kill()
        col.delete(ids=[f"seed-{n}" for n in range(100)])
        col.upsert(ids=["late"], embeddings=[[0.5, 0.5]], documents=["written while the instance was down"])
        gateway.stop()
        head = asyncio.run(prune_everything(tmp_path / "wal.db"))  # an operator prunes past the lagging cursor
        servers[1].start()
        gateway.start()
        done = wait_for("the bootstrap", lambda: gateway.wal_status()["bootstrap"].get(servers[1].url, {}).get(
            "state") == "done" and gateway.wal_status()["bootstrap"][servers[1].url])
        gateway.wait_drained()
        assert done["start_seq"] == head
        held = snapshot(servers[1].url)
        assert held == snapshot(servers[0].url)
        assert set(held["main"]["records"]) == {f"seed-{n}" for n in range(100, 300)} | {"late"}
    finally:
        gateway.stop()
        for server in servers:
            server.stop()


async def prune_everything(path: Path) -> int:
    store = SQLiteStore(str(path))
    await store.open()
    try:
        head = await store.head()
        await store.prune(head)
        return head
    finally:
        await store.close()
