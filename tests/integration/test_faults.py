"""SIGKILL at bad moments: an instance mid-stream, the gateway mid-stream. Nothing acknowledged is lost."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import chromadb
import httpx

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, on_every_store, snapshot

DIM = 4
API = "/api/v2/tenants/default_tenant/databases/default_database"


def vector(rng: random.Random) -> list[float]:
    return [round(rng.random(), 4) for _ in range(DIM)]


@dataclass
class Writer:
    """Streams add, upsert, update and delete through the gateway, keeping a model of what was acknowledged."""

    port: int
    seed: int
    model: dict[str, tuple[list[float], str]] = field(default_factory=dict)
    uncertain: set[str] = field(default_factory=set)  # ids touched by a write whose outcome is unknown
    acked: int = 0
    failed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng = random.Random(self.seed)
        client = chromadb.HttpClient(host="127.0.0.1", port=self.port)
        col = client.get_collection("stream", embedding_function=None)
        n = 0
        while not self.stop.is_set():
            n += 1
            op = rng.choice(["add", "add", "upsert", "update", "delete"])
            known = sorted(self.model)
            if op == "add" or not known:
                ids = [f"id{n}-{k}" for k in range(rng.randint(1, 5))]
                op = "add"
            else:
                ids = rng.sample(known, min(len(known), rng.randint(1, 3)))
            vectors = [vector(rng) for _ in ids]
            docs = [f"doc {n}" for _ in ids]
            try:
                if op == "delete":
                    col.delete(ids=ids)
                else:
                    getattr(col, op)(ids=ids, embeddings=vectors, documents=docs)
            except Exception as exc:  # the outcome of this write is unknown: leave its ids out of the check
                self.failed.append(f"{op}: {exc}")
                self.uncertain.update(ids)
                try:
                    col = chromadb.HttpClient(host="127.0.0.1", port=self.port).get_collection(
                        "stream", embedding_function=None
                    )
                except Exception:
                    time.sleep(0.2)
                continue
            self.acked += 1
            for i, rid in enumerate(ids):
                if op == "delete":
                    self.model.pop(rid, None)
                else:
                    self.model[rid] = (vectors[i], docs[i])


def start_writer(port: int, seed: int) -> tuple[Writer, threading.Thread]:
    chromadb.HttpClient(host="127.0.0.1", port=port).create_collection("stream", embedding_function=None)
    writer = Writer(port, seed)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    return writer, thread


def assert_matches_model(writer: Writer, servers: list[ChromaServer]) -> None:
    states = [snapshot(s.url)["stream"]["records"] for s in servers]
    assert states[0] == states[1], "instances differ"
    held = states[0]
    for rid, (vec, doc) in writer.model.items():
        if rid in writer.uncertain:
            continue
        assert rid in held, f"acknowledged record {rid} is missing"
        assert held[rid][2] == doc and held[rid][0] == [round(x, 5) for x in vec]
    for rid in held:
        if rid not in writer.uncertain:
            assert rid in writer.model, f"record {rid} was deleted (acknowledged) but is back"


def stop_writer(writer: Writer, thread: threading.Thread) -> None:
    writer.stop.set()
    thread.join(30)
    assert not thread.is_alive(), "the writer did not stop within 30s"


@on_every_store
def test_instance_sigkilled_and_restarted_mid_stream(gateway: GatewayProcess, chroma_pair: list[ChromaServer]) -> None:
    servers = chroma_pair
    writer, thread = start_writer(gateway.port, seed=7)
    stream = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).get_collection("stream", embedding_function=None)
    count_url = f"{gateway.url}{API}/collections/{stream.id}/count"
    time.sleep(1.5)
    servers[0].kill()
    reads = []
    for _ in range(20):  # reads keep working while one instance is dead, from the live one, which is fresh
        answer = httpx.get(count_url, timeout=10)
        reads.append((answer.status_code, answer.headers.get("x-chroma-ha-stale-by"), type(answer.json())))
        time.sleep(0.1)
    servers[0].start()
    time.sleep(1.5)
    stop_writer(writer, thread)
    assert writer.failed == [], "no write may fail while the other instance is up"
    assert writer.acked > 20
    assert reads == [(200, None, int)] * 20, reads
    gateway.wait_drained()
    assert_matches_model(writer, servers)
    assert gateway.wal_status()["divergences"] == []


@on_every_store
def test_gateway_sigkilled_mid_stream_loses_no_acknowledged_write(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    writer, thread = start_writer(gateway.port, seed=11)
    time.sleep(2.0)
    gateway.kill()
    acked_at_kill = writer.acked
    time.sleep(0.5)
    gateway.start()
    time.sleep(1.5)
    stop_writer(writer, thread)
    assert writer.acked > acked_at_kill > 10, "the stream went on before and after the crash"
    gateway.wait_drained()
    assert_matches_model(writer, chroma_pair)
    health = httpx.get(f"{gateway.url}/health").json()
    assert health["healthy_instances"] == "2/2"


def test_a_read_sent_to_a_hung_instance_is_answered_by_the_other(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]
) -> None:
    # No health probes during the test: only the read itself can find out that the first instance hangs. Reads are
    # balanced at random by weight: this weight sends them to the first instance first.
    gateway = gateway_with(
        {"CHROMA_HA_REQUEST_TIMEOUT": "1", "CHROMA_HA_HEALTH_INTERVAL": "60", "CHROMA_HA_INSTANCE_WEIGHTS": "1000000,1"}
    )
    hung, other = chroma_pair
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("hung", embedding_function=None)
    col.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]])
    gateway.wait_drained()
    for _ in range(3):  # kept-alive connections to the instances now wait in the gateway's pool
        assert col.get(ids=["a"])["ids"] == ["a"]
    assert hung.process is not None
    hung.process.send_signal(signal.SIGSTOP)
    try:
        assert col.get(ids=["a"])["ids"] == ["a"]
        status = httpx.get(f"{gateway.url}/status", timeout=10).json()
        assert status["instances"][hung.url]["consecutive_failures"] >= 1, "the read went to the hung one first"
        assert col.query(query_embeddings=[[0.0, 1.0]], n_results=1)["ids"] == [["b"]]
    finally:
        hung.process.send_signal(signal.SIGCONT)
    metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    assert f'chroma_ha_requests_total{{instance="{other.url}",route_class="read",status="200"}}' in metrics


def test_a_read_whose_only_fresh_instance_dies_waits_for_the_other_to_catch_up(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]
) -> None:
    # No health probes: only the read itself finds the dead instance, which health still counts as up.
    gateway = gateway_with({"CHROMA_HA_HEALTH_INTERVAL": "60", "CHROMA_HA_READ_WAIT": "20"})
    fresh, lagging = chroma_pair
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("dies", embedding_function=None)
    col.add(ids=["a"], embeddings=[[1.0, 0.0]])
    gateway.wait_drained()
    assert lagging.process is not None
    lagging.process.send_signal(signal.SIGSTOP)  # it cannot apply what comes next
    resume = threading.Timer(1.0, lagging.process.send_signal, [signal.SIGCONT])
    try:
        col.add(ids=["b"], embeddings=[[0.0, 1.0]])  # acknowledged once `fresh` applied it (ack policy one)
        fresh.kill()  # now no live instance holds the write that reads must see
        resume.start()  # the lagging one applies it a second into the read
        read = httpx.post(
            f"{gateway.url}/api/v2/tenants/default_tenant/databases/default_database/collections/{col.id}/get",
            json={"ids": ["a", "b"], "include": []},
            timeout=30,
        )
    finally:
        resume.cancel()
        lagging.process.send_signal(signal.SIGCONT)
    assert read.status_code == 200, read.text
    assert sorted(read.json()["ids"]) == ["a", "b"]  # the lagging instance caught up and answered
    assert "x-chroma-ha-stale-by" not in read.headers
    status = httpx.get(f"{gateway.url}/status", timeout=10).json()
    assert status["instances"][fresh.url]["consecutive_failures"] >= 1
