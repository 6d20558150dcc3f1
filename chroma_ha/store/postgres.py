"""The shared store: one PostgreSQL database, for one gateway or several behind a load balancer.

Order: `append` takes `seq` from one counter row (`log_head`) in the append transaction. The row lock is held
until commit, so an entry with a higher `seq` never commits, and so never becomes visible, before a lower one:
an applier reading after its cursor never passes over a gap. Appends arriving while a commit is in flight are
committed together by the next transaction (group commit): a process takes the counter row once per batch.

Freshness: the writer lease (`postgres_lease`) lets the one store that appends promise that no other does, so its
gateway proves a read's freshness from what it appended itself. An append checks the lease in its transaction,
after the counter row; when another store holds it, the transaction is rolled back, the lease revoked, and the
batch tried again once it is released or expired.

Wake-ups: the append transaction sends `NOTIFY chroma_ha_log`; one LISTEN connection per store (`postgres_listen`),
restarted when it drops, turns notifications from every gateway into an in-process event. Each notification
carries the head its commit made, so that the appliers learn the head without asking (`heard_head`): while the
listener is not connected, or once the head was last asked more than a second ago, it is asked, so a lost
notification costs at most that second. Every transaction that moves a cursor sends `NOTIFY chroma_ha_cursor`,
which wakes the gateways that follow appliers running elsewhere (`wait_for_cursors`); they read the cursors
themselves from the table.

Lock order: every transaction that takes more than one of these takes them in this order, so that transactions
of several gateways queue instead of deadlocking: the `log_head` row, the `writer_lease` row, `entries` rows, the
catalog version row, `collection_ids` rows, `cursors` rows, `intents` rows. The catalog version row also serialises
every change to the mappings, and readers see the version and the mappings it covers commit together.

Schema: numbered migrations (`sql/postgres/migrations/`) run at `open()`, each in its own transaction under an
advisory lock, so gateways starting together on one database apply each step once.

Times are read from the database clock, so that gateways with skewed clocks agree on when a lease expires.
Driver errors (`psycopg.Error`, pool timeouts) are translated into `StoreError` in one place: `_connection`.
A driver's message can echo the DSN (libpq repeats a connection string it cannot parse): every `StoreError` is
made by `_failed`, which takes the DSN's password out of it, in whichever form.
"""

from __future__ import annotations

import asyncio
import logging
import math
import select
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from ..errors import StoreError
from ..pulse import Pulse
from ..redaction import Scrubber, dsn_redacted, dsn_secrets
from .base import (
    ACTIVE,
    ALERT_CLAIMS,
    Applied,
    CommitStats,
    Cursor,
    Divergence,
    Entry,
    EntryKey,
    GatewayStats,
    IdMapping,
    Member,
    NewEntry,
    Outcome,
    Recommendation,
    Roster,
    is_divergent,
    load_queries,
)
from .migrations import Migration, load_migrations, log_applied, next_migration
from .postgres_lease import LEASE_CHANNEL, WriterLease
from .postgres_listen import hear
from .recent import RecentAppends, appended

Q = load_queries("postgres")
MIGRATIONS = load_migrations("postgres")

# Kept open from the start: the pool grows by one connection at a time, and with a short wait for a connection
# (below) the gateway's first moments (appliers, follower, monitor, first writes at once) must not queue for them.
DEFAULT_MIN_CONNECTIONS = 4
DEFAULT_MAX_CONNECTIONS = 10
DEFAULT_CONNECT_TIMEOUT_S = 10.0
# A caller waits this long for a connection: when the server is gone, the pool has none to give, and the store
# then fails within seconds instead of after psycopg's default 30 s (the write path gives up on it after one).
DEFAULT_POOL_TIMEOUT_S = 2.0
# Reconnections are tried again this often at most (psycopg's own backoff doubles up to minutes), so the store
# resumes within about this long of the server's return.
RECONNECT_DELAY_MAX_S = 0.5
# Asked for on every connection: a database created as SQL_ASCII (initdb where no locale is set) would otherwise
# hand text back as bytes, and every entry's path with it.
CLIENT_ENCODING = "utf8"
# The LISTEN connection is pinged this often: a dead peer that the OS has not noticed would otherwise silence
# wake-ups (they would then only come from polling) until TCP gives up.
LISTEN_PING_INTERVAL_S = 30.0
LISTEN_RETRY_MIN_S = 0.1
# `heard_head` asks the store itself when it last did longer ago than this, even while notifications arrive: a
# listener that died silently delays the appliers by no more than this.
HEARD_HEAD_MAX_AGE_S = 1.0
LISTEN_RETRY_MAX_S = 5.0
LISTENER_APPLICATION_NAME = "chroma-ha-listen"
CURSOR_CHANNEL = "chroma_ha_cursor"

logger = logging.getLogger(__name__)

# One caller's entries, as given and serialized as `append_entry_below_head` parameters after the offset, and its
# answer.
_Pending = tuple[Sequence[NewEntry], list[tuple[Any, ...]], asyncio.Future[list[int]]]
Params = Sequence[Any] | Mapping[str, Any] | None


class _LeaseHeld(Exception):
    """Another store holds the writer lease: this append's transaction is rolled back, to be tried again."""


class _QuickReconnect(AttemptWithBackoff):
    """psycopg's reconnection backoff, capped: an outage of minutes must not cost minutes after it ends."""

    INITIAL_DELAY = 0.1

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_DELAY_MAX_S)


class _Pool(AsyncConnectionPool[Any]):
    async def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        await super()._add_connection(attempt or _QuickReconnect(timeout=self.reconnect_timeout), growing)


async def _check_if_told(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's check of a connection it hands out, with a round trip only when the server has said something
    on it since it was last used: a server that restarted, ended the session or timed it out has sent an error or
    closed the socket, which is then readable. A connection with nothing to read goes out as it is: most of a
    gateway's store calls are small questions, and a round trip of checking each doubled them."""
    told = select.poll()  # not select(): a busy gateway's descriptors pass FD_SETSIZE
    told.register(conn.fileno(), select.POLLIN)
    if told.poll(0):
        await AsyncConnectionPool.check_connection(conn)


def normalize_dsn(dsn: str) -> str:
    """`postgres://` is the same URI scheme to libpq; spell it the canonical way for everything downstream."""
    if dsn.startswith("postgres://"):
        return "postgresql://" + dsn[len("postgres://") :]
    return dsn


def _entry(row: Sequence[Any]) -> Entry:
    outcome = Outcome(row[11], row[12], row[13]) if row[11] is not None else None
    return Entry(
        seq=row[0],
        created_at=row[1],
        op=row[2],
        method=row[3],
        path=row[4],
        query=row[5],
        headers=row[6],
        body=row[7],
        collection_id=row[8],
        scope=row[9],
        extra=row[10],
        outcome=outcome,
        author=row[14],
    )


def _divergence(row: Sequence[Any]) -> Divergence:
    return Divergence(*row)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _row(e: NewEntry) -> tuple[Any, ...]:
    """The `append_entry_below_head` parameters after the offset below the head."""
    return (
        e.op,
        e.method,
        e.path,
        e.query,
        _json(e.headers),
        e.body,
        e.collection_id,
        e.scope,
        _json(e.extra),
        e.author,
    )


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_loads(orjson.loads, conn)


async def _schema_version(conn: psycopg.AsyncConnection[Any]) -> int:
    """The version the store's schema is at; 0 for a database that has none yet."""
    exists = await (await conn.execute(Q["schema_exists"])).fetchone()
    if not (exists and exists[0]):
        return 0
    row = await (await conn.execute(Q["schema_version"])).fetchone()
    return int(row[0]) if row else 0


class PostgresStore:
    def __init__(
        self,
        dsn: str,
        *,
        min_connections: int = DEFAULT_MIN_CONNECTIONS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT_S,
        lease: Mapping[str, float] | None = None,
    ) -> None:
        """`lease`: the writer lease's timings (`WriterLease` keywords), when not the defaults."""
        self.dsn = normalize_dsn(dsn)
        self.name = dsn_redacted(self.dsn)  # the store as messages name it
        self._scrub = Scrubber(dsn_secrets(self.dsn))
        self._connect_timeout = connect_timeout
        self._pool = _Pool(
            self.dsn,
            min_size=min_connections,
            max_size=max_connections,
            open=False,
            kwargs={"autocommit": True, "client_encoding": CLIENT_ENCODING},
            configure=_configure,
            check=_check_if_told,
            timeout=pool_timeout,
            name="chroma-ha-store",
        )
        self._pending: list[_Pending] = []
        self._recent = RecentAppends()
        self._flush_task: asyncio.Task[None] | None = None
        self._appended = Pulse()
        self._cursors_moved = Pulse()
        self._heard = 0  # the highest head heard of (notifications, own appends, questions); a lower bound
        self._listener_up = False
        self._listener_connections = 0  # counts the listener's connections: tells one from the next
        self._hearing = False  # the listener is connected and has been since the last question
        self._asked_at = -math.inf  # when the head was last asked
        self._listen_task: asyncio.Task[None] | None = None
        self.commit_stats = CommitStats()
        self.lease = WriterLease(f"store-{uuid.uuid4()}", self._fetchone, self._run_in_transaction, **(lease or {}))

    # --- plumbing -------------------------------------------------------------------------------------------

    def _failed(self, exc: BaseException, what: str = "") -> StoreError:
        """The driver's error as a StoreError, with no secret of the DSN in its message."""
        return StoreError(self._scrub(f"postgres: {what}{str(exc) or type(exc).__name__}"))

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        try:
            async with self._pool.connection() as conn:
                yield conn
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._failed(exc) from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._connection() as conn, conn.transaction():
            yield conn

    async def _fetchall(self, query: str, params: Params = None) -> list[tuple[Any, ...]]:
        async with self._connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    async def _fetchone(self, query: str, params: Params = None) -> tuple[Any, ...] | None:
        async with self._connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchone()

    async def _run_in_transaction(self, statements: Sequence[tuple[str, Params]]) -> None:
        async with self._transaction() as conn:
            for query, params in statements:
                await conn.execute(query, params)

    async def _execute(self, query: str, params: Sequence[Any] | None = None) -> int:
        async with self._connection() as conn:
            cur = await conn.execute(query, params)
            return cur.rowcount

    async def open(self) -> None:
        # The listener connects first: a wrong DSN or a database that is down fails here at once, with the
        # server's own message, instead of after the pool's timeout.
        listener = await self._connect_listener()
        try:
            await self._open_pool()
        except BaseException:
            await listener.close()
            raise
        loop = asyncio.get_running_loop()
        self._listen_task = loop.create_task(self._listen(listener), name="postgres-listen")

    async def _open_pool(self) -> None:
        try:
            await self._pool.open(wait=True, timeout=self._connect_timeout)
            await self._migrate()
        except BaseException as exc:
            await self._pool.close()
            if isinstance(exc, psycopg.Error | PoolTimeout):
                raise self._failed(exc, f"cannot open {self.name}: ") from exc
            raise

    async def _migrate(self) -> None:
        while (step := await self._apply_next_migration()) is not None:
            log_applied("postgres", step)

    async def _apply_next_migration(self) -> Migration | None:
        """One step in one transaction; the version is read under the lock, so no step is ever applied twice."""
        async with self._transaction() as conn:
            await conn.execute(Q["schema_lock"])
            step = next_migration(MIGRATIONS, await _schema_version(conn))
            if step is not None:
                await conn.execute(step.sql)
                await conn.execute(Q["set_schema_version"], (step.version,))
        return step

    async def close(self) -> None:
        if self._flush_task is not None:
            with suppress(Exception):
                await self._flush_task
        await self.lease.close()
        if self._listen_task is not None:
            self._listen_task.cancel()
            with suppress(asyncio.CancelledError):
                await self._listen_task
            self._listen_task = None
        await self._pool.close()

    # --- wake-ups -------------------------------------------------------------------------------------------

    async def _connect_listener(self) -> psycopg.AsyncConnection[Any]:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.dsn,
                autocommit=True,
                client_encoding=CLIENT_ENCODING,
                connect_timeout=max(1, round(self._connect_timeout)),
                application_name=LISTENER_APPLICATION_NAME,
            )
        except psycopg.Error as exc:
            raise self._failed(exc, f"cannot connect to {self.name}: ") from exc
        try:
            await conn.execute(Q["listen"])
            await conn.execute(Q["listen_lease"])
            await conn.execute(Q["listen_cursors"])
        except psycopg.Error as exc:
            await conn.close()
            raise self._failed(exc) from exc
        self._listener_up = True
        self._listener_connections += 1
        return conn

    async def _listen(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        """Turn notifications into wake-ups while the store is open, reconnecting with capped backoff."""
        delay = LISTEN_RETRY_MIN_S
        try:
            while True:
                try:
                    if conn is None:
                        conn = await self._connect_listener()
                        # Notifications sent while nobody listened are lost: let waiters look at the log now
                        # (`heard_head` asks: `_hearing` stays False until a question after this connection).
                        self._wake()
                        self._cursors_moved.fire()
                        self.lease.listener_restarted()
                        delay = LISTEN_RETRY_MIN_S
                    await hear(conn, self._heard_notification, ping=Q["ping"], ping_interval=LISTEN_PING_INTERVAL_S)
                except (psycopg.Error, StoreError) as exc:
                    logger.warning("postgres LISTEN connection lost, reconnecting in %.1fs: %s", delay, exc)
                except Exception:
                    logger.exception("postgres LISTEN loop failed, restarting in %.1fs", delay)
                self._listener_up = self._hearing = False
                if conn is not None:
                    with suppress(Exception):
                        await conn.close()
                    conn = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, LISTEN_RETRY_MAX_S)
        finally:
            if conn is not None:
                with suppress(Exception):
                    await conn.close()

    def _heard_notification(self, notification: psycopg.Notify) -> None:
        if notification.channel == LEASE_CHANNEL:
            self.lease.heard(notification.payload)
        elif notification.channel == CURSOR_CHANNEL:
            self._cursors_moved.fire()
        else:
            self._hear(notification.payload)
            self._wake()

    def _wake(self) -> None:
        self._appended.fire()

    def _hear(self, payload: str) -> None:
        with suppress(ValueError):
            self._heard = max(self._heard, int(payload))

    async def wait_for_append(self, timeout: float, *, nudge: Pulse | None = None) -> None:
        await self._appended.wait(timeout, also=nudge)

    async def wait_for_cursors(self, timeout: float) -> None:
        await self._cursors_moved.wait(timeout)

    def sole_appender(self) -> int | None:
        return self.lease.sole_appender()

    # --- the log --------------------------------------------------------------------------------------------

    async def append(self, entries: Sequence[NewEntry]) -> list[int]:
        # Serialized here, so that an entry that cannot be stored fails its own caller, not the whole group.
        rows = [_row(e) for e in entries]
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending.append((entries, rows, future))
        if self._flush_task is None:
            loop = asyncio.get_running_loop()
            self._flush_task = loop.create_task(self._flush(), name="postgres-group-commit")
        self.lease.start_holding()
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                appended_at = time.time()
                try:
                    seqs = await self._insert(batch)
                except BaseException as exc:
                    error = exc if isinstance(exc, StoreError) else self._failed(exc, "append failed: ")
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    if isinstance(exc, Exception):
                        continue
                    raise
                for (entries, _, future), assigned in zip(batch, seqs, strict=True):
                    self._recent.add(appended(entries, assigned, appended_at))
                    if not future.done():
                        future.set_result(assigned)
                self._heard = max([self._heard, *(group[-1] for group in seqs if group)])
                self._wake()
        finally:
            self._flush_task = None

    async def _insert(self, batch: list[_Pending]) -> list[list[int]]:
        """One transaction for the whole batch; when another store holds the writer lease, revoke it and retry."""
        while True:
            try:
                assigned = await self._insert_once(batch)
            except _LeaseHeld:
                await self.lease.revoke()
                continue
            self.commit_stats.committed(sum(len(seqs) for seqs in assigned))
            return assigned

    async def _insert_once(self, batch: list[_Pending]) -> list[list[int]]:
        """The whole transaction in one pipeline (one round trip but for BEGIN's): each entry's `seq` is computed
        in SQL from the head the transaction has just raised, so nothing waits for an answer before the commit."""
        rows = [group for _, group, _ in batch]
        total = sum(len(r) for r in rows)
        if total == 0:
            return [[] for _ in batch]
        below = total  # the first entry is `head - (total - 1)`, the last one `head - 0`
        params = []
        for group in rows:
            for row in group:
                below -= 1
                params.append((below, *row))
        async with self._transaction() as conn:
            async with conn.pipeline():
                advanced = await conn.execute(Q["advance_head"], (total,))
                allowed = await conn.execute(Q["note_appender"], {"me": self.lease.owner})
                async with conn.cursor() as cur:
                    await cur.executemany(Q["append_entry_below_head"], params)
                await conn.execute(Q["notify_head"])
                head_row = await advanced.fetchone()
                may_append = await allowed.fetchone() is not None
            if not may_append:
                raise _LeaseHeld  # the transaction, inserts and all, is rolled back
        assert head_row is not None
        seq = int(head_row[0]) - total
        assigned: list[list[int]] = []
        for group in rows:
            assigned.append(list(range(seq + 1, seq + 1 + len(group))))
            seq += len(group)
        return assigned

    async def head(self) -> int:
        listening = self._listener_up and self._listener_connections
        asked_at = time.monotonic()
        row = await self._fetchone(Q["head"])
        head = int(row[0]) if row else 0
        self._heard, self._asked_at = max(self._heard, head), asked_at
        # Heard from now on, if one listener connection was up from before this question to after it: every
        # commit after the question notifies it.
        self._hearing = bool(listening) and self._listener_up and listening == self._listener_connections
        return head

    async def heard_head(self) -> int:
        if self._hearing and time.monotonic() - self._asked_at <= HEARD_HEAD_MAX_AGE_S:
            return self._heard
        return await self.head()

    async def oldest_seq(self) -> int:
        row = await self._fetchone(Q["oldest_seq"])
        return int(row[0]) if row else 1

    async def read(self, after: int, limit: int, max_bytes: int | None = None) -> list[Entry]:
        if max_bytes is None:
            rows = await self._fetchall(Q["read_after"], (after, limit))
        else:
            rows = await self._fetchall(Q["read_after_bounded"], (after, limit, max_bytes))
        return [_entry(r) for r in rows]

    async def read_to_apply(self, after: int, limit: int, max_bytes: int | None = None) -> list[Entry]:
        return self._recent.read(after, limit, max_bytes) or await self.read(after, limit, max_bytes)

    async def read_keys(self, after: int, limit: int) -> list[EntryKey]:
        return [EntryKey(*r) for r in await self._fetchall(Q["read_keys_after"], (after, limit))]

    async def outcome(self, seq: int) -> Outcome | None:
        row = await self._fetchone(Q["outcome"], (seq,))
        return Outcome(row[0], row[1], row[2]) if row and row[0] is not None else None

    async def prune(self, upto_seq: int) -> int:
        async with self._transaction() as conn:
            # A prune past the head moves the head, as in SQLite: the next append gets upto_seq + 1.
            await conn.execute(Q["raise_head"], (upto_seq, upto_seq))
            await conn.execute(Q["remember_pruned_scopes"], (upto_seq,))
            pruned = (await conn.execute(Q["prune"], (upto_seq,))).rowcount
        self._recent.drop_through(upto_seq)
        return pruned

    async def count_since(self, since: float) -> int:
        row = await self._fetchone(Q["count_since"], (since,))
        return int(row[0]) if row else 0

    # --- cursors --------------------------------------------------------------------------------------------

    async def cursors(self) -> dict[str, Cursor]:
        return {r[0]: Cursor(*r) for r in await self._fetchall(Q["cursors"])}

    async def commit_batch(
        self, instance: str, applied: Sequence[Applied], cursor: int, mappings: Sequence[IdMapping]
    ) -> list[Divergence]:
        first_by_seq: dict[int, Applied] = {}
        for a in applied:
            first_by_seq.setdefault(a.seq, a)
        unique = list(first_by_seq.values())
        seqs = [a.seq for a in unique]
        firsts: dict[int, Outcome] = {}
        async with self._transaction() as conn:
            # One pipeline, so the commit costs one round trip but for BEGIN's and COMMIT's; only a divergence, rare,
            # is written after it, in the same transaction.
            async with conn.pipeline():
                if unique:
                    # Lock in seq order first: appliers of several instances committing the same entries queue
                    # instead of deadlocking, and the statements below see the outcomes the others committed.
                    await conn.execute(Q["lock_entries"], (seqs,))
                    statuses, bodies = [a.status for a in unique], [a.body for a in unique]
                    await conn.execute(Q["set_first_outcomes"], (instance, seqs, statuses, bodies))
                    others = await conn.execute(Q["outcomes_of_others"], (seqs, instance))
                if mappings:
                    await conn.execute(Q["raise_catalog_version"])
                    async with conn.cursor() as mcur:
                        await mcur.executemany(
                            Q["upsert_mapping"], [(m.instance, m.canonical_id, m.instance_id) for m in mappings]
                        )
                await conn.execute(Q["upsert_cursor"], (instance, cursor))
                await conn.execute(Q["delete_intents_upto"], (instance, cursor))
                await conn.execute(Q["notify_cursors"])
                if unique:
                    firsts = {r[0]: Outcome(r[1], r[2], r[3]) for r in await others.fetchall()}
            found: list[Divergence] = []
            for a in unique:
                first = firsts.get(a.seq)
                if first is None or not is_divergent(first, a):
                    continue
                cur = await conn.execute(Q["insert_divergence"], (a.seq, instance, a.status, a.body, first.status))
                row = await cur.fetchone()
                assert row is not None
                found.append(Divergence(row[0], a.seq, instance, a.status, a.body, first.status, row[1], None))
        return found

    async def set_cursor(self, instance: str, seq: int, incarnation: str) -> None:
        await self._run_in_transaction([(Q["set_cursor"], (instance, seq, incarnation)), (Q["notify_cursors"], None)])

    async def record_intent(self, instance: str, seq: int) -> None:
        await self._execute(Q["insert_intent"], (instance, seq))

    async def has_intent(self, instance: str, seq: int) -> bool:
        return await self._fetchone(Q["has_intent"], (instance, seq)) is not None

    # --- catalog --------------------------------------------------------------------------------------------

    async def mappings(self, instance: str | None = None) -> list[IdMapping]:
        if instance:
            rows = await self._fetchall(Q["instance_mappings"], (instance,))
        else:
            rows = await self._fetchall(Q["all_mappings"])
        return [IdMapping(*r) for r in rows]

    async def record_mappings(self, mappings: Sequence[IdMapping]) -> None:
        """Mappings made outside an applier's batch (bootstrap, repair)."""
        rows = [(m.instance, m.canonical_id, m.instance_id) for m in mappings]
        if not rows:
            return
        async with self._transaction() as conn, conn.cursor() as cur:
            await cur.execute(Q["raise_catalog_version"])
            await cur.executemany(Q["upsert_mapping"], rows)

    async def scopes(self) -> list[str]:
        """Every tenant (`t`) and database (`t/d`) the log has named, pruned entries included."""
        return [r[0] for r in await self._fetchall(Q["scopes"])]

    async def catalog_version(self) -> int:
        row = await self._fetchone(Q["catalog_version"])
        return int(row[0]) if row else 0

    async def forget_instance(self, instance: str) -> None:
        async with self._transaction() as conn:
            await conn.execute(Q["raise_catalog_version"])
            await conn.execute(Q["forget_mappings"], (instance,))
            await conn.execute(Q["forget_intents"], (instance,))

    # --- members --------------------------------------------------------------------------------------------

    async def members(self) -> Roster:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # the version and its rows
            row = await (await conn.execute(Q["members_version"])).fetchone()
            rows = await (await conn.execute(Q["members"])).fetchall()
        return Roster(int(row[0]) if row else 0, tuple(Member(r[0], r[1], float(r[2])) for r in rows))

    async def members_version(self) -> int:
        row = await self._fetchone(Q["members_version"])
        return int(row[0]) if row else 0

    async def seed_members(self, urls: Sequence[str]) -> bool:
        async with self._transaction() as conn:
            row = await (await conn.execute(Q["members_version_locked"])).fetchone()  # two seeds: one waits
            if row is None or int(row[0]) != 0:
                return False
            now = time.time()
            for url in urls:
                await conn.execute(Q["insert_member"], (url, ACTIVE, now))
            await conn.execute(Q["raise_members_version"])
            return True

    async def add_member(self, url: str, state: str) -> bool:
        return await self._changed_members([(Q["insert_member"], (url, state, time.time()))])

    async def set_member_state(self, url: str, state: str, expected: str) -> bool:
        return await self._changed_members([(Q["set_member_state"], (state, time.time(), url, expected))])

    async def remove_member(self, url: str) -> bool:
        forget = ("forget_mappings", "forget_intents", "forget_cursor", "forget_lease", "drop_bootstrap")
        then: list[tuple[str, Params]] = [(Q["raise_catalog_version"], None), *((Q[n], (url,)) for n in forget)]
        then.append((Q["resolve_divergences"], (url,)))
        return await self._changed_members([(Q["delete_member"], (url,))], then)

    async def _changed_members(
        self, change: Sequence[tuple[str, Params]], then: Sequence[tuple[str, Params]] = ()
    ) -> bool:
        """Run `change`; when it changed a row, run `then` and raise the version, all in one transaction."""
        async with self._transaction() as conn:
            changed = 0
            for query, params in change:
                changed += (await conn.execute(query, params)).rowcount
            if not changed:
                return False
            for query, params in then:
                await conn.execute(query, params)
            await conn.execute(Q["raise_members_version"])
            return True

    # --- bootstrap plans ------------------------------------------------------------------------------------

    async def save_bootstrap_pages(self, instance: str, pages: Sequence[tuple[int, bytes]]) -> None:
        rows = [(instance, page, body) for page, body in pages]
        async with self._transaction() as conn, conn.cursor() as cur:
            await cur.executemany(Q["save_bootstrap_page"], rows)

    async def bootstrap_pages(self, instance: str, first: int, limit: int) -> list[tuple[int, bytes]]:
        rows = await self._fetchall(Q["bootstrap_pages"], (instance, first, limit))
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def drop_bootstrap(self, instance: str) -> None:
        await self._execute(Q["drop_bootstrap"], (instance,))

    # --- divergences, leases, recommendations ---------------------------------------------------------------

    async def divergences(self, include_resolved: bool = False) -> list[Divergence]:
        query = Q["divergences_all"] if include_resolved else Q["divergences_open"]
        return [_divergence(r) for r in await self._fetchall(query)]

    async def resolve_divergences(self, instance: str) -> int:
        return await self._execute(Q["resolve_divergences"], (instance,))

    async def acquire_lease(self, instance: str, owner: str, ttl: float) -> bool:
        # One statement: a row comes back only if the lease was free, expired or already ours.
        return await self._fetchone(Q["take_lease"], (instance, owner, ttl)) is not None

    async def release_lease(self, instance: str, owner: str) -> None:
        await self._execute(Q["release_lease"], (instance, owner))

    async def add_recommendation(self, kind: str, reason: str, details: dict[str, Any]) -> Recommendation:
        row = await self._fetchone(Q["insert_recommendation"], (kind, reason, _json(details)))
        assert row is not None
        return Recommendation(int(row[0]), row[1], kind, reason, details)

    async def recommendations(self, limit: int = 100) -> list[Recommendation]:
        rows = await self._fetchall(Q["recommendations"], (limit,))
        return [Recommendation(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def claim_alert(self, key: str, status: str, owner: str, *, window: float, stale: float) -> bool:
        if status not in ALERT_CLAIMS:
            raise ValueError(f"no alert claim {status!r}: one of {', '.join(ALERT_CLAIMS)}")
        params = {"key": key, "owner": owner, "window": window, "stale": stale}
        async with self._connection() as conn:
            cur = await conn.execute(Q[f"claim_alert_{status}"], params)
            return await cur.fetchone() is not None

    async def touch_alerts(self, keys: Sequence[str]) -> None:
        if keys:
            await self._execute(Q["touch_alerts"], (list(keys),))

    async def publish_gateway_stats(self, gateway: str, stats: dict[str, Any], forget_after: float) -> None:
        async with self._transaction() as conn:
            await conn.execute(Q["publish_gateway_stats"], (gateway, _json(stats)))
            await conn.execute(Q["forget_gateway_stats"], (forget_after,))

    async def gateway_stats(self, max_age: float) -> list[GatewayStats]:
        rows = await self._fetchall(Q["gateway_stats"], (max_age,))
        return [GatewayStats(r[0], r[1], max(0.0, r[2]), r[3]) for r in rows]

    async def reset(self) -> None:
        """Forget the log, the catalog and the divergences; `seq` keeps counting from the old head."""
        async with self._transaction() as conn:
            # Holding the counter row keeps appends of every gateway out until the reset commits.
            row = await (await conn.execute(Q["lock_head"])).fetchone()
            head = int(row[0]) if row else 0
            # In the lock order (see the module's docstring), which is why the deletes are not one statement.
            await conn.execute(Q["reset_log"])
            await conn.execute(Q["raise_catalog_version"])
            await conn.execute(Q["reset_mappings"])
            await conn.execute(Q["reset_cursors"], (head,))
            await conn.execute(Q["notify_cursors"])
            await conn.execute(Q["reset_bookkeeping"])
        self._recent.clear()
