"""`chroma-ha instances list|add|remove` as an operator runs it against a gateway process in front of real Chroma
servers: an instance added with --wait is shown joining then active, a removed one disappears (from `verify` too),
and refusals say why with exit status 1."""

from __future__ import annotations

import json
from pathlib import Path

import chromadb

from chroma_ha.local_cluster import ChromaServer
from tests.e2e.test_cli_more import cli
from tests.harness import GatewayProcess, run_cli, running_chroma, wait_until_identical


def test_instances_are_listed_added_with_progress_and_removed_through_the_cli(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer], tmp_path: Path
) -> None:
    a, b = chroma_pair
    listed = cli("instances", "list", "--url", gateway.url)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert all(f"{s.url:40} active" in listed.stdout for s in chroma_pair), listed.stdout
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("docs", embedding_function=None)
    col.add(ids=[f"r{n}" for n in range(200)], embeddings=[[float(n), 1.0] for n in range(200)])

    with running_chroma(tmp_path / "more", 1) as (c,):
        added = cli("instances", "add", c.url + "/", "--wait", "--url", gateway.url)
        assert added.returncode == 0, added.stdout + added.stderr
        assert added.stdout.startswith(f"{c.url} added: joining\n") and f"{c.url} is active" in added.stdout
        document = json.loads(cli("instances", "list", "--json", "--url", gateway.url).stdout)
        assert [(i["url"], i["state"]) for i in document["instances"]] == [
            (a.url, "active"),
            (b.url, "active"),
            (c.url, "active"),
        ]
        wait_until_identical([a.url, b.url, c.url])

        removed = cli("instances", "remove", a.url, "--url", gateway.url)
        assert removed.returncode == 0 and removed.stdout.startswith(f"{a.url} removed"), (
            removed.stdout + removed.stderr
        )
        # configured with a and b, verify compares the store's b and c, and waits for their cursors, not a's
        verified = run_cli(gateway, "verify", "--json", str(tmp_path / "verify.json"))
        assert verified.returncode == 0 and "not applied" not in verified.stdout, verified.stdout + verified.stderr
        assert json.loads((tmp_path / "verify.json").read_text())["instances"] == [b.url, c.url]

        assert cli("instances", "remove", b.url, "--url", gateway.url).returncode == 0
        last = cli("instances", "remove", c.url, "--url", gateway.url)
        assert last.returncode == 1 and "last active instance" in last.stderr, last.stderr
        unknown = cli("instances", "remove", a.url, "--url", gateway.url)
        assert unknown.returncode == 1 and "not one of the instances" in unknown.stderr, unknown.stderr
        unreachable = cli("instances", "add", "http://127.0.0.1:1", "--url", gateway.url)
        assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr, unreachable.stderr
        bad = cli("instances", "add", "chroma:8000", "--url", gateway.url)
        assert bad.returncode == 1 and "not an http(s) URL" in bad.stderr, bad.stderr
        assert chromadb.HttpClient(host="127.0.0.1", port=gateway.port).get_collection("docs").count() == 200
