"""Several gateways sharing one PostgreSQL: one order, read-your-writes through any gateway, applier takeover."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import chromadb
import httpx

from tests.harness import GatewayProcess, snapshot, start_chroma


def test_two_gateways_share_one_log(tmp_path: Path, postgres_server: str) -> None:
    import uuid

    from tests.pg import create_database, database_uri

    name = f"mg_{uuid.uuid4().hex[:10]}"
    create_database(postgres_server, name)
    store = database_uri(postgres_server, name)
    servers = start_chroma(tmp_path, 2)
    urls = [s.url for s in servers]
    env = {"CHROMA_HA_LEASE_TTL": "2"}
    first = GatewayProcess(urls, store, tmp_path / "gw1", env=env).start()
    second = GatewayProcess(urls, store, tmp_path / "gw2", env=env).start()
    try:
        a = chromadb.HttpClient(host="127.0.0.1", port=first.port)
        b = chromadb.HttpClient(host="127.0.0.1", port=second.port)
        col_a = a.create_collection("shared", embedding_function=None)
        col_b = b.get_collection("shared", embedding_function=None)
        assert col_b.id == col_a.id, "one canonical id through every gateway"
        for n in range(30):  # a write through one gateway is read back at once through the other
            writer, reader = (col_a, col_b) if n % 2 == 0 else (col_b, col_a)
            writer.add(ids=[f"r{n}"], embeddings=[[float(n), 1.0]], documents=[f"doc {n}"])
            assert reader.get(ids=[f"r{n}"])["ids"] == [f"r{n}"]

        errors: list[Exception] = []

        def write_both(col: chromadb.Collection, prefix: str) -> None:
            for n in range(40):
                try:
                    col.upsert(ids=[f"{prefix}{n % 7}"], embeddings=[[float(n), 2.0]], documents=[f"{prefix}{n}"])
                except Exception as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=write_both, args=(c, p)) for c, p in ((col_a, "x"), (col_b, "x"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        second.wait_drained()
        assert snapshot(urls[0]) == snapshot(urls[1])

        first.kill()  # the appliers it ran are taken over by the other gateway once their lease expires
        col_b.add(ids=["after"], embeddings=[[9.0, 9.0]])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = {i["state"] for i in second.wal_status()["instances"].values()}
            if "standby" not in states:
                break
            time.sleep(0.2)
        second.wait_drained()
        assert snapshot(urls[0]) == snapshot(urls[1])
        assert "after" in snapshot(urls[0])["shared"]["records"]
        assert httpx.get(f"{second.url}/health").json()["healthy_instances"] == "2/2"
    finally:
        first.stop()
        second.stop()
        for s in servers:
            s.stop()
