"""Changing the instances while the gateway serves, against real Chroma servers and the official client: while a
writer streams and a reader reads, a third instance is added (bootstrapped from an in-sync one, the log having been
pruned), ends identical and then serves reads (the two others stopped with SIGSTOP); the two original instances are
replaced by new ones, one at a time; no client sees an error, nothing acknowledged is lost, and a restarted gateway
keeps the store's list rather than the configured one. The same with two gateways on one PostgreSQL, each change made
through one gateway and honoured by the other."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import chromadb
import httpx

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, on_postgres, running_chroma, wait_for, wait_until_identical

MEMBERS_ENV = {"CHROMA_HA_MEMBERSHIP_POLL": "0.2", "CHROMA_HA_RETENTION": "1"}  # a log pruned as it goes
COLLECTION = "stream"


class Traffic:
    """A writer adding records through one gateway and a reader reading each one back through another (or the
    same), both with the official client, until stopped; what the writer had acknowledged, and every error."""

    def __init__(self, writer_port: int, reader_port: int) -> None:
        writer = chromadb.HttpClient(host="127.0.0.1", port=writer_port)
        self._write = writer.get_or_create_collection(COLLECTION, embedding_function=None)
        self._read = chromadb.HttpClient(host="127.0.0.1", port=reader_port).get_collection(
            COLLECTION, embedding_function=None
        )
        self.acknowledged: list[str] = []
        self.errors: list[str] = []
        self._next = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _writing(self) -> None:
        while not self._stop.is_set():
            ids = [f"w{self._next + n}" for n in range(5)]
            self._next += 5
            try:
                self._write.add(
                    ids=ids, embeddings=[[float(len(self.acknowledged)), 1.0]] * 5, documents=[f"d {i}" for i in ids]
                )
            except Exception as exc:
                self.errors.append(f"write {ids[0]}: {exc!r}")
            else:
                self.acknowledged.extend(ids)

    def _reading(self) -> None:
        while not self._stop.is_set():
            if not self.acknowledged:
                continue
            wanted = self.acknowledged[-1]
            try:
                got = self._read.get(ids=[wanted])["ids"]
            except Exception as exc:
                self.errors.append(f"read {wanted}: {exc!r}")
            else:
                if got != [wanted]:
                    self.errors.append(f"read {wanted}: answered {got}")

    @contextlib.contextmanager
    def running(self) -> Iterator[Traffic]:
        self._stop.clear()
        self._threads = [threading.Thread(target=t, daemon=True) for t in (self._writing, self._reading)]
        for thread in self._threads:
            thread.start()
        try:
            wait_for("some writes to go through", lambda: len(self.acknowledged) >= 20, timeout=30)
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(timeout=60)


def members(gateway: GatewayProcess) -> dict[str, str]:
    answer = httpx.get(f"{gateway.url}/instances", headers=gateway.admin_headers, timeout=10).raise_for_status()
    return {i["url"]: i["state"] for i in answer.json()["instances"]}


def add(through: GatewayProcess, server: ChromaServer, *seen_by: GatewayProcess) -> None:
    """Add the instance through one gateway; wait until every gateway sees it active."""
    answer = httpx.post(f"{through.url}/instances", json={"url": server.url}, headers=through.admin_headers, timeout=30)
    assert answer.status_code == 202, answer.text
    for gateway in (through, *seen_by):
        wait_for(
            f"{gateway.url} to see {server.url} active",
            lambda g=gateway: members(g).get(server.url),
            120,
            until=lambda state: state == "active",
        )


def remove(through: GatewayProcess, server: ChromaServer, *seen_by: GatewayProcess) -> None:
    answer = httpx.post(
        f"{through.url}/instances/remove", json={"url": server.url}, headers=through.admin_headers, timeout=60
    )
    assert answer.status_code == 200 and answer.json()["state"] == "removed", answer.text
    for gateway in (through, *seen_by):
        wait_for(f"{gateway.url} to forget {server.url}", lambda g=gateway: server.url not in members(g), 30)
        assert server.url not in gateway.wal_status()["instances"]


def everything_acknowledged_is_on(traffic: Traffic, servers: list[ChromaServer]) -> None:
    state = wait_until_identical([s.url for s in servers], timeout=120)
    missing = set(traffic.acknowledged) - set(state[COLLECTION]["records"])
    assert not missing, f"{len(missing)} acknowledged records missing, e.g. {sorted(missing)[:5]}"


def served_by_alone(gateway: GatewayProcess, server: ChromaServer, others: list[ChromaServer], ids: list[str]) -> None:
    """With every other instance stopped (SIGSTOP), a read through the gateway is answered: by `server`."""
    for other in others:
        assert other.process is not None
        os.kill(other.process.pid, signal.SIGSTOP)
    try:
        wait_for(
            "the gateway to see the stopped instances down",
            lambda: httpx.get(f"{gateway.url}/health", headers=gateway.admin_headers, timeout=10).json()["instances"],
            30,
            until=lambda shown: [url for url, i in shown.items() if i["up"]] == [server.url],
        )
        col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).get_collection(
            COLLECTION, embedding_function=None
        )
        assert sorted(col.get(ids=ids)["ids"]) == sorted(ids)
    finally:
        for other in others:
            assert other.process is not None
            os.kill(other.process.pid, signal.SIGCONT)


@contextlib.contextmanager
def more_chroma(tmp_path: Path, count: int) -> Iterator[list[ChromaServer]]:
    with running_chroma(tmp_path / "more", count) as servers:
        yield servers


def test_add_serve_remove_and_replace_both_instances_while_writing(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer], tmp_path: Path
) -> None:
    a, b = chroma_pair
    gateway = gateway_with(MEMBERS_ENV)
    traffic = Traffic(gateway.port, gateway.port)
    with more_chroma(tmp_path, 2) as (c, d):
        with traffic.running():
            wait_for("the log to be pruned", lambda: gateway.wal_status()["oldest"] > 1, 30)
            add(gateway, c)
        bootstrap: dict[str, Any] = gateway.wal_status()["bootstrap"][c.url]
        assert bootstrap["state"] == "done" and bootstrap["source"] in (a.url, b.url), bootstrap
        gateway.wait_drained()
        everything_acknowledged_is_on(traffic, [a, b, c])
        served_by_alone(gateway, c, [a, b], traffic.acknowledged[-20:])

        with traffic.running():  # replace a, then b, while writing
            remove(gateway, a)
            add(gateway, d)
            remove(gateway, b)
        gateway.wait_drained()
        assert traffic.errors == []
        assert set(members(gateway)) == {c.url, d.url}
        everything_acknowledged_is_on(traffic, [c, d])

        gateway.stop()  # configured with a and b: the store's list (c, d) wins
        restarted = gateway_with(MEMBERS_ENV)
        assert members(restarted) == {c.url: "active", d.url: "active"}
        assert set(httpx.get(f"{restarted.url}/health", timeout=10).json()["instances"]) == {c.url, d.url}
        col = chromadb.HttpClient(host="127.0.0.1", port=restarted.port).get_collection(
            COLLECTION, embedding_function=None
        )
        assert col.count() == len(traffic.acknowledged)


@on_postgres
def test_two_gateways_on_postgres_follow_each_others_changes_while_writing(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer], tmp_path: Path
) -> None:
    a, b = chroma_pair
    first, second = gateway_with(MEMBERS_ENV), gateway_with(MEMBERS_ENV)
    traffic = Traffic(first.port, second.port)  # written through one, read back through the other
    with more_chroma(tmp_path, 2) as (c, d):
        with traffic.running():
            add(first, c, second)
            remove(second, a, first)
            add(second, d, first)
            remove(first, b, second)
        assert traffic.errors == []
        first.wait_drained()
        second.wait_drained()
        assert members(first) == members(second) == {c.url: "active", d.url: "active"}
        everything_acknowledged_is_on(traffic, [c, d])
        second.stop()
        assert set(members(gateway_with(MEMBERS_ENV))) == {c.url, d.url}
