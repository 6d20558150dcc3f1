"""`chroma-ha status`, `wal` and `bootstrap` as an operator runs them against a gateway process in front of real Chroma
servers, through the gateway's admin API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import chromadb
import httpx

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, snapshot, wait_drained, wait_for, wait_until_identical

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_HA_")}
    return subprocess.run(
        [sys.executable, "-m", "chroma_ha", *args],
        env={**env, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )


def as_json(completed: subprocess.CompletedProcess[str]) -> dict[str, object]:
    document: dict[str, object] = json.loads(completed.stdout)
    return document


def test_status_summarises_the_gateway_and_says_when_an_instance_is_down(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    shown = cli("status", "--url", gateway.url)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "healthy, 2/2 instances up" in shown.stdout
    assert all(s.url in shown.stdout for s in chroma_pair)
    document = as_json(cli("status", "--url", gateway.url, "--json"))
    assert document["status"] == "healthy" and set(document["instances"]) == {s.url for s in chroma_pair}  # type: ignore[arg-type]

    chroma_pair[1].kill()
    wait_for("the gateway to see the instance down", lambda: cli("status", "--url", gateway.url).returncode == 1)
    shown = cli("status", "--url", gateway.url)
    assert "degraded" in shown.stdout and f"instance {chroma_pair[1].url} is down" in shown.stdout

    assert cli("status", "--url", "http://127.0.0.1:1").returncode == 1  # nothing there: said, exit 1
    assert cli("status", "--url", "nowhere").returncode == 2


def test_wal_entries_divergences_and_a_prune_that_keeps_what_an_instance_needs(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    client = chromadb.HttpClient(host="127.0.0.1", port=gateway.port)
    col = client.create_collection("walled", embedding_function=None)
    col.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]])
    # a header the log keeps with the entry must never be shown: it may be a credential
    added = httpx.post(
        f"{gateway.url}{COLLECTIONS}/{col.id}/add",
        json={"ids": ["c"], "embeddings": [[0.5, 0.5]]},
        headers={"authorization": "Bearer never-shown-secret"},
        timeout=10,
    )
    assert added.status_code == 201
    status = wait_drained(gateway.url)
    head = status["head"]

    entries = as_json(cli("wal", "entries", str(head), "--before", "2", "--after", "0", "--url", gateway.url, "--json"))
    shown = entries["entries"]
    assert [e["seq"] for e in shown] == [head - 2, head - 1, head]  # type: ignore[index]
    assert [e["op"] for e in shown] == ["create_collection", "add", "add"]  # type: ignore[index]
    assert all(e["outcome"]["status"] in (200, 201) for e in shown)  # type: ignore[index]
    table = cli("wal", "entries", str(head), "--url", gateway.url)
    assert table.returncode == 0 and "create_collection" in table.stdout
    assert "never-shown-secret" not in table.stdout + json.dumps(entries)

    assert cli("wal", "divergences", "--url", gateway.url).returncode == 0
    # b loses the collection behind the gateway's back: the next add is accepted on a (b is held back meanwhile, so
    # that a answers it first) and rejected on b
    b = chroma_pair[1]
    assert b.process is not None
    httpx.delete(f"{b.url}{COLLECTIONS}/walled", timeout=10).raise_for_status()
    os.killpg(b.process.pid, signal.SIGSTOP)
    try:
        col.add(ids=["d"], embeddings=[[0.2, 0.8]])
    finally:
        os.killpg(b.process.pid, signal.SIGCONT)
    wait_for("the divergence", lambda: cli("wal", "divergences", "--url", gateway.url).returncode == 1)
    found = as_json(cli("wal", "divergences", "--url", gateway.url, "--json", "--instance", b.url))
    (divergence,) = found["divergences"]  # type: ignore[misc]
    assert divergence["instance"] == b.url and divergence["expected_status"] == 201
    assert divergence["status"] >= 400 and divergence["entry"]["op"] == "add"
    assert divergence["outcome"]["status"] == 201 and divergence["outcome"]["instance"] == chroma_pair[0].url
    text = cli("wal", "divergences", "--url", gateway.url)
    assert f"seq {divergence['seq']} on {b.url}" in text.stdout
    assert as_json(cli("wal", "divergences", "--url", gateway.url, "--json", "--instance", "http://x:1"))["count"] == 0

    # a prune with b down keeps every entry b has not applied
    wait_drained(gateway.url)
    b.kill()
    wait_for("b down", lambda: not httpx.get(f"{gateway.url}/health", timeout=5).json()["instances"][b.url]["up"])
    b_cursor = httpx.get(f"{gateway.url}/wal/status", timeout=5).json()["head"]
    col.add(ids=["e"], embeddings=[[0.3, 0.7]])
    pruned = as_json(cli("wal", "prune", "--url", gateway.url, "--json"))
    assert pruned["pruned"] == b_cursor and pruned["oldest"] == b_cursor + 1, pruned
    b.start()
    wait_drained(gateway.url)
    again = cli("wal", "prune", "--url", gateway.url)
    assert again.returncode == 0 and "pruned 1 entries" in again.stdout, again.stdout + again.stderr
    wal = as_json(cli("wal", "status", "--url", gateway.url, "--json"))
    assert wal["oldest"] == wal["head"] + 1  # type: ignore[operator]


def test_bootstrap_rebuilds_a_damaged_instance_from_the_other(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    a, b = chroma_pair
    client = chromadb.HttpClient(host="127.0.0.1", port=gateway.port)
    for name in ("one", "two"):
        col = client.create_collection(name, metadata={"n": name}, embedding_function=None)
        col.add(ids=[f"{name}{n}" for n in range(30)], embeddings=[[float(n), 1.0] for n in range(30)])
    wait_drained(gateway.url)
    # damage b behind the gateway's back: a record gone, a stray record, a stray collection
    one_on_b = httpx.get(f"{b.url}{COLLECTIONS}/one", timeout=10).raise_for_status().json()["id"]
    httpx.post(f"{b.url}{COLLECTIONS}/{one_on_b}/delete", json={"ids": ["one3"]}, timeout=10).raise_for_status()
    stray = {"ids": ["stray"], "embeddings": [[9.0, 9.0]]}
    httpx.post(f"{b.url}{COLLECTIONS}/{one_on_b}/add", json=stray, timeout=10).raise_for_status()
    httpx.post(f"{b.url}{COLLECTIONS}", json={"name": "stray"}, timeout=10).raise_for_status()
    assert snapshot(a.url) != snapshot(b.url)

    rebuilt = cli("bootstrap", b.url, "--url", gateway.url)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "rebuilt: 60 records" in rebuilt.stdout
    wait_until_identical([a.url, b.url])
    again = client.get_collection("one", embedding_function=None)  # the gateway still serves it, from either
    again.add(ids=["after"], embeddings=[[2.0, 2.0]])
    wait_drained(gateway.url)
    assert wait_until_identical([a.url, b.url])["one"]["records"].keys() >= {"after", "one3"}

    refused = cli("bootstrap", "http://127.0.0.1:1", "--url", gateway.url)
    assert refused.returncode == 1 and "not one of the instances" in refused.stderr
