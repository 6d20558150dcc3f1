"""The workload: writers that own disjoint keys and write versioned values, readers that read any writer's keys
through any gateway, each operation recorded in the history with its invoke and completion times.

Every key belongs to one writer, which sends one operation at a time, so a key's writes have one order and the
checker knows it. A writer whose write ended indeterminate (the gateway may still log it) leaves those keys alone
for `QUARANTINE_S`, longer than the gateway's write timeout, so that write, if it happens, happens before the
next one on the same keys. Requests are raw HTTP: the official client hides the `x-chroma-ha-stale-by` header and
the body of a 503, which tell a stale read and a write the gateway may still apply from the rest.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from .history import (
    CORRUPT,
    FAILED,
    GROUPS,
    INDETERMINATE,
    OK,
    History,
    Op,
    document_of,
    embedding_of,
    group_of,
)

STALE_HEADER = "x-chroma-ha-stale-by"
REQUEST_TIMEOUT_S = 30.0  # past the gateway's write timeout: the gateway answers first, saying what became of it
QUARANTINE_S = 15.0
RECENT_KEYS = 64
PAUSE_S = 0.02  # between two operations of one thread: leaves the shared machine room to recover from faults
WRITE_MIX = (("upsert", 30), ("add", 15), ("update", 20), ("delete", 15), ("delete_where", 8))


@dataclass(frozen=True)
class Target:
    """Where the workload sends requests: the gateways' base URLs and the collection's canonical id."""

    gateways: Sequence[str]
    collection: str
    tenant: str = "default_tenant"
    database: str = "default_database"

    def url(self, gateway: int, op: str) -> str:
        base = self.gateways[gateway]
        return f"{base}/api/v2/tenants/{self.tenant}/databases/{self.database}/collections/{self.collection}/{op}"


class Connections:
    """One HTTP client per gateway for one thread, replaced when that gateway was restarted: a kept-alive
    connection to a dead process fails its next request without the new process ever seeing it."""

    def __init__(self, generations: list[int]) -> None:
        self._generations = generations
        self._clients: dict[int, tuple[int, httpx.Client]] = {}

    def client(self, gateway: int) -> httpx.Client:
        generation = self._generations[gateway]
        held = self._clients.get(gateway)
        if held is None or held[0] != generation:
            if held is not None:
                held[1].close()
            held = (generation, httpx.Client(timeout=REQUEST_TIMEOUT_S))
            self._clients[gateway] = held
        return held[1]

    def drop(self, gateway: int) -> None:
        held = self._clients.pop(gateway, None)
        if held is not None:
            held[1].close()

    def close(self) -> None:
        for _, client in self._clients.values():
            client.close()
        self._clients.clear()


def keys_of(writer: int, keys_per_writer: int) -> list[str]:
    return [f"w{writer}k{j}" for j in range(keys_per_writer)]


def write_outcome(status: int, text: str) -> str:
    """What a write's answer says became of it."""
    if status < 300:
        return OK
    if status == 503 and "nothing was logged" in text.lower():
        return FAILED
    if 400 <= status < 500:
        return FAILED  # Chroma's own refusal of the payload: recorded as the entry's outcome, applied nowhere
    return INDETERMINATE  # a 503 WriteLogged, a 500: it may have been applied


def error_outcome(exc: httpx.HTTPError) -> str:
    """A request that got no answer: certainly not sent when the connection was never made."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return FAILED
    return INDETERMINATE


class Workload:
    """Writer and reader threads until `stop`; every operation goes into `history`."""

    def __init__(
        self,
        history: History,
        target: Target,
        *,
        seed: int,
        writers: int,
        readers: int,
        keys_per_writer: int,
        generations: list[int],
    ) -> None:
        self._history = history
        self._target = target
        self._seed = seed
        self._writers = writers
        self._readers = readers
        self._keys_per_writer = keys_per_writer
        self._generations = generations
        self._recent: deque[str] = deque(maxlen=RECENT_KEYS)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for w in range(self._writers):
            self._threads.append(threading.Thread(target=self._write_loop, args=(w,), name=f"writer-{w}", daemon=True))
        for r in range(self._readers):
            self._threads.append(threading.Thread(target=self._read_loop, args=(r,), name=f"reader-{r}", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(REQUEST_TIMEOUT_S + 10)

    # --- writers --------------------------------------------------------------------------------------------

    def _write_loop(self, w: int) -> None:
        rng = random.Random(f"{self._seed}-writer-{w}")
        own = keys_of(w, self._keys_per_writer)
        quarantined: dict[str, float] = {}
        kinds = [k for k, _ in WRITE_MIX]
        weights = [n for _, n in WRITE_MIX]
        connections = Connections(self._generations)
        n = 0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                free = [k for k in own if quarantined.get(k, 0.0) <= now]
                kind = rng.choices(kinds, weights)[0]
                if kind == "delete_where" and len(free) < len(own):
                    kind = "delete"
                if not free:
                    time.sleep(0.1)
                    continue
                keys = free if kind == "delete_where" else rng.sample(free, min(len(free), rng.randint(1, 3)))
                n += 1
                version = n * self._writers + w  # unique across writers, increasing per writer
                op = Op(
                    process=f"writer-{w}",
                    kind=kind,
                    keys=sorted(keys),
                    gateway=rng.randrange(len(self._target.gateways)),
                    invoke=0.0,
                    version=None if kind.startswith("delete") else version,
                    group=rng.randrange(GROUPS) if kind == "delete_where" else None,
                )
                self._send_write(connections, op, w)
                if op.outcome == INDETERMINATE:
                    for k in op.keys:
                        quarantined[k] = time.monotonic() + QUARANTINE_S
                elif op.outcome == OK:
                    self._recent.extend(op.keys)
                time.sleep(PAUSE_S)
        finally:
            connections.close()

    def _body(self, op: Op, w: int) -> dict[str, object]:
        if op.kind == "delete":
            return {"ids": op.keys}
        if op.kind == "delete_where":
            return {"where": {"$and": [{"w": w}, {"g": op.group}]}}
        assert op.version is not None
        return {
            "ids": op.keys,
            "embeddings": [embedding_of(k, op.version) for k in op.keys],
            "documents": [document_of(k, op.version) for k in op.keys],
            "metadatas": [{"w": w, "v": op.version, "g": group_of(op.version)} for _ in op.keys],
        }

    def _send_write(self, connections: Connections, op: Op, w: int) -> None:
        route = "delete" if op.kind.startswith("delete") else op.kind
        body = self._body(op, w)
        op.invoke = self._history.now()
        try:
            answer = connections.client(op.gateway).post(self._target.url(op.gateway, route), json=body)
        except httpx.HTTPError as exc:
            op.complete = self._history.now()
            op.outcome, op.error = error_outcome(exc), f"{type(exc).__name__}: {exc}"[:200]
            connections.drop(op.gateway)
        else:
            op.complete = self._history.now()
            op.status = answer.status_code
            op.outcome = write_outcome(answer.status_code, answer.text)
            if op.outcome != OK:
                op.error = answer.text[:300]
        self._history.op(op)

    # --- readers --------------------------------------------------------------------------------------------

    def _read_loop(self, r: int) -> None:
        rng = random.Random(f"{self._seed}-reader-{r}")
        connections = Connections(self._generations)
        try:
            while not self._stop.is_set():
                keys: set[str] = set()
                if self._recent and rng.random() < 0.5:
                    keys.add(rng.choice(list(self._recent)))  # just written: where a stale read would show
                wanted = rng.randint(1, 4)
                while len(keys) < wanted:
                    keys.add(f"w{rng.randrange(self._writers)}k{rng.randrange(self._keys_per_writer)}")
                op = Op(f"reader-{r}", "get", sorted(keys), rng.randrange(len(self._target.gateways)), 0.0)
                self._send_read(connections, op)
                time.sleep(PAUSE_S)
        finally:
            connections.close()

    def _send_read(self, connections: Connections, op: Op) -> None:
        body = {"ids": op.keys, "include": ["metadatas", "documents"]}
        op.invoke = self._history.now()
        try:
            answer = connections.client(op.gateway).post(self._target.url(op.gateway, "get"), json=body)
        except httpx.HTTPError as exc:
            op.complete = self._history.now()
            op.outcome, op.error = FAILED, f"{type(exc).__name__}: {exc}"[:200]
            connections.drop(op.gateway)
            self._history.op(op)
            return
        op.complete = self._history.now()
        op.status = answer.status_code
        op.stale_by = answer.headers.get(STALE_HEADER)
        if answer.status_code != 200:
            op.outcome, op.error = FAILED, answer.text[:300]
        else:
            op.outcome, op.result = OK, read_result(op.keys, answer.json())
        self._history.op(op)


def read_result(keys: Sequence[str], got: dict[str, Any]) -> dict[str, int | None]:
    """The version read for each key asked (None: absent; CORRUPT: a record that does not match its version)."""
    result: dict[str, int | None] = dict.fromkeys(keys)
    ids = got.get("ids") or []
    metadatas = got.get("metadatas") or [None] * len(ids)
    documents = got.get("documents") or [None] * len(ids)
    for rid, meta, doc in zip(ids, metadatas, documents, strict=False):
        version = meta.get("v") if isinstance(meta, dict) else None
        ok = isinstance(version, int) and doc == document_of(rid, version)
        result[rid] = version if ok else CORRUPT
    return result
