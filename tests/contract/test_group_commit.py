"""Group commit and the writer lease: concurrent appends share commits and keep one dense order, from one store or
from two on one PostgreSQL database; the writer lease is taken by a store that appends alone, revoked by the
first append of another (which waits for it to be released, or to expire when its holder is gone), and a holder
stops trusting it before another store can append.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import psycopg

from chroma_ha.store.base import LogStore
from chroma_ha.store.postgres import PostgresStore
from tests.contract.test_store import assert_gap_free, new_entry, read_all, same_payload

if TYPE_CHECKING:
    from tests.contract.conftest import Backend

# Short timings, so that a lease is taken within a fraction of a second of appending alone.
FAST_LEASE = {"ttl": 1.5, "margin": 0.3, "renew_interval": 0.2, "quiet": 0.3}
TAKEN_WITHIN_S = 10.0


@asynccontextmanager
async def pg_store(dsn: str, lease: Mapping[str, float] = FAST_LEASE) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(dsn, lease=lease)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def until_sole_appender(store: LogStore) -> int:
    deadline = time.monotonic() + TAKEN_WITHIN_S
    while (epoch := store.sole_appender()) is None:
        assert time.monotonic() < deadline, "the store that appends alone never took the writer lease"
        await asyncio.sleep(0.02)
    return epoch


def lease_row(dsn: str) -> tuple[str | None, float, float]:
    """(owner, expires_at, the database's clock now)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT owner, expires_at, extract(epoch FROM clock_timestamp())::float8 FROM writer_lease"
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


async def test_concurrent_appends_share_commits_and_count_them(durable: Backend) -> None:
    store = await durable.open_store()
    entries = [new_entry(n) for n in range(60)]
    seqs = await asyncio.gather(*(store.append([e]) for e in entries))
    assert sorted(s for [s] in seqs) == list(range(1, 61))
    stats = store.commit_stats
    assert stats.entries == 60
    assert 1 <= stats.commits < 60, "concurrent appends were committed one by one"
    assert sum(stats.sizes) == 60 and len(stats.sizes) == stats.commits


async def test_every_backend_counts_what_it_committed(store: LogStore) -> None:
    await store.append([new_entry(1), new_entry(2)])
    await store.append([new_entry(3)])
    assert store.commit_stats.entries == 3
    assert 1 <= store.commit_stats.commits <= 2


async def test_concurrent_appends_from_two_stores_are_dense_in_commit_order_and_none_is_lost(pg: Backend) -> None:
    first, second = await pg.open_store(), await pg.open_store()
    sent = {n: new_entry(n) for n in range(300)}
    seen_prefixes: list[list[int]] = []
    done = asyncio.Event()

    async def watch() -> None:  # what a reader sees meanwhile is always a prefix: no later seq before an earlier
        while not done.is_set():
            seen_prefixes.append([e.seq for e in await read_all(first)])
            await asyncio.sleep(0.005)

    async def append(store: LogStore, n: int) -> tuple[int, list[int]]:
        await asyncio.sleep(0.0005 * (n % 7))
        return n, await store.append([sent[n]])

    watcher = asyncio.create_task(watch())
    results = await asyncio.gather(*(append(first if n % 2 else second, n) for n in sent))
    done.set()
    await watcher
    entries = await read_all(second)
    assert_gap_free([e.seq for e in entries])
    assert len(entries) == len(sent)
    by_seq = {e.seq: e for e in entries}
    for n, [seq] in results:
        assert same_payload(by_seq[seq], sent[n]), f"entry {n} was not stored as seq {seq}"
    for prefix in seen_prefixes:
        assert_gap_free(prefix)
    assert first.commit_stats.entries + second.commit_stats.entries == len(sent)
    assert first.commit_stats.commits + second.commit_stats.commits < len(sent)


async def test_a_store_appending_alone_takes_the_writer_lease_and_another_append_revokes_it(pg: Backend) -> None:
    async with pg_store(pg.location) as holder, pg_store(pg.location) as other:
        assert holder.sole_appender() is None and other.sole_appender() is None
        await holder.append([new_entry(1)])
        epoch = await until_sole_appender(holder)
        assert lease_row(pg.location)[0] == holder.lease.owner
        assert other.sole_appender() is None, "only the store that appends takes the lease"

        [seq] = await other.append([new_entry(2)])

        # Its append committed only once the holder had stopped trusting the lease and given it up.
        assert holder.sole_appender() is None
        assert other.lease.revocations == 1
        assert seq == 2 and [e.seq for e in await read_all(holder)] == [1, 2]
        owner, _, _ = lease_row(pg.location)
        assert owner != holder.lease.owner
        # The holder appends again: while the other appended within the quiet time it does not take the lease
        # back at once, and when it does, a new epoch begins (what it learned before proves nothing now).
        await holder.append([new_entry(3)])
        assert await until_sole_appender(holder) != epoch


async def test_a_revocation_is_heard_at_once_not_at_the_next_renewal(pg: Backend) -> None:
    slow = {"ttl": 60.0, "margin": 1.0, "renew_interval": 30.0, "quiet": 0.0}
    async with pg_store(pg.location, slow) as holder, pg_store(pg.location) as other:
        await holder.append([new_entry(1)])
        await until_sole_appender(holder)
        # Only the notification can make the holder release within this wait: its next renewal is 30 s away and
        # its lease lasts a minute.
        await asyncio.wait_for(other.append([new_entry(2)]), 10)
        assert holder.sole_appender() is None


HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from chroma_ha.store.base import NewEntry
    from chroma_ha.store.postgres import PostgresStore

    async def main():
        store = PostgresStore(sys.argv[1], lease={"ttl": 3.0, "margin": 0.5, "renew_interval": 0.2, "quiet": 0.0})
        await store.open()
        await store.append([NewEntry(op="add", method="POST", path="/held")])
        while store.sole_appender() is None:
            await asyncio.sleep(0.02)
        print("held", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_the_lease_of_a_killed_holder_delays_another_append_until_it_expires(pg: Backend) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, pg.location], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), 30)
        assert line.strip() == b"held"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        _, expires_at, _ = lease_row(pg.location)
        async with pg_store(pg.location) as other:
            [seq] = await asyncio.wait_for(other.append([new_entry(2)]), 30)
            [entry] = await other.read(seq - 1, 1)
        assert entry.created_at >= expires_at, "an append committed while a lease nobody released was unexpired"
        assert other.lease.revocations >= 1
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
