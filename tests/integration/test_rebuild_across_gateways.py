"""A rebuilt instance is a new instance to every gateway: two gateways on one PostgreSQL, writers and readers on both,
one instance wiped and rebuilt (by whichever gateway runs its applier) while the other is frozen and then thawed.
No read may answer 404 for a collection that exists, no answer may name an instance's own collection id, and every
write is answered (the write timeout counts the time without progress)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, on_postgres, wait_drained, wait_until_identical

DB = "/api/v2/tenants/default_tenant/databases/default_database/collections"
RUN_S = 20.0


def own_ids(servers: list[ChromaServer]) -> set[str]:
    """Every collection id the instances gave themselves, now."""
    found = set()
    for server in servers:
        for c in httpx.get(f"{server.url}{DB}", timeout=10).json():
            found.add(c["id"])
    return found


class Traffic:
    """Writers and readers through both gateways, every answer kept."""

    def __init__(self, gateways: list[GatewayProcess], collection: str) -> None:
        self.gateways = gateways
        self.collection = collection
        self.answers: list[tuple[str, int, str]] = []  # (what, status, body)
        self.stop = threading.Event()

    def write(self, n: int) -> None:
        count = 0
        while not self.stop.is_set():
            gw = self.gateways[count % 2]
            body = {"ids": [f"w{n}-{count}"], "embeddings": [[float(count), 1.0]]}
            answer = httpx.post(f"{gw.url}{DB}/{self.collection}/add", json=body, timeout=60)
            self.answers.append(("write", answer.status_code, answer.text))
            count += 1

    def read(self, n: int) -> None:
        count = 0
        while not self.stop.is_set():
            gw = self.gateways[(count + n) % 2]
            for path in (f"{DB}/{self.collection}/count", f"{DB}/docs", DB):
                answer = httpx.get(f"{gw.url}{path}", timeout=60)
                self.answers.append((f"read {path}", answer.status_code, answer.text))
            count += 1

    def run(self, during: Callable[[], Any]) -> None:
        threads = [threading.Thread(target=self.write, args=(n,)) for n in range(2)]
        threads += [threading.Thread(target=self.read, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        try:
            during()
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(90)
        assert not any(thread.is_alive() for thread in threads)


@on_postgres
def test_no_gateway_answers_for_an_instance_another_gateway_rebuilt(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]
) -> None:
    env = {"CHROMA_HA_LEASE_TTL": "2"}
    gateways = [gateway_with(env), gateway_with(env)]
    created = httpx.post(f"{gateways[0].url}{DB}", json={"name": "docs"}, timeout=10).json()
    canonical = created["id"]
    httpx.post(
        f"{gateways[0].url}{DB}/{canonical}/add", json={"ids": ["seed"], "embeddings": [[0.0, 1.0]]}, timeout=10
    ).raise_for_status()
    wait_drained(gateways[0].url)
    before = own_ids(chroma_pair)
    frozen, wiped = chroma_pair
    assert frozen.process is not None

    def faults() -> None:
        time.sleep(2)
        os.kill(frozen.process.pid, signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            wiped.wipe()  # stopped and its data deleted, then started empty: every gateway must see a new instance
            wiped.start()
            time.sleep(RUN_S / 2)
        finally:
            os.kill(frozen.process.pid, signal.SIGCONT)  # type: ignore[union-attr]
        time.sleep(RUN_S / 2)

    traffic = Traffic(gateways, canonical)
    traffic.run(faults)
    wait_drained(gateways[0].url, timeout=120)
    wait_until_identical([s.url for s in chroma_pair], timeout=60)
    own = (before | own_ids(chroma_pair)) - {canonical}
    reads = [(what, status, body) for what, status, body in traffic.answers if what.startswith("read")]
    writes = [(status, body) for what, status, body in traffic.answers if what == "write"]
    assert len(reads) > 50 and len(writes) > 20
    assert [r for r in reads if r[1] == 404] == []
    assert [r for r in traffic.answers if any(i in r[2] for i in own)] == []
    assert all(status == 201 for status, _ in writes), [w for w in writes if w[0] != 201][:5]
