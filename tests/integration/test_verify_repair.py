"""`chroma-ha verify` and `chroma-ha repair` as an operator runs them: subprocesses next to a running gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import chromadb
import httpx

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, run_cli, snapshot

TENANT, DATABASE = "acme", "projects"


def report(gateway: GatewayProcess, path: Path) -> tuple[int, dict[str, Any]]:
    done = run_cli(gateway, "verify", "--json", str(path))
    assert path.exists(), done.stderr
    return done.returncode, json.loads(path.read_text())


def populate(gateway: GatewayProcess) -> None:
    httpx.post(f"{gateway.url}/api/v2/tenants", json={"name": TENANT}, timeout=10).raise_for_status()
    httpx.post(
        f"{gateway.url}/api/v2/tenants/{TENANT}/databases", json={"name": DATABASE}, timeout=10
    ).raise_for_status()
    default = chromadb.HttpClient(host="127.0.0.1", port=gateway.port)
    other = chromadb.HttpClient(host="127.0.0.1", port=gateway.port, tenant=TENANT, database=DATABASE)
    for client, name, size in ((default, "articles", 1200), (default, "empty-one", 0), (other, "tickets", 30)):
        col = client.create_collection(name, metadata={"owner": name}, embedding_function=None)
        for start in range(0, size, 400):
            n = range(start, min(size, start + 400))
            col.add(
                ids=[f"{name}-{i}" for i in n],
                embeddings=[[i / 7, 1.0, -i / 3] for i in n],
                metadatas=[{"i": i, "even": i % 2 == 0} for i in n],
                documents=[f"{name} text {i}" for i in n],
            )
    gateway.wait_drained()


def test_verify_finds_a_record_changed_behind_the_gateway_and_repair_fixes_it(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer], tmp_path: Path
) -> None:
    populate(gateway)
    code, clean = report(gateway, tmp_path / "clean.json")
    assert code == 0 and clean["ok"] and clean["differences"] == []
    assert sorted(c["collection"] for c in clean["collections"]) == [
        "acme/projects/tickets",
        "default_tenant/default_database/articles",
        "default_tenant/default_database/empty-one",
    ]

    behind = chromadb.HttpClient(host="127.0.0.1", port=chroma_pair[1].port)
    articles = behind.get_collection("articles", embedding_function=None)
    articles.update(ids=["articles-7"], embeddings=[[1.0, 1.0, -7 / 3]], documents=["changed behind the back"])
    articles.delete(ids=["articles-8"])
    articles.add(ids=["intruder"], embeddings=[[0.0, 0.0, 0.0]])

    code, found = report(gateway, tmp_path / "found.json")
    assert code == 1 and not found["ok"]
    [records] = [d for d in found["differences"] if d["kind"] == "records"]
    assert records["where"] == "default_tenant/default_database/articles"
    assert records["instances"][chroma_pair[1].url] == {
        "changed": {"count": 1, "examples": ["articles-7"]},
        "missing": {"count": 1, "examples": ["articles-8"]},
        "extra": {"count": 1, "examples": ["intruder"]},
    }

    dry = run_cli(gateway, "repair", "--dry-run", "--reference", chroma_pair[0].url)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would" in dry.stdout and "replace records default_tenant/default_database/articles" in dry.stdout
    assert report(gateway, tmp_path / "still.json")[0] == 1

    fixed = run_cli(gateway, "repair")  # the reference is chosen from the log; no question without a terminal
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"reference: {chroma_pair[0].url}" in fixed.stdout
    code, after = report(gateway, tmp_path / "after.json")
    assert code == 0 and after["ok"], after
    assert snapshot(chroma_pair[0].url) == snapshot(chroma_pair[1].url)
    assert articles.get(ids=["articles-7"], include=["documents"])["documents"] == ["articles text 7"]


def test_repair_recreates_a_collection_lost_on_one_instance_and_the_log_keeps_reaching_it(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer], tmp_path: Path
) -> None:
    populate(gateway)
    other = chromadb.HttpClient(host="127.0.0.1", port=chroma_pair[1].port, tenant=TENANT, database=DATABASE)
    other.delete_collection("tickets")
    behind = chromadb.HttpClient(host="127.0.0.1", port=chroma_pair[1].port)
    behind.get_collection("empty-one", embedding_function=None).modify(metadata={"owner": "someone else"})

    code, found = report(gateway, tmp_path / "found.json")
    assert code == 1
    kinds = {(d["kind"], d["where"]) for d in found["differences"]}
    assert ("collection", "acme/projects/tickets") in kinds
    assert ("metadata", "default_tenant/default_database/empty-one") in kinds

    fixed = run_cli(gateway, "repair", "--target", chroma_pair[1].url, "--reference", chroma_pair[0].url)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "create collection acme/projects/tickets (30 records)" in fixed.stdout
    assert report(gateway, tmp_path / "after.json")[0] == 0

    # the gateway learns the re-created collection's id on that instance and keeps applying the log to it
    through = chromadb.HttpClient(host="127.0.0.1", port=gateway.port, tenant=TENANT, database=DATABASE)
    through.get_collection("tickets", embedding_function=None).add(ids=["later"], embeddings=[[1.0, 2.0, 3.0]])
    gateway.wait_drained()
    assert gateway.wal_status()["divergences"] == []
    assert snapshot(chroma_pair[0].url, TENANT, DATABASE) == snapshot(chroma_pair[1].url, TENANT, DATABASE)
    assert "later" in snapshot(chroma_pair[1].url, TENANT, DATABASE)["tickets"]["records"]


def test_verify_reports_an_unreachable_instance(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer], tmp_path: Path
) -> None:
    populate(gateway)
    chroma_pair[1].kill()
    done = run_cli(gateway, "verify", "--wait", "1", "--json", str(tmp_path / "down.json"))
    assert done.returncode == 1, done.stdout + done.stderr
    found = json.loads((tmp_path / "down.json").read_text())
    assert [d["where"] for d in found["differences"] if d["kind"] == "unreachable"] == [chroma_pair[1].url]
