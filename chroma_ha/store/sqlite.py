"""The embedded store: one SQLite file in WAL mode with synchronous FULL, for one gateway.

All writes run on one thread with one connection, so `seq` is assigned and committed in order by construction.
Appends that arrive while a commit is in flight are committed together by the next one (group commit): one fsync
for many writes. Reads use a second connection on a second thread, so they never wait behind an fsync.

Files: a store file this store creates is readable by its owner only (0600; SQLite gives its -wal and -shm files
the mode of the database file), in a folder it creates readable by its owner only (0700): the log holds every
write's payload.

Space: the file uses `auto_vacuum=INCREMENTAL`, set before a new file's first page, or by one VACUUM when a store
made without it is opened; every prune is followed by `PRAGMA incremental_vacuum`, so the pages pruned entries
held go back to the file system instead of staying in the file as free pages.

Schema: numbered migrations (`sql/sqlite/migrations/`) run at `open()`, each in its own BEGIN IMMEDIATE transaction
that reads the version first, so two processes opening one file never apply a step twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ..errors import StoreError
from ..pulse import Pulse
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
from .recent import RecentAppends, appended

logger = logging.getLogger(__name__)
T = TypeVar("T")
Q = load_queries("sqlite")
MIGRATIONS = load_migrations("sqlite")
# One caller's entries, as given and as `append_entry` parameters after seq and time, and its answer.
_Pending = tuple[Sequence[NewEntry], list[tuple[Any, ...]], asyncio.Future[list[int]]]
_SEMICOLON = re.compile(";")
BUSY_TIMEOUT_S = 30.0
FILE_MODE = 0o600
FOLDER_MODE = 0o700
WAL_RETRY_S = 0.01
AUTO_VACUUM_INCREMENTAL = 2


def _create_owner_only(path: str) -> None:
    """Create the store's folder and an empty file, owner only, unless they exist; SQLite then takes the file as a
    new database and creates its -wal and -shm with the same mode."""
    Path(path).parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only a new, empty file takes it here: before its first page
    _use_wal(conn)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL. While another connection creates or switches the same file, SQLite answers "database
    is locked" at once instead of waiting (it would risk a deadlock), so stores opening together try again."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(WAL_RETRY_S)


def _use_incremental_vacuum(conn: sqlite3.Connection) -> None:
    """A store made without incremental vacuum (by an older gateway) switches to it: a VACUUM, once."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != AUTO_VACUUM_INCREMENTAL:
        started = time.monotonic()
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("VACUUM")
        logger.warning("sqlite store switched to incremental vacuum in %.1fs (once)", time.monotonic() - started)


def _give_space_back(conn: sqlite3.Connection) -> None:
    # executescript steps the pragma to its end: one `execute` frees a single page
    conn.executescript("PRAGMA incremental_vacuum")


def _entry(row: Sequence[Any]) -> Entry:
    outcome = Outcome(row[11], row[12], row[13]) if row[11] is not None else None
    return Entry(
        seq=row[0],
        created_at=row[1],
        op=row[2],
        method=row[3],
        path=row[4],
        query=row[5],
        headers=orjson.loads(row[6]),
        body=row[7],
        collection_id=row[8],
        scope=row[9],
        extra=orjson.loads(row[10]),
        outcome=outcome,
        author=row[14],
    )


def _divergence(row: Sequence[Any]) -> Divergence:
    return Divergence(*row)


def _statements(script: str) -> Iterator[str]:
    """The statements of a script one by one: `executescript` would commit the transaction a step runs in.
    A `;` inside a string, a comment or a trigger's body does not end a statement."""
    start = 0
    for semicolon in _SEMICOLON.finditer(script):
        if sqlite3.complete_statement(script[start : semicolon.end()]):
            yield script[start : semicolon.end()]
            start = semicolon.end()
    if script[start:].strip():
        yield script[start:]


def _schema_version(conn: sqlite3.Connection) -> int:
    """The version the file's schema is at; 0 for a file that has none yet."""
    if not conn.execute(Q["log_meta_exists"]).fetchone()[0]:
        return 0
    row = conn.execute(Q["schema_version"]).fetchone()
    return int(row[0]) if row else 0


def _apply_next_migration(conn: sqlite3.Connection) -> Migration | None:
    """One step, inside the caller's write transaction, so the version it read cannot change under it."""
    step = next_migration(MIGRATIONS, _schema_version(conn))
    if step is not None:
        for statement in _statements(step.sql):
            conn.execute(statement)
        conn.execute(Q["set_schema_version"], (step.version,))
    return step


class SQLiteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._pending: list[_Pending] = []
        self._recent = RecentAppends()
        self._flush_task: asyncio.Task[None] | None = None
        self._appended = Pulse()
        self._cursors_moved = Pulse()
        self._head = 0
        self.commit_stats = CommitStats()

    # --- plumbing -------------------------------------------------------------------------------------------

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(self._writer, lambda: self._txn(fn))

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._rconn is not None
        conn = self._rconn
        return await self._run(self._reader, lambda: fn(conn))

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn)
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite: {exc}") from exc

    def _txn(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._wconn is not None
        conn = self._wconn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def open(self) -> None:
        try:
            _create_owner_only(self.path)
            self._wconn = wconn = await self._run(self._writer, lambda: _connect(self.path))
            await self._run(self._writer, lambda: _use_incremental_vacuum(wconn))
            while (step := await self._write(_apply_next_migration)) is not None:
                log_applied("sqlite", step)
            self._head = await self._write(lambda c: int(c.execute(Q["head"]).fetchone()[0]))
            self._rconn = await self._run(self._reader, lambda: _connect(self.path))
        except BaseException:
            # A store that failed to open (a newer schema, say) leaves no connection or thread behind.
            await self.close()
            raise

    async def close(self) -> None:
        for conn, pool in ((self._wconn, self._writer), (self._rconn, self._reader)):
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(pool, conn.close)
        # Closing twice (after a failed open, say) is harmless, as it is for the other stores.
        self._wconn = self._rconn = None
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    # --- the log --------------------------------------------------------------------------------------------

    async def append(self, entries: Sequence[NewEntry]) -> list[int]:
        # serialized here, so that an entry that cannot be stored fails only its own caller
        rows = [
            (
                e.op,
                e.method,
                e.path,
                e.query,
                orjson.dumps(e.headers),
                e.body,
                e.collection_id,
                e.scope,
                orjson.dumps(e.extra),
                e.author,
            )
            for e in entries
        ]
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending.append((entries, rows, future))
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(self._flush(), name="sqlite-group-commit")
        return await future

    async def _flush(self) -> None:
        """Commit everything pending in one transaction, again and again until nothing is pending."""
        while self._pending:
            batch, self._pending = self._pending, []
            appended_at = time.time()
            try:
                seqs = await self._write(lambda conn, batch=batch: self._insert(conn, batch))  # type: ignore[misc]
            except BaseException as exc:
                failure = exc if isinstance(exc, StoreError) else StoreError(f"append failed: {exc!r}")
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(failure)
                if not isinstance(exc, Exception):
                    raise
                continue
            self.commit_stats.committed(sum(len(s) for s in seqs))
            for (entries, _, future), assigned in zip(batch, seqs, strict=True):
                self._recent.add(appended(entries, assigned, appended_at))
                if not future.done():
                    future.set_result(assigned)
            self._appended.fire()

    def _insert(self, conn: sqlite3.Connection, batch: list[_Pending]) -> list[list[int]]:
        seq = int(conn.execute(Q["head"]).fetchone()[0])
        now = time.time()
        assigned: list[list[int]] = []
        rows = []
        for _, entry_rows, _ in batch:
            seqs = []
            for row in entry_rows:
                seq += 1
                seqs.append(seq)
                rows.append((seq, now, *row))
            assigned.append(seqs)
        conn.executemany(Q["append_entry"], rows)
        self._head = seq
        return assigned

    async def wait_for_append(self, timeout: float, *, nudge: Pulse | None = None) -> None:
        await self._appended.wait(timeout, also=nudge)

    def sole_appender(self) -> int | None:
        """Always: one gateway per file, and every append runs on this store's one writer connection."""
        return 0

    async def head(self) -> int:
        return self._head

    async def heard_head(self) -> int:
        return self._head

    async def oldest_seq(self) -> int:
        return await self._read(lambda c: int(c.execute(Q["oldest_seq"]).fetchone()[0]))

    async def read(self, after: int, limit: int, max_bytes: int | None = None) -> list[Entry]:
        params: tuple[int, ...] = (after, limit)
        query = Q["read_after"]
        if max_bytes is not None:
            params, query = (after, limit, max_bytes), Q["read_after_bounded"]
        return await self._read(lambda c: [_entry(r) for r in c.execute(query, params)])

    async def read_to_apply(self, after: int, limit: int, max_bytes: int | None = None) -> list[Entry]:
        return self._recent.read(after, limit, max_bytes) or await self.read(after, limit, max_bytes)

    async def read_keys(self, after: int, limit: int) -> list[EntryKey]:
        return await self._read(lambda c: [EntryKey(*r) for r in c.execute(Q["read_keys_after"], (after, limit))])

    async def outcome(self, seq: int) -> Outcome | None:
        def fetch(c: sqlite3.Connection) -> Outcome | None:
            row = c.execute(Q["outcome"], (seq,)).fetchone()
            return Outcome(*row) if row and row[0] is not None else None

        return await self._read(fetch)

    async def prune(self, upto_seq: int) -> int:
        def prune(c: sqlite3.Connection) -> int:
            c.execute(Q["set_pruned_upto"], (upto_seq,))
            c.execute(Q["remember_pruned_scopes"], (upto_seq,))
            return c.execute(Q["prune"], (upto_seq,)).rowcount

        pruned = await self._write(prune)
        self._recent.drop_through(upto_seq)
        if pruned:
            assert self._wconn is not None
            conn = self._wconn
            await self._run(self._writer, lambda: _give_space_back(conn))
        return pruned

    async def count_since(self, since: float) -> int:
        return await self._read(lambda c: int(c.execute(Q["count_since"], (since,)).fetchone()[0]))

    # --- cursors --------------------------------------------------------------------------------------------

    async def cursors(self) -> dict[str, Cursor]:
        return await self._read(lambda c: {r[0]: Cursor(*r) for r in c.execute(Q["cursors"])})

    async def commit_batch(
        self, instance: str, applied: Sequence[Applied], cursor: int, mappings: Sequence[IdMapping]
    ) -> list[Divergence]:
        def commit(c: sqlite3.Connection) -> list[Divergence]:
            now = time.time()
            found: list[Divergence] = []
            for a in applied:
                if c.execute(Q["set_first_outcome"], (a.status, a.body, instance, a.seq)).rowcount:
                    continue
                row = c.execute(Q["outcome"], (a.seq,)).fetchone()
                if row is None or row[0] is None:
                    continue
                first = Outcome(*row)
                if first.instance != instance and is_divergent(first, a):
                    cur = c.execute(Q["insert_divergence"], (a.seq, instance, a.status, a.body, first.status, now))
                    found.append(
                        Divergence(int(cur.lastrowid or 0), a.seq, instance, a.status, a.body, first.status, now, None)
                    )
            if mappings:
                c.execute(Q["raise_catalog_version"])
                c.executemany(Q["upsert_mapping"], [(m.instance, m.canonical_id, m.instance_id) for m in mappings])
            c.execute(Q["upsert_cursor"], (instance, cursor, "", now))
            c.execute(Q["delete_intents_upto"], (instance, cursor))
            return found

        found = await self._write(commit)
        self._cursors_moved.fire()
        return found

    async def set_cursor(self, instance: str, seq: int, incarnation: str) -> None:
        await self._write(lambda c: c.execute(Q["set_cursor"], (instance, seq, incarnation, time.time())))
        self._cursors_moved.fire()

    async def wait_for_cursors(self, timeout: float) -> None:
        await self._cursors_moved.wait(timeout)

    async def record_intent(self, instance: str, seq: int) -> None:
        await self._write(lambda c: c.execute(Q["insert_intent"], (instance, seq)))

    async def has_intent(self, instance: str, seq: int) -> bool:
        return await self._read(lambda c: c.execute(Q["has_intent"], (instance, seq)).fetchone() is not None)

    # --- catalog --------------------------------------------------------------------------------------------

    async def mappings(self, instance: str | None = None) -> list[IdMapping]:
        def fetch(c: sqlite3.Connection) -> list[IdMapping]:
            rows = c.execute(Q["instance_mappings"], (instance,)) if instance else c.execute(Q["all_mappings"])
            return [IdMapping(*r) for r in rows]

        return await self._read(fetch)

    async def record_mappings(self, mappings: Sequence[IdMapping]) -> None:
        """Mappings made outside an applier's batch (bootstrap, repair)."""
        rows = [(m.instance, m.canonical_id, m.instance_id) for m in mappings]
        if not rows:
            return

        def record(c: sqlite3.Connection) -> None:
            c.execute(Q["raise_catalog_version"])
            c.executemany(Q["upsert_mapping"], rows)

        await self._write(record)

    async def scopes(self) -> list[str]:
        """Every tenant (`t`) and database (`t/d`) the log has named, pruned entries included."""
        return await self._read(lambda c: [r[0] for r in c.execute(Q["scopes"])])

    async def catalog_version(self) -> int:
        def fetch(c: sqlite3.Connection) -> int:
            row = c.execute(Q["catalog_version"]).fetchone()
            return int(row[0]) if row else 0

        return await self._read(fetch)

    async def forget_instance(self, instance: str) -> None:
        def forget(c: sqlite3.Connection) -> None:
            c.execute(Q["raise_catalog_version"])
            c.execute(Q["forget_mappings"], (instance,))
            c.execute(Q["forget_intents"], (instance,))

        await self._write(forget)

    # --- bootstrap plans ------------------------------------------------------------------------------------

    async def save_bootstrap_pages(self, instance: str, pages: Sequence[tuple[int, bytes]]) -> None:
        rows = [(instance, page, body) for page, body in pages]
        await self._write(lambda c: c.executemany(Q["save_bootstrap_page"], rows))

    async def bootstrap_pages(self, instance: str, first: int, limit: int) -> list[tuple[int, bytes]]:
        query = Q["bootstrap_pages"]
        return await self._read(lambda c: [(r[0], r[1]) for r in c.execute(query, (instance, first, limit))])

    async def drop_bootstrap(self, instance: str) -> None:
        await self._write(lambda c: c.execute(Q["drop_bootstrap"], (instance,)))

    # --- members --------------------------------------------------------------------------------------------

    async def members(self) -> Roster:
        def fetch(c: sqlite3.Connection) -> Roster:
            version = int(c.execute(Q["members_version"]).fetchone()[0])
            return Roster(version, tuple(Member(r[0], r[1], r[2]) for r in c.execute(Q["members"])))

        return await self._read(lambda c: self._in_snapshot(c, fetch))

    @staticmethod
    def _in_snapshot(c: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn`'s reads in one read transaction: the version and the rows it counts are read together."""
        c.execute("BEGIN")
        try:
            return fn(c)
        finally:
            c.execute("COMMIT")

    async def members_version(self) -> int:
        return await self._read(lambda c: int(c.execute(Q["members_version"]).fetchone()[0]))

    async def seed_members(self, urls: Sequence[str]) -> bool:
        def seed(c: sqlite3.Connection) -> bool:
            if int(c.execute(Q["members_version"]).fetchone()[0]) != 0:
                return False
            now = time.time()
            for url in urls:
                c.execute(Q["insert_member"], (url, ACTIVE, now))
            c.execute(Q["raise_members_version"])
            return True

        return await self._write(seed)

    async def add_member(self, url: str, state: str) -> bool:
        return await self._changed_members(lambda c: c.execute(Q["insert_member"], (url, state, time.time())))

    async def set_member_state(self, url: str, state: str, expected: str) -> bool:
        query = Q["set_member_state"]
        return await self._changed_members(lambda c: c.execute(query, (state, time.time(), url, expected)))

    async def remove_member(self, url: str) -> bool:
        def remove(c: sqlite3.Connection) -> sqlite3.Cursor:
            gone = c.execute(Q["delete_member"], (url,))
            if gone.rowcount:
                c.execute(Q["raise_catalog_version"])
                for name in ("forget_mappings", "forget_intents", "forget_cursor", "forget_lease", "drop_bootstrap"):
                    c.execute(Q[name], (url,))
                c.execute(Q["resolve_divergences"], (time.time(), url))
            return gone

        return await self._changed_members(remove)

    async def _changed_members(self, change: Callable[[sqlite3.Connection], sqlite3.Cursor]) -> bool:
        """Run `change`; when it changed a row, raise the version in the same transaction."""

        def run(c: sqlite3.Connection) -> bool:
            if not change(c).rowcount:
                return False
            c.execute(Q["raise_members_version"])
            return True

        return await self._write(run)

    # --- divergences, leases, recommendations ---------------------------------------------------------------

    async def divergences(self, include_resolved: bool = False) -> list[Divergence]:
        query = Q["divergences_all"] if include_resolved else Q["divergences_open"]
        return await self._read(lambda c: [_divergence(r) for r in c.execute(query)])

    async def resolve_divergences(self, instance: str) -> int:
        return await self._write(lambda c: c.execute(Q["resolve_divergences"], (time.time(), instance)).rowcount)

    async def acquire_lease(self, instance: str, owner: str, ttl: float) -> bool:
        def take(c: sqlite3.Connection) -> bool:
            now = time.time()
            c.execute(Q["take_lease"], (instance, owner, now + ttl, now))
            row = c.execute(Q["lease_owner"], (instance,)).fetchone()
            return row is not None and row[0] == owner

        return await self._write(take)

    async def release_lease(self, instance: str, owner: str) -> None:
        await self._write(lambda c: c.execute(Q["release_lease"], (instance, owner)))

    async def add_recommendation(self, kind: str, reason: str, details: dict[str, Any]) -> Recommendation:
        def add(c: sqlite3.Connection) -> Recommendation:
            now = time.time()
            cur = c.execute(Q["insert_recommendation"], (now, kind, reason, orjson.dumps(details)))
            return Recommendation(int(cur.lastrowid or 0), now, kind, reason, details)

        return await self._write(add)

    async def recommendations(self, limit: int = 100) -> list[Recommendation]:
        def fetch(c: sqlite3.Connection) -> list[Recommendation]:
            rows = c.execute(Q["recommendations"], (limit,))
            return [Recommendation(r[0], r[1], r[2], r[3], orjson.loads(r[4])) for r in rows]

        return await self._read(fetch)

    async def claim_alert(self, key: str, status: str, owner: str, *, window: float, stale: float) -> bool:
        if status not in ALERT_CLAIMS:
            raise ValueError(f"no alert claim {status!r}: one of {', '.join(ALERT_CLAIMS)}")
        params = {"key": key, "owner": owner, "window": window, "stale": stale, "now": time.time()}
        query = Q[f"claim_alert_{status}"]
        return await self._write(lambda c: c.execute(query, params).fetchone() is not None)

    async def touch_alerts(self, keys: Sequence[str]) -> None:
        if keys:
            now = time.time()
            await self._write(lambda c: c.executemany(Q["touch_alert"], [(now, k) for k in keys]))

    async def publish_gateway_stats(self, gateway: str, stats: dict[str, Any], forget_after: float) -> None:
        def publish(c: sqlite3.Connection) -> None:
            now = time.time()
            c.execute(Q["publish_gateway_stats"], (gateway, now, orjson.dumps(stats).decode()))
            c.execute(Q["forget_gateway_stats"], (now - forget_after,))

        await self._write(publish)

    async def gateway_stats(self, max_age: float) -> list[GatewayStats]:
        def fetch(c: sqlite3.Connection) -> list[GatewayStats]:
            now = time.time()
            rows = c.execute(Q["gateway_stats"], (now, now - max_age))
            return [GatewayStats(r[0], r[1], max(0.0, r[2]), orjson.loads(r[3])) for r in rows]

        return await self._read(fetch)

    async def reset(self) -> None:
        """Forget the log, the catalog and the divergences; `seq` keeps counting from the old head."""

        def reset(c: sqlite3.Connection) -> None:
            head = int(c.execute(Q["head"]).fetchone()[0])
            c.execute(Q["set_pruned_upto"], (head,))
            c.execute(Q["raise_catalog_version"])
            for statement in Q["reset"].split(";"):
                if statement.strip():
                    c.execute(statement)
            for row in list(c.execute(Q["cursors"])):
                c.execute(Q["set_cursor"], (row[0], head, row[2], time.time()))

        await self._write(reset)
        self._recent.clear()
