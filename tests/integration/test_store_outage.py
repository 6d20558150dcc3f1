"""A PostgreSQL outage under a stream of reads and writes: two gateway processes on a real PostgreSQL that the test
stops for 20 s and starts again, in front of two real Chroma servers that stay up.

While the store is down, reads keep answering within a second (marked `x-chroma-ha-stale-by: -1` where freshness
cannot be proven) and writes get a 503 that says the log is unreachable; none is acknowledged that was not logged.
When it is back, everything resumes by itself: the appliers, the cursor follower, retention and the monitor.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chroma_ha.local_cluster import ChromaServer
from chroma_ha.local_postgres import StoppablePostgres, create_database, database_uri, stoppable_postgres
from tests.harness import GatewayProcess, wait_drained, wait_for

OUTAGE_S = 20.0
COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"
STALE = "x-chroma-ha-stale-by"


@dataclass(frozen=True)
class Answer:
    record: str  # what the request wrote or read
    sent: float
    took: float
    status: int | None  # None: no answer (the client gave up)
    text: str
    stale: str | None = None

    @property
    def received(self) -> float:
        return self.sent + self.took


class Stream:
    """Requests in a loop on a thread of its own, each recorded with its answer, until `stop`."""

    def __init__(self, ask: Any, pause: float) -> None:
        self.answers: list[Answer] = []
        self._ask = ask
        self._pause = pause
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)

    def _run(self) -> None:
        with httpx.Client() as client:
            n = 0
            while not self._stop.is_set():
                self.answers.append(self._ask(client, n))
                n += 1
                time.sleep(self._pause)


def asked(client: httpx.Client, record: str, method: str, url: str, timeout: float, **kw: Any) -> Answer:
    sent = time.monotonic()
    try:
        r = client.request(method, url, timeout=timeout, **kw)
    except httpx.HTTPError as exc:
        return Answer(record, sent, time.monotonic() - sent, None, repr(exc))
    return Answer(record, sent, time.monotonic() - sent, r.status_code, r.text, r.headers.get(STALE))


@pytest.fixture
def postgres() -> Iterator[StoppablePostgres]:
    """A PostgreSQL of this test's own, which it stops and starts (under the system temp dir: the server runs as
    another user and must traverse the path)."""
    base = Path(tempfile.mkdtemp(prefix="chroma-ha-pg-outage-"))
    try:
        with stoppable_postgres(base) as server:
            yield server
    finally:
        shutil.rmtree(base, ignore_errors=True)


def held_ids(instance: str, name: str) -> set[str]:
    base = f"{instance}{COLLECTIONS}"
    own = httpx.get(f"{base}/{name}", timeout=10).raise_for_status().json()["id"]
    got = httpx.post(f"{base}/{own}/get", json={"include": []}, timeout=30).raise_for_status().json()
    return set(got["ids"])


def test_a_postgresql_outage_refuses_writes_keeps_reads_and_everything_resumes(
    tmp_path: Path, chroma_pair: list[ChromaServer], postgres: StoppablePostgres
) -> None:
    store = database_uri(create_database(postgres.dsn, "chroma_ha"), "chroma_ha")
    instances = [s.url for s in chroma_pair]
    settings = {"CHROMA_HA_MONITOR_INTERVAL": "0.5", "CHROMA_HA_RETENTION": "1"}
    gateways = [
        GatewayProcess(instances, store, tmp_path / f"gateway-{n}", env={**settings, "CHROMA_HA_GATEWAY_ID": f"g{n}"})
        for n in range(2)
    ]
    try:
        for gateway in gateways:
            gateway.start()
        run_the_outage(gateways, instances, postgres)
    finally:
        for gateway in gateways:
            gateway.stop()


def run_the_outage(gateways: list[GatewayProcess], instances: list[str], postgres: StoppablePostgres) -> None:
    urls = [g.url for g in gateways]
    created = httpx.post(f"{urls[0]}{COLLECTIONS}", json={"name": "stream"}, timeout=30).raise_for_status().json()
    collection = f"{COLLECTIONS}/{created['id']}"
    for url in urls:  # each gateway has read the collection once: its ids are known to both
        assert httpx.get(f"{url}{collection}/count", timeout=30).status_code == 200

    def writer(g: int) -> Any:
        def write(client: httpx.Client, n: int) -> Answer:
            body = {"ids": [f"g{g}-{n}"], "embeddings": [[float(n), 1.0]]}
            return asked(client, f"g{g}-{n}", "POST", f"{urls[g]}{collection}/add", 60.0, json=body)

        return write

    def read(client: httpx.Client, n: int) -> Answer:
        return asked(client, "", "GET", f"{urls[n % 2]}{collection}/count", 10.0)

    with Stream(writer(0), 0.05) as first, Stream(writer(1), 0.05) as second, Stream(read, 0.02) as reads:
        time.sleep(3)
        head_before = gateways[0].wal_status()["head"]
        postgres.stop()
        down = time.monotonic()
        time.sleep(OUTAGE_S)
        # The server accepts connections before `start` returns, and the store reconnects within half a second:
        # the outage is what came before the restart began.
        restarting = time.monotonic()
        postgres.start()
        up, up_at = time.monotonic(), time.time()
        for stream in (first, second):
            wait_for(
                "a write sent after the store came back to be acknowledged through each gateway",
                lambda s=stream: [a for a in s.answers if a.sent > up and a.status == 201],
                timeout=120,
            )
        time.sleep(2)
    writes = first.answers + second.answers

    # during the outage: writes refused, saying why; reads served within a second, marked
    outage = [a for a in writes if a.sent > down and a.received < restarting]
    assert len(outage) > 10, "writes were not answered during the outage"
    assert all(a.status == 503 for a in outage), [a for a in outage if a.status != 503]
    for a in writes:
        assert a.status in (201, 503), a
        if a.status == 503:
            answer = json.loads(a.text)
            if answer["error"] == "WriteLogged":
                # appended just before the store went away: no applier could read it back in time; it must be
                # applied once the store returns (checked below with the acknowledged writes)
                assert "logged as seq" in answer["message"], a
                continue
            message = answer["message"]
            assert "the write-ahead log (postgresql " in message.lower() and "is unreachable" in message, a
    failed = [a for a in reads.answers if a.status != 200]
    assert not failed, failed[:10]
    during = [a for a in reads.answers if a.sent > down and a.received < restarting]
    assert len(during) > 100
    slow = [a for a in during if a.took >= 1.0]
    assert not slow, slow[:10]
    assert all(a.stale == "-1" for a in during), [a for a in during if a.stale != "-1"][:5]

    # resumed: the appliers apply what is acknowledged, on every instance; what was refused unlogged is nowhere
    for gateway in gateways:
        wait_drained(gateway.url, 120)
    # (a 503 that says it is logged must be applied too; one that says the append was not confirmed may be)
    acknowledged = {a.record for a in writes if a.status == 201 or (a.status == 503 and "WriteLogged" in a.text)}
    not_logged = {a.record for a in writes if a.status == 503 and "nothing was logged" in a.text}
    assert acknowledged and not_logged
    for instance in instances:
        held = held_ids(instance, "stream")
        assert acknowledged <= held, sorted(acknowledged - held)[:10]
        assert not (not_logged & held), sorted(not_logged & held)[:10]

    # the cursor follower and the log follower: a write through one gateway is read fresh through the other
    last = httpx.post(f"{urls[0]}{collection}/add", json={"ids": ["last"], "embeddings": [[0.0, 0.0]]}, timeout=60)
    assert last.status_code == 201, last.text
    seen = httpx.post(f"{urls[1]}{collection}/get", json={"ids": ["last"], "include": []}, timeout=10)
    assert seen.status_code == 200 and seen.json()["ids"] == ["last"] and STALE not in seen.headers
    for url in urls:
        health = httpx.get(f"{url}/health", timeout=10)
        assert health.status_code == 200
        document = health.json()
        assert (document["reads"], document["writes"], document["store"]) == ("available", "available", "ok")
        # the monitor samples again
        samples = httpx.get(f"{url}/dashboard/data", timeout=10).raise_for_status().json()["series"]["t"]
        assert samples[-1] > up_at, (samples[-5:], up_at)
    # and retention prunes again
    wait_for("retention to prune past the outage", lambda: gateways[0].wal_status()["oldest"] > head_before + 1)
