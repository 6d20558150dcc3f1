"""The LISTEN connection of a PostgreSQL store: notifications handed on as they arrive, and nothing run in between.

psycopg's `AsyncConnection.notifies()` wakes every 0.1 s to look for a cancellation, even with no timeout: ten
event-loop wake-ups a second, which cost an idle gateway 3.2 ms of CPU a second on a 2-core machine, against
0.05 ms for a reader on the socket (measured with `getrusage` around 5 s of each on one connection). So the
connection's socket gets a reader, a callback that takes in what arrived and hands each notification to the
connection's notify handlers. The connection is pinged now and then with the reader off; notifications that
arrive during the ping reach the same handlers through psycopg itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, NoReturn

import psycopg
from psycopg import pq


async def hear(
    conn: psycopg.AsyncConnection[Any],
    on_notification: Callable[[psycopg.Notify], None],
    *,
    ping: str,
    ping_interval: float,
) -> NoReturn:
    """Hand every notification on `conn` to `on_notification` until the connection is lost, which raises
    psycopg.OperationalError; run `ping` every `ping_interval` seconds, so a dead peer is found."""
    loop = asyncio.get_running_loop()
    pgconn = conn.pgconn
    lost: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            pgconn.consume_input()
        except psycopg.OperationalError as exc:
            _lose(exc)
            return
        if pgconn.status != pq.ConnStatus.OK:  # the server ended the session (it said why before closing)
            _lose(psycopg.OperationalError(pgconn.get_error_message() or "the LISTEN connection was closed"))
            return
        while (notification := pgconn.notifies()) is not None:
            assert pgconn.notify_handler is not None  # psycopg's, which calls the connection's handlers
            pgconn.notify_handler(notification)

    def _lose(exc: psycopg.OperationalError) -> None:
        loop.remove_reader(fd)
        if not lost.done():
            lost.set_exception(exc)

    fd = pgconn.socket
    conn.add_notify_handler(on_notification)
    try:
        while True:
            loop.add_reader(fd, readable)
            try:
                await asyncio.wait({lost}, timeout=ping_interval)
            finally:
                loop.remove_reader(fd)
            if lost.done():
                lost.result()  # raises the error the connection was lost to
            await conn.execute(ping)
    finally:
        conn.remove_notify_handler(on_notification)
