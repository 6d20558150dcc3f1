"""The LISTEN connection's reader, against a real PostgreSQL: every notification is handed on, those that arrive
while the connection is being pinged included, and a connection the server ends is reported lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from chroma_ha.store.postgres_listen import hear

if TYPE_CHECKING:
    from tests.contract.conftest import Backend

CHANNEL = "listen_test"
HEARD_WITHIN_S = 5.0


@contextlib.asynccontextmanager
async def hearing(
    dsn: str, *, ping: str = "SELECT 1", ping_interval: float = 30.0
) -> AsyncIterator[tuple[list[str], asyncio.Task[Any], psycopg.AsyncConnection[Any]]]:
    """A connection listening on CHANNEL, handed to `hear`: the payloads heard, the task hearing, the connection."""
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await conn.execute(f"LISTEN {CHANNEL}")
    heard: list[str] = []
    task = asyncio.create_task(hear(conn, lambda n: heard.append(n.payload), ping=ping, ping_interval=ping_interval))
    try:
        yield heard, task, conn
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, psycopg.OperationalError):
            await task
        await conn.close()


async def _notify(dsn: str, *payloads: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for payload in payloads:
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))


async def _until(condition: Callable[[], object], what: Callable[[], str]) -> None:
    deadline = time.monotonic() + HEARD_WITHIN_S
    while not condition():
        assert time.monotonic() < deadline, what()
        await asyncio.sleep(0.01)


async def test_notifications_are_handed_on_in_order_while_idle(pg: Backend) -> None:
    async with hearing(pg.location) as (heard, _, _):
        await asyncio.sleep(0.05)
        await _notify(pg.location, *(str(n) for n in range(50)))
        await _until(lambda: len(heard) == 50, lambda: f"heard {len(heard)} of 50")
        assert heard == [str(n) for n in range(50)]


async def test_a_notification_sent_during_a_ping_is_handed_on(pg: Backend) -> None:
    """The ping takes half a second (the reader is off meanwhile) and starts at once: what arrives during it reaches
    the handler through psycopg, not the reader."""
    async with hearing(pg.location, ping="SELECT pg_sleep(0.5)", ping_interval=0.01) as (heard, _, _):
        await asyncio.sleep(0.1)  # inside the first ping
        await _notify(pg.location, "during the ping")
        await _until(lambda: heard == ["during the ping"], lambda: f"heard {heard}")


async def test_a_notification_that_comes_in_with_the_pings_answer_is_handed_on_before_the_next_ping(
    pg: Backend,
) -> None:
    """A ping that notifies the connection itself gets the notification with its answer: no more bytes come to wake
    the reader, so psycopg must hand it on. Each ping notifies its own number; the first is heard while the second
    has not run (a second apart)."""
    async with await psycopg.AsyncConnection.connect(pg.location, autocommit=True) as admin:
        await admin.execute("CREATE SEQUENCE pings")
        ping = f"SELECT pg_notify('{CHANNEL}', nextval('pings')::text)"
        async with hearing(pg.location, ping=ping, ping_interval=1.0) as (heard, _, _):
            await _until(lambda: heard, lambda: "the first ping's notification was not heard")
            row = await (await admin.execute("SELECT last_value FROM pings")).fetchone()
            assert heard == ["1"] and row == (1,), f"heard {heard} after {row} pings"


async def test_a_connection_the_server_ends_is_reported_lost(pg: Backend) -> None:
    async with hearing(pg.location) as (_, task, conn):
        await asyncio.sleep(0.05)
        async with await psycopg.AsyncConnection.connect(pg.location, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError):
            await asyncio.wait_for(task, HEARD_WITHIN_S)
