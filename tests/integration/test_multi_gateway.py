"""Several gateways sharing one PostgreSQL: one order, read-your-writes through any gateway, applier takeover."""

from __future__ import annotations

import threading
from collections.abc import Callable

import chromadb
import httpx

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, on_postgres, snapshot, wait_for

LEASE_TTL_S = 2


def applier_states(gateway: GatewayProcess) -> dict[str, str]:
    return {instance: shown["state"] for instance, shown in gateway.wal_status()["instances"].items()}


@on_postgres
def test_two_gateways_share_one_log(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]
) -> None:
    urls = [s.url for s in chroma_pair]
    env = {"CHROMA_HA_LEASE_TTL": str(LEASE_TTL_S)}
    first = gateway_with(env)
    second = gateway_with(env)
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

    # Each applier runs in one gateway at a time: what the second one does not run, the first one does.
    waiting = {instance for instance, state in applier_states(second).items() if state == "standby"}
    assert waiting, "the first gateway runs no applier: there would be nothing to take over"
    first.kill()  # the appliers it ran are taken over by the other gateway once their lease expires
    col_b.add(ids=["after"], embeddings=[[9.0, 9.0]])
    wait_for(
        f"the second gateway to take over the appliers of {sorted(waiting)}",
        lambda: applier_states(second),
        timeout=15 * LEASE_TTL_S,
        until=lambda states: "standby" not in states.values(),
    )
    second.wait_drained()
    assert snapshot(urls[0]) == snapshot(urls[1])
    assert "after" in snapshot(urls[0])["shared"]["records"]
    assert httpx.get(f"{second.url}/health").json()["healthy_instances"] == "2/2"
