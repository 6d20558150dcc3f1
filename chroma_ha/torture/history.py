"""The record of a run: every operation with the times it was invoked and completed, every fault with its window,
and what each instance held at the end. Append-only, written as JSON lines, so a run can be checked again offline.

Times are seconds on one monotonic clock of the recording process (`History.now`), so the order of an operation's
completion and another's invocation is exact; the wall-clock start is in the run's first line.

Outcomes:
- `ok`: the gateway answered with success; the operation happened.
- `failed`: it certainly did not happen (the connection was refused, or a 503 that says nothing was logged).
- `indeterminate`: it may or may not have happened (a timeout, a broken connection, a 503 "logged").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

OK = "ok"
FAILED = "failed"
INDETERMINATE = "indeterminate"
OUTCOMES = (OK, FAILED, INDETERMINATE)

WRITE_KINDS = ("add", "upsert", "update", "delete", "delete_where")
READ_KINDS = ("get",)

# A record's group is its version's residue: `delete_where` deletes, of its writer's keys, those whose current value
# falls in one group, so what it deletes depends on the state, as a real delete by `where` does.
GROUPS = 3
CORRUPT = -1  # the version recorded for a record whose document or metadata does not match its version


def group_of(version: int) -> int:
    return version % GROUPS


def document_of(key: str, version: int) -> str:
    return f"{key}@{version}"


def embedding_of(key: str, version: int) -> list[float]:
    """Explicit embeddings (Chroma's default embedding function needs a download), exact in float32."""
    return [float(version % 4096), float(len(key)), float(sum(map(ord, key)) % 256), 1.0]


@dataclass
class Op:
    """One operation. Writes: `keys` and the `version` they write (`group` for `delete_where`, which deletes those
    of `keys` whose current version is in that group). Reads: `result` maps each key asked to the version read
    (None: absent), `stale_by` is the `x-chroma-ha-stale-by` header when the answer had one."""

    process: str
    kind: str
    keys: list[str]
    gateway: int
    invoke: float
    version: int | None = None
    group: int | None = None
    complete: float | None = None
    outcome: str | None = None
    status: int | None = None
    error: str | None = None
    result: dict[str, int | None] | None = None
    stale_by: str | None = None
    index: int = -1

    @property
    def is_write(self) -> bool:
        return self.kind in WRITE_KINDS

    @property
    def latency(self) -> float:
        return (self.complete or self.invoke) - self.invoke


@dataclass
class Fault:
    """One fault of the nemesis, from `start` to `end`, on `target` (an instance, a gateway or the store)."""

    kind: str
    target: str
    start: float
    end: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class FinalState:
    """What one instance held once the log was drained: key -> (version, document, embedding, metadata)."""

    instance: str
    records: dict[str, list[Any]]


@dataclass
class Recorded:
    """A whole history, as the checker reads it."""

    meta: dict[str, Any]
    ops: list[Op]
    faults: list[Fault]
    finals: list[FinalState]


class History:
    """Appends records to a JSON-lines file as they complete; thread-safe. The in-memory copy is what `recorded`
    returns; the file is the same, line for line."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._origin = time.monotonic()
        self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 - closed by close()
        self._meta = {**meta, "wall_start": time.time()}
        self._ops: list[Op] = []
        self._faults: list[Fault] = []
        self._finals: list[FinalState] = []
        self._write("meta", self._meta)

    def now(self) -> float:
        return time.monotonic() - self._origin

    def _write(self, kind: str, body: dict[str, Any]) -> None:
        self._file.write(orjson.dumps({"type": kind, **body}) + b"\n")
        self._file.flush()

    def op(self, op: Op) -> None:
        """Record a completed operation."""
        with self._lock:
            op.index = len(self._ops)
            self._ops.append(op)
            self._write("op", asdict(op))

    def fault(self, fault: Fault) -> None:
        """Record a fault once it has ended (or at the end of the run, still open)."""
        with self._lock:
            self._faults.append(fault)
            self._write("fault", asdict(fault))

    def final(self, state: FinalState) -> None:
        with self._lock:
            self._finals.append(state)
            self._write("final", asdict(state))

    def note(self, **fields: Any) -> None:
        """Anything else worth keeping with the run (the seed's schedule, what the run waited for)."""
        with self._lock:
            self._meta.update(fields)
            self._write("note", fields)

    def recorded(self) -> Recorded:
        with self._lock:
            return Recorded(dict(self._meta), list(self._ops), list(self._faults), list(self._finals))

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                yield orjson.loads(line)


def load(path: Path) -> Recorded:
    """A history file read back, to check a run again offline."""
    return parse(_lines(path))


def parse(lines: Iterable[dict[str, Any]]) -> Recorded:
    meta: dict[str, Any] = {}
    ops: list[Op] = []
    faults: list[Fault] = []
    finals: list[FinalState] = []
    for line in lines:
        kind = line.pop("type")
        if kind in ("meta", "note"):
            meta.update(line)
        elif kind == "op":
            ops.append(Op(**line))
        elif kind == "fault":
            faults.append(Fault(**line))
        elif kind == "final":
            finals.append(FinalState(**line))
    return Recorded(meta, ops, faults, finals)
