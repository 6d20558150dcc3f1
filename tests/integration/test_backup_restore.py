"""Backup and point-in-time restore against real Chroma servers, gateway processes and the official client.

A model kept by the test knows every acknowledged write and its seq (one writer, so the log holds its writes in
the order they were acknowledged, one entry each); the state at any seq is the model replayed up to it."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chromadb
import orjson
import pytest

from chroma_ha.backup.segments import archived_lines, check_segments, load_archive
from chroma_ha.local_cluster import ChromaServer
from chroma_ha.settings import Settings
from chroma_ha.store import open_store
from tests.harness import GatewayProcess, admin_client, on_every_store, on_postgres, run_cli, snapshot, wait_for

TENANT, DATABASE = "acme", "projects"
SCOPES = [("default_tenant", "default_database"), (TENANT, DATABASE)]
Key = tuple[str, str, str]  # tenant, database, collection name
Record = tuple[list[float] | None, dict[str, Any] | None, str | None]


@dataclass
class Write:
    op: str
    key: Key
    ids: list[str] = field(default_factory=list)
    embeddings: list[list[float]] = field(default_factory=list)
    metadatas: list[dict[str, Any]] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)
    seq: int = 0


def state_at(writes: list[Write], seq: int) -> dict[Key, dict[str, Record]]:
    """Every collection's records once the writes up to `seq` are applied, as Chroma applies them."""
    state: dict[Key, dict[str, Record]] = {}
    for w in writes:
        if w.seq > seq:
            break
        if w.op == "create_collection":
            state.setdefault(w.key, {})
        elif w.op == "delete_collection":
            state.pop(w.key, None)
        elif w.op in ("add", "upsert"):
            records = state[w.key]
            for n, rid in enumerate(w.ids):
                if w.op == "upsert" or rid not in records:
                    records[rid] = (w.embeddings[n], w.metadatas[n], w.documents[n])
        elif w.op == "update":
            records = state[w.key]
            for n, rid in enumerate(w.ids):
                if rid in records:  # every metadata has the same keys: a merge replaces them all
                    records[rid] = (w.embeddings[n], w.metadatas[n], w.documents[n])
        elif w.op == "delete":
            for rid in w.ids:
                state[w.key].pop(rid, None)
    return state


def held(url: str) -> dict[Key, dict[str, Record]]:
    found: dict[Key, dict[str, Record]] = {}
    for tenant, database in SCOPES:
        for name, c in snapshot(url, tenant, database).items():
            found[(tenant, database, name)] = {rid: (e, m, d) for rid, (e, m, d, _) in c["records"].items()}
    return found


def assert_state(url: str, expected: dict[Key, dict[str, Record]]) -> None:
    """The instance holds exactly these collections and records; embeddings within float32 precision (a cosine
    collection reads its vectors back as norm * unit vector)."""
    got = held(url)
    assert got.keys() == expected.keys(), url
    for key, records in expected.items():
        assert got[key].keys() == records.keys(), (url, key, sorted(got[key].keys() ^ records.keys())[:10])
        for rid, (embedding, metadata, document) in records.items():
            their_embedding, their_metadata, their_document = got[key][rid]
            assert (their_metadata, their_document) == (metadata, document), (url, key, rid)
            assert embedding is not None and their_embedding is not None
            assert all(abs(x - y) <= 1e-4 for x, y in zip(embedding, their_embedding, strict=True)), (key, rid)


class Writer:
    """One client writing through the gateway, each write recorded once acknowledged."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.writes: list[Write] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._random = random.Random(16)
        self._clients = {SCOPES[0]: chromadb.HttpClient(host="127.0.0.1", port=port)}  # the other: once seeded
        self._sides: list[str] = []
        self._step = 0

    def collection(self, key: Key) -> Any:
        return self._clients[(key[0], key[1])].get_collection(key[2], embedding_function=None)

    def records(self, op: str, key: Key, ids: list[str], *, document: str) -> None:
        n = self._step
        embeddings = [[float((n + i) % 7), 1.0, 0.5 + (i % 3)] for i in range(len(ids))]
        metadatas = [{"n": n, "v": f"{op}-{i}"} for i in range(len(ids))]
        documents = [f"{document} {n}"] * len(ids)
        col = self.collection(key)
        if op == "add":
            col.add(ids=ids, embeddings=embeddings, metadatas=metadatas, documents=documents)
        elif op == "upsert":
            col.upsert(ids=ids, embeddings=embeddings, metadatas=metadatas, documents=documents)
        elif op == "update":
            col.update(ids=ids, embeddings=embeddings, metadatas=metadatas, documents=documents)
        else:
            col.delete(ids=ids)
        self.writes.append(Write(op, key, ids, embeddings, metadatas, documents))

    def create(self, key: Key, **options: Any) -> None:
        self._clients[(key[0], key[1])].create_collection(key[2], embedding_function=None, **options)
        self.writes.append(Write("create_collection", key))

    def drop(self, key: Key) -> None:
        self._clients[(key[0], key[1])].delete_collection(key[2])
        self.writes.append(Write("delete_collection", key))

    def seed(self, records: int) -> None:
        admin = admin_client(self.port)
        admin.create_tenant(TENANT)
        self.writes.append(Write("create_tenant", ("", "", "")))
        admin.create_database(DATABASE, tenant=TENANT)
        self.writes.append(Write("create_database", ("", "", "")))
        self._clients[(TENANT, DATABASE)] = chromadb.HttpClient(
            host="127.0.0.1", port=self.port, tenant=TENANT, database=DATABASE
        )
        self.create(MAIN, metadata={"kind": "main"}, configuration={"hnsw": {"space": "cosine"}})
        self.create(TICKETS)
        for start in range(0, records, 100):
            self.records("add", MAIN, [f"seed-{n}" for n in range(start, start + 100)], document="seed")
        self.records("add", TICKETS, ["t-0", "t-1"], document="ticket")

    def live(self, key: Key) -> list[str]:
        return sorted(state_at(self.writes, sys.maxsize)[key])

    def step(self) -> None:
        self._step += 1
        n = self._step
        if n % 40 == 5:
            side = ("default_tenant", "default_database", f"side-{n}")
            self.create(side)
            self.records("add", side, [f"s-{n}"], document="side")
            self._sides.append(side[2])
        elif n % 40 == 25 and self._sides:
            self.drop(("default_tenant", "default_database", self._sides.pop(0)))
        elif n % 4 == 0:
            self.records("add", MAIN, [f"w-{n}", f"w-{n}-b"], document="added")
        elif n % 4 == 1:
            self.records("update", MAIN, self._random.sample(self.live(MAIN), 2), document="updated")
        elif n % 4 == 2:
            self.records("delete", MAIN, self._random.sample(self.live(MAIN), 3), document="")
        else:
            ids = [self._random.choice(["t-0", "t-1", f"t-{n}"])]
            self.records("upsert", TICKETS, ids, document="ticket")

    def count(self) -> int:
        """The writes acknowledged so far; the writer's error, if it failed."""
        if self.error is not None:
            raise AssertionError(f"the writer failed: {self.error!r}")
        return len(self.writes)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.step()
        except BaseException as exc:  # the test reports it
            self.error = exc

    def assign_seqs(self, store_url: str) -> None:
        """Each write's seq, from the log: its entries are the writes, in order."""

        async def read() -> list[tuple[int, str]]:
            store = open_store(Settings.load({"store": store_url}, env={}))
            await store.open()
            try:
                found, after = [], 0
                while entries := await store.read_keys(after, 1000):
                    found.extend((e.seq, e.op) for e in entries)
                    after = entries[-1].seq
                return found
            finally:
                await store.close()

        logged = asyncio.run(read())
        assert [op for _, op in logged] == [w.op for w in self.writes]
        for w, (seq, _) in zip(self.writes, logged, strict=True):
            w.seq = seq


MAIN: Key = ("default_tenant", "default_database", "main")
TICKETS: Key = (TENANT, DATABASE, "tickets")


@pytest.fixture
def empty_cluster(tmp_path: Path, chroma_pair: list[ChromaServer]) -> Any:
    """Wipes every instance and starts a fresh gateway (a new store) in front of them; stopped at teardown."""
    started: list[GatewayProcess] = []

    def start(name: str) -> GatewayProcess:
        for server in chroma_pair:
            server.wipe()
            server.start()
        gateway = GatewayProcess([s.url for s in chroma_pair], f"sqlite:///{tmp_path / name}.db", tmp_path / name)
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        gateway.stop()


def manifest_of(folder: Path) -> dict[str, Any]:
    return orjson.loads((folder / "manifest.json").read_bytes())


def restore(gateway: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(gateway, "restore", "--url", gateway.url, *args)


@on_every_store
def test_a_backup_under_writes_restores_to_its_end_and_with_the_archive_to_any_later_seq(
    gateway_with: Callable[..., GatewayProcess], empty_cluster: Callable[[str], GatewayProcess], tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    secrets = {"CHROMA_HA_ADMIN_TOKEN": "admin-secret-4417", "CHROMA_HA_INSTANCE_HEADERS": "X-Probe: hush-9931"}
    gateway = gateway_with({"CHROMA_HA_ARCHIVE_DIR": str(archive), "CHROMA_HA_ARCHIVE_INTERVAL": "0.5", **secrets})
    writer = Writer(gateway.port)
    writer.seed(1500)
    thread = threading.Thread(target=writer.run, name="writer")
    thread.start()
    backup = tmp_path / "backup"
    try:
        wait_for("writes to stream", lambda: writer.count() > 60, 60)
        taken = run_cli(gateway, "backup", "--to", str(backup), "--page-size", "10")
        assert taken.returncode == 0, taken.stdout + taken.stderr
        written = len(writer.writes)
        wait_for("writes after the backup", lambda: writer.count() > written + 40, 120)
    finally:
        writer.stop.set()
        thread.join(60)
    assert writer.error is None, writer.error
    head = gateway.wait_drained()["head"]
    writer.assign_seqs(gateway.store)
    manifest = manifest_of(backup)
    assert manifest["start_seq"] < manifest["consistent_seq"] <= manifest["end_seq"] < head, taken.stdout
    wait_for(
        "the archive to hold the whole log",
        lambda: orjson.loads((archive / "archive.json").read_bytes())["segments"][-1]["last"],
        60,
        until=lambda last: last >= head,
        ignoring=(FileNotFoundError, IndexError),
    )
    for path in [*backup.rglob("*"), *archive.rglob("*")]:
        if path.is_file():  # entries hold no credential: neither the gateway's own nor its instances'
            assert b"admin-secret-4417" not in path.read_bytes() and b"hush-9931" not in path.read_bytes(), path
    original = snapshot(gateway.instances[0])["main"]
    checked = run_cli(gateway, "backup", "--check", str(backup))
    assert checked.returncode == 0 and "OK" in checked.stdout, checked.stdout + checked.stderr
    gateway.stop()

    restored = empty_cluster("restored")
    done = restore(restored, "--from", str(backup))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every instance holds the same data" in done.stdout
    at_backup = state_at(writer.writes, manifest["end_seq"])
    assert at_backup != state_at(writer.writes, head)  # writes after the backup point were made: none is back
    for url in restored.instances:
        assert_state(url, at_backup)
    main = snapshot(restored.instances[0])["main"]
    assert (main["metadata"], main["configuration"]) == (original["metadata"], original["configuration"])
    again = restore(restored, "--from", str(backup))
    assert again.returncode == 1 and "the target is not empty" in again.stderr, again.stdout + again.stderr
    too_early = restore(restored, "--from", str(backup), "--to-seq", str(manifest["consistent_seq"] - 1))
    assert too_early.returncode == 1 and "where this backup becomes consistent" in too_early.stderr
    restored.stop()

    later = [w.seq for w in writer.writes if w.seq > manifest["end_seq"]]
    middle = later[len(later) // 2]
    recovered = empty_cluster("recovered")
    done = restore(recovered, "--from", str(backup), "--archive", str(archive), "--to-seq", str(middle))
    assert done.returncode == 0, done.stdout + done.stderr
    for url in recovered.instances:
        assert_state(url, state_at(writer.writes, middle))


def cli_environment(gateway: GatewayProcess) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_HA_")}
    env.update({"CHROMA_HA_INSTANCES": ",".join(gateway.instances), "CHROMA_HA_STORE": gateway.store})
    return env


def test_a_killed_backup_resumes_and_a_corrupted_one_is_refused_naming_the_file(
    gateway: GatewayProcess, empty_cluster: Callable[[str], GatewayProcess], tmp_path: Path
) -> None:
    writer = Writer(gateway.port)
    writer.seed(3000)
    backup = tmp_path / "backup.tar.gz"
    records = tmp_path / "backup.tar.gz.partial.d" / "records"
    command = [sys.executable, "-m", "chroma_ha", "backup", "--to", str(backup), "--page-size", "20"]
    process = subprocess.Popen(
        command, env=cli_environment(gateway), cwd=gateway.workdir, start_new_session=True, stdin=subprocess.DEVNULL
    )
    try:
        wait_for("the backup to copy some pages", lambda: len(list(records.rglob("*.json"))) >= 10, 120)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
    assert not backup.exists()
    copied = len(list(records.rglob("*.json")))
    assert copied < 3000 // 20  # it was stopped mid-way
    for _ in range(30):
        writer.step()  # writes go on between the two runs
    done = run_cli(gateway, "backup", "--to", str(backup), "--page-size", "20")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(resumed)" in done.stdout
    checked = run_cli(gateway, "backup", "--check", str(backup))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    gateway.wait_drained()
    writer.assign_seqs(gateway.store)

    unpacked = tmp_path / "unpacked"
    with tarfile.open(backup) as tar:
        tar.extractall(unpacked, filter="data")
    manifest = manifest_of(unpacked)
    assert sum(c["records"] for c in manifest["collections"]) >= 3000 - 30
    page = unpacked / sorted(f for f in manifest["files"] if f.startswith("records/"))[3]
    data = bytearray(page.read_bytes())
    data[len(data) // 2] ^= 0x01
    page.write_bytes(bytes(data))
    gateway.stop()

    target = empty_cluster("target")
    refused = restore(target, "--from", str(unpacked))
    assert refused.returncode == 1 and f"{page} is corrupted" in refused.stderr, refused.stdout + refused.stderr
    checked = run_cli(target, "backup", "--check", str(unpacked))
    assert checked.returncode == 1 and f"{page} is corrupted" in checked.stderr
    done = restore(target, "--from", str(backup))
    assert done.returncode == 0, done.stdout + done.stderr
    for url in target.instances:
        assert_state(url, state_at(writer.writes, manifest["end_seq"]))


def archived_seqs(archive: Path) -> list[int]:
    manifest = load_archive(archive)
    assert manifest is not None
    check_segments(archive, manifest)
    return [line["seq"] for line in archived_lines(archive, manifest, 0)]


@on_postgres
def test_two_gateways_on_postgres_archive_each_entry_once_and_the_survivor_takes_over(
    gateway_with: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    env = {"CHROMA_HA_ARCHIVE_DIR": str(archive), "CHROMA_HA_ARCHIVE_INTERVAL": "0.3", "CHROMA_HA_LEASE_TTL": "2"}
    first, second = gateway_with(env), gateway_with(env)
    col = chromadb.HttpClient(host="127.0.0.1", port=first.port).create_collection("archived", embedding_function=None)
    for n in range(40):
        col.upsert(ids=[f"a{n}"], embeddings=[[float(n), 1.0]])
    head = first.wait_drained()["head"]
    wait_for("the archive to reach the head", lambda: archived_seqs(archive), 60, until=lambda s: s[-1:] == [head])

    first.kill()
    col = chromadb.HttpClient(host="127.0.0.1", port=second.port).get_collection("archived", embedding_function=None)
    for n in range(40):
        col.upsert(ids=[f"b{n}"], embeddings=[[float(n), 2.0]])
    head = second.wait_drained()["head"]
    seqs = wait_for("the survivor to archive", lambda: archived_seqs(archive), 60, until=lambda s: s[-1:] == [head])
    assert seqs == list(range(1, head + 1))  # every entry once, in order, across both gateways
    shown = wait_for("/wal/status to show it", lambda: second.wal_status()["archive"], 30,
                     until=lambda a: a["archived_upto"] == head)  # fmt: skip
    assert shown == {"folder": str(archive), "archived_upto": head, "archiving": True}


def test_pruning_waits_for_the_archive_and_goes_on_once_it_has_the_entries(
    gateway_with: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    archive.write_text("a file where the folder should be: the archiver fails until it is gone")
    gateway = gateway_with({"CHROMA_HA_ARCHIVE_DIR": str(archive), "CHROMA_HA_RETENTION": "0.2"})
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("pruned", embedding_function=None)
    for n in range(20):
        col.add(ids=[f"p{n}"], embeddings=[[float(n), 1.0]])
    head = gateway.wait_drained()["head"]
    time.sleep(1.5)  # several retention windows: every instance applied the entries, the archive has none
    status = gateway.wal_status()
    assert status["oldest"] == 1 and status["archive"]["archived_upto"] == 0, status

    archive.unlink()
    wait_for("the archive to take every entry", lambda: archived_seqs(archive), 60,
             until=lambda seqs: seqs[-1:] == [head], ignoring=(FileNotFoundError, AssertionError))  # fmt: skip
    assert archived_seqs(archive) == list(range(1, head + 1))
    wait_for("pruning to go on", lambda: gateway.wal_status()["oldest"], 30, until=lambda oldest: oldest > head)
