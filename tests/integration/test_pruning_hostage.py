"""Pruning cannot be held hostage: an instance kept down past REBUILD_AFTER stops holding the log back, and is
rebuilt (bootstrapped from an in-sync instance) when it returns. Real Chroma servers, a real gateway process."""

from __future__ import annotations

from collections.abc import Callable

import chromadb

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, run_cli, snapshot, wait_for

REBUILD_AFTER_S = 6.0
TIMEOUT_S = 120.0


def test_an_instance_down_past_the_limit_does_not_stop_pruning_and_is_rebuilt_when_it_returns(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]
) -> None:
    servers = chroma_pair
    gateway = gateway_with({"CHROMA_HA_RETENTION": "0.5", "CHROMA_HA_REBUILD_AFTER": str(REBUILD_AFTER_S)})
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("main", embedding_function=None)
    col.add(ids=[f"seed-{n}" for n in range(300)], embeddings=[[float(n), 1.0] for n in range(300)])
    left_at = gateway.wait_drained()["head"]  # the second instance has applied everything up to here
    servers[1].kill()
    for n in range(5):
        col.upsert(ids=[f"down-{n}"], embeddings=[[0.5, float(n)]])
    held = gateway.wal_status()
    # within the limit, the instance that is down still holds pruning back at its cursor
    assert held["oldest"] <= left_at + 1 and held["retention"]["released"] == []

    written = 5
    released = wait_for(
        "the down instance to be released and the log pruned past it",
        lambda: gateway.wal_status(),
        TIMEOUT_S,
        until=lambda s: servers[1].url in s["retention"]["released"] and s["oldest"] > left_at + 1,
    )
    assert released["retention"]["pruned"] >= written
    col.delete(ids=[f"seed-{n}" for n in range(50)])
    col.upsert(ids=["late"], embeddings=[[2.0, 2.0]], documents=["written while it was released"])

    servers[1].start()
    done = wait_for(
        "the returning instance's bootstrap",
        lambda: gateway.wal_status()["bootstrap"].get(servers[1].url, {}),
        TIMEOUT_S,
        until=lambda s: s.get("state") == "done",
    )
    gateway.wait_drained()
    assert done["source"] == servers[0].url and done["start_seq"] > left_at
    # at the head again, it holds pruning back like any instance from the next retention pass on
    wait_for(
        "the rebuilt instance to hold pruning back again",
        lambda: gateway.wal_status()["retention"]["released"],
        TIMEOUT_S,
        until=lambda released: released == [],
    )
    held_records = snapshot(servers[1].url)
    assert held_records == snapshot(servers[0].url)
    expected = {f"seed-{n}" for n in range(50, 300)} | {f"down-{n}" for n in range(5)} | {"late"}
    assert set(held_records["main"]["records"]) == expected
    verified = run_cli(gateway, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
