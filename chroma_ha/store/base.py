"""The store contract: the log, the cursors, the catalog of collection ids, divergences, leases, recommendations.

Three backends implement `LogStore`: SQLite (one gateway), PostgreSQL (several gateways) and memory (unit tests,
no I/O). One behavioural contract suite (tests/contract) runs against all three.

Ordering guarantee every backend gives: `append` returns only once its entries are durable, and an entry with a
higher `seq` is never visible to `read` before every lower `seq` is (no gaps an applier could pass over).
Freshness guarantee: while `sole_appender()` returns an epoch, no other store appends to this log (every entry
appended since the epoch began was appended through this store object); None when that cannot be promised.
Catalog guarantee: `catalog_version` is raised in the same transaction as every change to the id mappings, so
mappings read after seeing version v are current for as long as the version is still v (read the version first).
"""

from __future__ import annotations

import importlib.resources
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..pulse import Pulse


@dataclass(frozen=True)
class NewEntry:
    """A mutation as the gateway logs it: the client's request, with canonical ids, kept as it came."""

    op: str
    method: str
    path: str
    body: bytes = b""
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    collection_id: str | None = None
    scope: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    author: str = ""  # the name of the token that made the write ("" when auth is off); never a credential


@dataclass(frozen=True)
class EntryKey:
    """What an entry's dependents need to know of it, without its payload: the read-your-writes index, retention
    and lag positions. `canonical_id` is the collection a `create_collection` entry creates (None otherwise)."""

    seq: int
    created_at: float
    op: str
    collection_id: str | None
    scope: str
    canonical_id: str | None


@dataclass(frozen=True)
class Outcome:
    status: int
    body: bytes
    instance: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Entry(NewEntry):
    seq: int = 0
    created_at: float = 0.0
    outcome: Outcome | None = None


@dataclass(frozen=True)
class Applied:
    """What one instance answered for one entry."""

    seq: int
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class IdMapping:
    instance: str
    canonical_id: str
    instance_id: str


@dataclass(frozen=True)
class Cursor:
    instance: str
    seq: int
    incarnation: str
    updated_at: float


@dataclass(frozen=True)
class Divergence:
    id: int
    seq: int
    instance: str
    status: int
    body: bytes
    expected_status: int
    created_at: float
    resolved_at: float | None


@dataclass(frozen=True)
class Recommendation:
    id: int
    created_at: float
    kind: str
    reason: str
    details: dict[str, Any]


JOINING, ACTIVE, DRAINING = "joining", "active", "draining"
MEMBER_STATES = (JOINING, ACTIVE, DRAINING)


@dataclass(frozen=True)
class Member:
    """One instance the gateways serve, by its bare URL: `joining` (copied and caught up, serving no reads),
    `active`, or `draining` (serving no new reads, about to be removed)."""

    url: str
    state: str
    changed_at: float


@dataclass(frozen=True)
class Roster:
    """The members in the order they were added, and the version the store gave that list (0: never seeded)."""

    version: int
    members: tuple[Member, ...]

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(m.url for m in self.members)


RECENT_COMMITS = 2048  # recent commit sizes kept for /wal/stats


@dataclass
class CommitStats:
    """The appends of one store object since it opened: transactions committed and the entries they carried. Group
    commit shows as more entries than commits. Owned by the store; operations only read it."""

    commits: int = 0
    entries: int = 0
    sizes: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_COMMITS))

    def committed(self, entries: int) -> None:
        self.commits += 1
        self.entries += entries
        self.sizes.append(entries)


@dataclass(frozen=True)
class GatewayStats:
    """One gateway's counters as it last published them; `age_seconds` by the store's clock."""

    gateway: str
    updated_at: float
    age_seconds: float
    stats: dict[str, Any]


ALERT_CLAIMS = ("firing", "reminder", "resolved", "event")


@dataclass(frozen=True)
class AlertClaim:
    """An alert as the gateways of one store last sent it."""

    firing: bool
    sent_at: float
    seen_at: float
    owner: str


def claimed(
    state: AlertClaim | None, status: str, owner: str, now: float, *, window: float, stale: float
) -> AlertClaim | None:
    """The state after a successful claim of `status`, or None when the claim fails (see `LogStore.claim_alert`);
    the rule each dialect's SQL applies in one statement. Pure."""
    if status == "firing":
        if state is None or not state.firing or state.seen_at < now - stale:
            return AlertClaim(True, now, now, owner)
    elif status == "reminder":
        if state is not None and state.firing and state.sent_at <= now - window:
            return AlertClaim(True, now, now, owner)
    elif status == "resolved":
        if state is not None and state.firing:
            return AlertClaim(False, now, state.seen_at, owner)
    elif status == "event":
        if state is None or state.sent_at <= now - window:
            return AlertClaim(False, now, now, owner)
    else:
        raise ValueError(f"no alert claim {status!r}: one of {', '.join(ALERT_CLAIMS)}")
    return None


class LogStore(Protocol):
    commit_stats: CommitStats

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    def sole_appender(self) -> int | None:
        """An epoch while no other store can append to this log, None otherwise (see the module's docstring). The
        epoch changes whenever that stopped being true in between: what was learned of the log under one epoch
        (its head, say) proves nothing under another."""
        ...

    # the log
    async def append(self, entries: Sequence[NewEntry]) -> list[int]: ...
    async def head(self) -> int: ...
    async def heard_head(self) -> int:
        """The head, or a lower bound of it that lags by at most a second, answered without a question to the
        store when the store keeps one current: for waiting on work (the appliers), never for proving a read
        fresh."""
        ...

    async def oldest_seq(self) -> int: ...
    async def read(self, after: int, limit: int, max_bytes: int | None = None) -> list[Entry]:
        """Up to `limit` entries after `after`, in `seq` order. With `max_bytes`, it stops before the entry that
        would bring the sum of the returned bodies over `max_bytes`, but returns at least one entry when any
        exists; bodies beyond those returned are never loaded."""
        ...

    async def read_to_apply(self, after: int, limit: int, max_bytes: int | None = None) -> list[Entry]:
        """As `read`, for an applier: a prefix of what `read` returns (at least one entry when any exists), whose
        entries may lack their outcome and carry this process's clock as `created_at`. The SQLite and PostgreSQL
        stores answer it from the entries they have just appended themselves when they can (`recent`)."""
        ...

    async def read_keys(self, after: int, limit: int) -> list[EntryKey]:
        """The keys of up to `limit` entries after `after`, in `seq` order, without reading bodies or headers."""
        ...

    async def outcome(self, seq: int) -> Outcome | None: ...
    async def wait_for_append(self, timeout: float, *, nudge: Pulse | None = None) -> None:
        """Until an append to the log (this store's, or one it hears of), a fire of `nudge`, or `timeout` seconds."""
        ...

    async def prune(self, upto_seq: int) -> int: ...
    async def count_since(self, since: float) -> int: ...

    # cursors, written only by the applier that owns the instance
    async def cursors(self) -> dict[str, Cursor]: ...
    async def wait_for_cursors(self, timeout: float) -> None:
        """Until a cursor moves (committed by an applier of any gateway on this store), or for `timeout`
        seconds: a wake-up for following appliers that run elsewhere; `cursors()` tells where they are."""
        ...

    async def commit_batch(
        self, instance: str, applied: Sequence[Applied], cursor: int, mappings: Sequence[IdMapping]
    ) -> list[Divergence]: ...
    async def set_cursor(self, instance: str, seq: int, incarnation: str) -> None: ...
    async def record_intent(self, instance: str, seq: int) -> None: ...
    async def has_intent(self, instance: str, seq: int) -> bool: ...

    # the catalog
    async def mappings(self, instance: str | None = None) -> list[IdMapping]: ...
    async def record_mappings(self, mappings: Sequence[IdMapping]) -> None: ...
    async def forget_instance(self, instance: str) -> None: ...
    async def scopes(self) -> list[str]: ...
    async def catalog_version(self) -> int:
        """A counter raised by every change to the mappings (commit_batch or record_mappings with mappings,
        forget_instance, reset), shared by every gateway on the store: equal versions, equal mappings."""
        ...

    # the plan of a bootstrap under way: numbered pages of bytes per instance (see replication/bootstrap_plan.py)
    async def save_bootstrap_pages(self, instance: str, pages: Sequence[tuple[int, bytes]]) -> None:
        """Write (or overwrite) these pages of the instance's plan, all in one transaction."""
        ...

    async def bootstrap_pages(self, instance: str, first: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` pages of the instance's plan numbered `first` or more, in order."""
        ...

    async def drop_bootstrap(self, instance: str) -> None: ...

    # the members: the instances every gateway on the store serves; each change raises the version
    async def members(self) -> Roster: ...
    async def members_version(self) -> int: ...
    async def seed_members(self, urls: Sequence[str]) -> bool:
        """Record `urls` as active members if the list was never seeded (version 0); True when this call did it."""
        ...

    async def add_member(self, url: str, state: str) -> bool:
        """Add a member in `state`; False (and nothing changed) when it is a member already."""
        ...

    async def set_member_state(self, url: str, state: str, expected: str) -> bool:
        """Move a member from `expected` to `state`; False (and nothing changed) when it is not in `expected`."""
        ...

    async def remove_member(self, url: str) -> bool:
        """Forget the member and all the store holds for it (cursor, ids, intents, lease, bootstrap plan; its open
        divergences are resolved), in one transaction, so it holds back neither pruning nor health; False when it
        was not a member."""
        ...

    # divergences, leases, recommendations
    async def divergences(self, include_resolved: bool = False) -> list[Divergence]: ...
    async def resolve_divergences(self, instance: str) -> int: ...
    async def acquire_lease(self, instance: str, owner: str, ttl: float) -> bool: ...
    async def release_lease(self, instance: str, owner: str) -> None: ...
    async def add_recommendation(self, kind: str, reason: str, details: dict[str, Any]) -> Recommendation: ...
    async def recommendations(self, limit: int = 100) -> list[Recommendation]: ...

    # what the gateways of one store share of alerts and statistics
    async def claim_alert(self, key: str, status: str, owner: str, *, window: float, stale: float) -> bool:
        """Claim the sending of one alert message; True for exactly one of the gateways claiming the same change.

        `firing`: the alert was not firing, or no gateway has seen it firing for `stale` seconds (every gateway
        that left it firing is gone); `reminder`: it is firing and was last sent `window` seconds ago or more;
        `resolved`: it was firing; `event`: none of its key was sent in the last `window` seconds."""
        ...

    async def touch_alerts(self, keys: Sequence[str]) -> None:
        """This gateway still sees these alerts firing (keeps their claims from going stale)."""
        ...

    async def publish_gateway_stats(self, gateway: str, stats: dict[str, Any], forget_after: float) -> None:
        """Record this gateway's counters; forget those of gateways silent for `forget_after` seconds."""
        ...

    async def gateway_stats(self, max_age: float) -> list[GatewayStats]:
        """The counters of every gateway that published within `max_age` seconds, by gateway name."""
        ...

    async def reset(self) -> None: ...


_BLOCK = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load_queries(dialect: str) -> dict[str, str]:
    """Named SQL blocks from `sql/<dialect>/*.sql`: each block starts with `-- name: <name>`."""
    queries: dict[str, str] = {}
    folder = importlib.resources.files("chroma_ha.store") / "sql" / dialect
    for resource in sorted(folder.iterdir(), key=lambda r: r.name):
        if not resource.name.endswith(".sql"):
            continue
        parts = _BLOCK.split(resource.read_text(encoding="utf-8"))
        for name, sql in zip(parts[1::2], parts[2::2], strict=True):
            queries[name] = sql.strip()
    return queries


def is_divergent(first: Outcome, applied: Applied) -> bool:
    """An instance that accepted what another rejected (or the reverse) has diverged."""
    return first.ok != applied.ok
