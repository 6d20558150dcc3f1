"""Transparent under real use, against a gateway process and real Chroma servers: pages of collections cut from one
order whichever instance answers, and a write no instance makes progress on answered after the write timeout."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, wait_drained, wait_for, wait_until_identical

DB = "/api/v2/tenants/default_tenant/databases/default_database"
WRITE_TIMEOUT_S = 3.0


def reads_by_instance(gateway: GatewayProcess) -> dict[str, float]:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "chroma_ha_requests_total" and sample.labels.get("route_class") == "read":
                counts[sample.labels["instance"]] = counts.get(sample.labels["instance"], 0) + sample.value
    return counts


def test_pages_of_collections_give_exactly_the_full_listing_in_order(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    for n in range(30):
        assert httpx.post(f"{gateway.url}{DB}/collections", json={"name": f"col{n:02d}"}, timeout=10).status_code == 200
    wait_drained(gateway.url)
    orders = [[c["name"] for c in httpx.get(f"{s.url}{DB}/collections", timeout=10).json()] for s in chroma_pair]
    assert orders[0] != orders[1], "the instances list in orders of their own: the test would prove nothing"
    full = [c["id"] for c in httpx.get(f"{gateway.url}{DB}/collections", timeout=10).json()]
    assert len(full) == 30 and full == sorted(full)
    for limit in range(1, 7):
        for offset in range(1, 7):
            page = httpx.get(f"{gateway.url}{DB}/collections", params={"limit": limit, "offset": offset}, timeout=10)
            assert [c["id"] for c in page.json()] == full[offset : offset + limit]
        walked: list[str] = []
        while len(walked) < 30:
            page = httpx.get(f"{gateway.url}{DB}/collections", params={"limit": limit, "offset": len(walked)})
            walked.extend(c["id"] for c in page.json())
        assert walked == full
    served = reads_by_instance(gateway)
    assert all(served.get(s.url, 0) > 20 for s in chroma_pair), served  # pages came from both instances


def test_a_write_to_a_hung_instance_while_the_other_is_down_is_answered_logged_after_the_write_timeout(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]
) -> None:
    gateway = gateway_with({"CHROMA_HA_WRITE_TIMEOUT": str(WRITE_TIMEOUT_S)})
    created = httpx.post(f"{gateway.url}{DB}/collections", json={"name": "docs"}, timeout=10).json()
    wait_drained(gateway.url)
    down, hung = chroma_pair
    assert hung.process is not None
    down.kill()
    wait_for(
        "the killed instance to be seen down",
        lambda: gateway.wal_status()["instances"][down.url]["up"],
        until=lambda up: not up,
    )
    os.kill(hung.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        answer = httpx.post(
            f"{gateway.url}{DB}/collections/{created['id']}/add",
            json={"ids": ["a"], "embeddings": [[1.0, 2.0]]},
            timeout=60,
        )
        took = time.monotonic() - started
    finally:
        os.kill(hung.process.pid, signal.SIGCONT)
    assert answer.status_code == 503 and answer.json()["error"] == "WriteLogged", answer.text
    assert WRITE_TIMEOUT_S <= took < WRITE_TIMEOUT_S + 15  # not sooner, and not never
    down.start()
    wait_drained(gateway.url)
    state = wait_until_identical([s.url for s in chroma_pair])
    assert set(state["docs"]["records"]) == {"a"}  # logged, then applied everywhere
