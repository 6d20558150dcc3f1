"""The checker: pure functions that judge a recorded history against what the gateway promises.

For each key, the writes are one sequence (a key belongs to one writer, which waits for each answer before it sends
the next operation). A write that `failed` certainly did not happen and is left out; an `indeterminate` one may have
happened, at its place in that sequence. So the states a key may be in after its j-th write form a set `S[j]`:
after an acknowledged write, that write applied to every state of `S[j-1]`; after an indeterminate one, both.

Anomalies, by kind:
- `stale_read`: a read that began after a write was acknowledged returned a state from before it, unmarked; one
  marked by `x-chroma-ha-stale-by` (a stale read or a deleted value) is counted apart, as `stale_marked`, and is no
  anomaly: the gateway said it could not prove the read fresh;
- `resurrected_delete`: a key certainly deleted (an acknowledged delete, nothing since that could bring it back)
  read, or held at the end, with a value;
- `value_never_written`: a version no write had written to that key (a failed one's, one from after the read, or a
  record whose document does not match its version);
- `lost_write`: an acknowledged write missing at the end (the key holds an older state, and no write since explains
  it);
- `divergent_instances`: two instances hold different records once the log is drained;
- `failed_while_available`: an operation that did not succeed while its gateway and at least one instance were up
  (and, for a write, the store), with a grace window after each fault ends: see `excused`.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .history import (
    CORRUPT,
    FAILED,
    OK,
    Fault,
    FinalState,
    Op,
    Recorded,
    document_of,
    group_of,
)

# A fault's effects outlast it: a restarted instance is seen up only after a health probe (a quarter of a second in
# the torture settings) and its applier's backoff (half a second at most); a restarted gateway, or a store back from
# a restart, takes a few seconds to open its pools, take its leases and let writes through again. An operation that
# fails within this many seconds of a fault's end is put down to that fault.
GRACE_S = 5.0
FIRST_SHOWN = 10
TIMELINE_AROUND = 4

INSTANCE_FAULTS = ("instance_kill", "instance_wipe", "instance_pause", "net_slow", "net_lossy")
GATEWAY_FAULTS = ("gateway_kill",)
STORE_FAULTS = ("postgres_restart",)

State = int | None  # a version, or None for an absent key


@dataclass
class Anomaly:
    kind: str
    key: str | None
    message: str
    at: float | None = None
    op: int | None = None
    timeline: list[str] = field(default_factory=list)


@dataclass
class Report:
    seed: int | None
    operations: dict[str, dict[str, int]]
    faults: dict[str, int]
    anomalies: dict[str, int]
    stale_marked: int
    first_anomalies: list[Anomaly]
    latency: dict[str, dict[str, float | int | None]]
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.anomalies

    @property
    def total_operations(self) -> int:
        return sum(sum(by_outcome.values()) for by_outcome in self.operations.values())


def apply(op: Op, state: State) -> State:
    """What one write does to one key, as Chroma 1.5 does it: `add` of an id that exists changes nothing,
    `update` of a missing one changes nothing, deletes of missing ids succeed."""
    if op.kind == "add":
        return op.version if state is None else state
    if op.kind == "upsert":
        return op.version
    if op.kind == "update":
        return op.version if state is not None else None
    if op.kind == "delete":
        return None
    if op.kind == "delete_where":
        return None if state is not None and group_of(state) == op.group else state
    raise ValueError(f"not a write: {op.kind}")


@dataclass
class KeyWrites:
    """One key's writes in order (failed ones left out) and the states possible after each: `states[j]` after the
    first j writes (`states[0]`: absent)."""

    writes: list[Op]
    states: list[frozenset[State]]
    completes: list[float]  # of the acknowledged writes, in order, with their positions in `ok_positions`
    ok_positions: list[int]
    invokes: list[float]

    @classmethod
    def of(cls, writes: Sequence[Op]) -> KeyWrites:
        ordered = sorted((w for w in writes if w.outcome != FAILED), key=lambda w: w.invoke)
        states: list[frozenset[State]] = [frozenset({None})]
        completes: list[float] = []
        ok_positions: list[int] = []
        for j, w in enumerate(ordered, start=1):
            applied = frozenset(apply(w, s) for s in states[-1])
            if w.outcome == OK:
                states.append(applied)
                completes.append(w.complete or w.invoke)
                ok_positions.append(j)
            else:
                states.append(states[-1] | applied)
        return cls(ordered, states, completes, ok_positions, [w.invoke for w in ordered])

    def acknowledged_before(self, t: float) -> int:
        """The position of the last acknowledged write that completed before `t` (0: none). Acknowledged writes
        complete in order, as their writer waits for each."""
        n = bisect.bisect_left(self.completes, t)
        return self.ok_positions[n - 1] if n else 0

    def invoked_before(self, t: float) -> int:
        return bisect.bisect_left(self.invokes, t)

    def allowed(self, start: int, end: int) -> frozenset[State]:
        found: set[State] = set()
        for j in range(start, max(start, end) + 1):
            found |= self.states[j]
        return frozenset(found)


def _judge(key: str, kw: KeyWrites, got: State, first: int, last: int) -> str | None:
    """The anomaly kind of a key seen holding `got` when positions `first`..`last` were allowed; None if fine."""
    allowed = kw.allowed(first, last)
    if got in allowed:
        return None
    if got is not None and got not in kw.allowed(0, last):
        return "value_never_written"
    if got is not None and allowed == {None}:
        return "resurrected_delete"
    return "stale_read"


def _describe(op: Op) -> str:
    what = f"v{op.version}" if op.version is not None else ""
    if op.kind == "delete_where":
        what = f"group {op.group}"
    if op.result is not None:
        what = "read " + ", ".join(f"{k}={v}" for k, v in sorted(op.result.items()))
    stale = f" stale-by {op.stale_by}" if op.stale_by else ""
    end = f"{op.complete:.3f}" if op.complete is not None else "?"
    return (
        f"#{op.index} [{op.invoke:.3f}-{end}] {op.process} {op.kind} {what} via gateway {op.gateway}: "
        f"{op.outcome}{stale}" + (f" ({op.error})" if op.error else "")
    )


def _timeline(key: str, around: float, by_key: dict[str, list[Op]]) -> list[str]:
    ops = by_key.get(key, [])
    n = bisect.bisect_left([o.invoke for o in ops], around)
    return [_describe(o) for o in ops[max(0, n - TIMELINE_AROUND) : n + TIMELINE_AROUND]]


def check_reads(ops: Sequence[Op]) -> tuple[list[Anomaly], int]:
    """Every read against the writes acknowledged before it began; the anomalies and the stale-marked count."""
    writes_by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.is_write:
            for key in op.keys:
                writes_by_key[key].append(op)
    histories = {key: KeyWrites.of(ws) for key, ws in writes_by_key.items()}
    empty = KeyWrites.of([])
    anomalies: list[Anomaly] = []
    stale_marked = 0
    for op in ops:
        if op.is_write or op.outcome != OK or op.result is None:
            continue
        for key, got in sorted(op.result.items()):
            kw = histories.get(key, empty)
            first = kw.acknowledged_before(op.invoke)
            last = kw.invoked_before(op.complete if op.complete is not None else op.invoke)
            kind = "value_never_written" if got == CORRUPT else _judge(key, kw, got, first, last)
            if kind is None:
                continue
            if kind in ("stale_read", "resurrected_delete") and op.stale_by not in (None, "0"):
                stale_marked += 1
                continue
            expected = sorted(kw.allowed(first, last), key=lambda s: -1 if s is None else s)
            anomalies.append(Anomaly(kind, key, f"read {got}, expected one of {expected}", op.invoke, op.index))
    return anomalies, stale_marked


def check_finals(ops: Sequence[Op], finals: Sequence[FinalState]) -> list[Anomaly]:
    """Every key on every instance at the end: the states its writes allow, and records that match their version."""
    writes_by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.is_write:
            for key in op.keys:
                writes_by_key[key].append(op)
    anomalies: list[Anomaly] = []
    for final in finals:
        for key in sorted(writes_by_key.keys() | final.records.keys()):
            kw = KeyWrites.of(writes_by_key.get(key, []))
            record = final.records.get(key)
            got: State = None if record is None else record[0]
            if record is not None and (got is None or record[1] != document_of(key, got)):
                anomalies.append(Anomaly("value_never_written", key, f"{final.instance} holds {record}"))
                continue
            last = len(kw.writes)
            kind = _judge(key, kw, got, last, last)
            if kind == "stale_read":
                kind = "lost_write"  # at the end, a state from before an acknowledged write means that write is lost
            if kind is not None:
                expected = sorted(kw.states[last], key=lambda s: -1 if s is None else s)
                anomalies.append(Anomaly(kind, key, f"{final.instance} holds {got} at the end, expected {expected}"))
    return anomalies


def check_convergence(finals: Sequence[FinalState]) -> list[Anomaly]:
    """Every instance holds what the first one holds, record for record."""
    if len(finals) < 2:
        return []
    first, *others = finals
    anomalies = []
    for other in others:
        differing = sorted(
            k for k in first.records.keys() | other.records.keys() if first.records.get(k) != other.records.get(k)
        )
        if differing:
            shown = {k: (first.records.get(k), other.records.get(k)) for k in differing[:3]}
            anomalies.append(
                Anomaly(
                    "divergent_instances",
                    differing[0],
                    f"{other.instance} differs from {first.instance} on {len(differing)} keys, e.g. {shown}",
                )
            )
    return anomalies


def _store_refused(op: Op) -> bool:
    """A read answered 503 because it had to ask the log while it was down (its ids to learn): documented."""
    return op.status == 503 and "write-ahead log is unreachable" in str(op.error)


def excused(op: Op, faults: Sequence[Fault], instances: int, grace: float = GRACE_S) -> bool:
    """Was the operation's failure put down to a fault? Its gateway was down, or (for a write) the store, or every
    instance was faulted, at some point of the operation's window or within `grace` seconds before it began."""
    start, end = op.invoke, op.complete if op.complete is not None else op.invoke
    faulted: set[str] = set()
    for f in faults:
        f_end = f.end if f.end is not None else float("inf")
        if f.start > end or f_end + grace < start:
            continue
        if f.kind in GATEWAY_FAULTS and f.target == f"gateway-{op.gateway}":
            return True
        if f.kind in STORE_FAULTS and (op.is_write or _store_refused(op)):
            return True
        if f.kind in INSTANCE_FAULTS:
            faulted.add(f.target)
    return len(faulted) >= instances


def check_availability(ops: Sequence[Op], faults: Sequence[Fault], instances: int, grace: float) -> list[Anomaly]:
    return [
        Anomaly(
            "failed_while_available",
            op.keys[0] if op.keys else None,
            f"{op.kind} {op.outcome} ({op.status}: {op.error}) with its gateway and an instance up",
            op.invoke,
            op.index,
        )
        for op in ops
        if op.outcome != OK and not excused(op, faults, instances, grace)
    ]


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _during_faults(op: Op, windows: Sequence[tuple[float, float]]) -> bool:
    end = op.complete if op.complete is not None else op.invoke
    return any(start <= end and op.invoke <= stop for start, stop in windows)


def latencies(ops: Iterable[Op], faults: Sequence[Fault]) -> dict[str, dict[str, float | int | None]]:
    """p50 and p99 in milliseconds of successful reads and writes, overall and while a fault was on."""
    windows = [(f.start, f.end if f.end is not None else float("inf")) for f in faults]
    groups: dict[str, list[float]] = defaultdict(list)
    for op in ops:
        if op.outcome != OK or op.complete is None:
            continue
        side = "write" if op.is_write else "read"
        groups[side].append(op.latency)
        if _during_faults(op, windows):
            groups[f"{side}_during_faults"].append(op.latency)
    shown: dict[str, dict[str, float | int | None]] = {}
    for name in ("read", "write", "read_during_faults", "write_during_faults"):
        values = groups.get(name, [])
        p50, p99 = _percentile(values, 0.50), _percentile(values, 0.99)
        shown[name] = {
            "count": len(values),
            "p50_ms": None if p50 is None else round(p50 * 1000, 1),
            "p99_ms": None if p99 is None else round(p99 * 1000, 1),
        }
    return shown


def check(recorded: Recorded, grace: float = GRACE_S) -> Report:
    """The whole judgement of one history."""
    ops = recorded.ops
    instances = int(recorded.meta.get("instances", 1))
    read_anomalies, stale_marked = check_reads(ops)
    anomalies = (
        read_anomalies
        + check_finals(ops, recorded.finals)
        + check_convergence(recorded.finals)
        + check_availability(ops, recorded.faults, instances, grace)
    )
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in sorted(ops, key=lambda o: o.invoke):
        for key in op.keys:
            by_key[key].append(op)
    anomalies.sort(key=lambda a: (a.at is None, a.at or 0.0))
    first = anomalies[:FIRST_SHOWN]
    for a in first:
        if a.key is not None:
            a.timeline = _timeline(a.key, a.at if a.at is not None else float("inf"), by_key)
    operations: dict[str, dict[str, int]] = defaultdict(dict)
    for (kind, outcome), n in sorted(Counter((o.kind, o.outcome or "?") for o in ops).items()):
        operations[kind][outcome] = n
    return Report(
        seed=recorded.meta.get("seed"),
        operations=dict(operations),
        faults=dict(sorted(Counter(f.kind for f in recorded.faults).items())),
        anomalies=dict(sorted(Counter(a.kind for a in anomalies).items())),
        stale_marked=stale_marked,
        first_anomalies=first,
        latency=latencies(ops, recorded.faults),
        notes={"instances_compared": len(recorded.finals), "grace_s": grace},
    )
