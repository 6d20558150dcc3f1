"""A wake-up that many tasks wait for, each with its own timeout, without a task or a lock per wait.

The appliers wait for new log entries and writes wait for the appliers' progress, many times a second each:
`asyncio.wait_for(event.wait(), timeout)` would start a task for every one of those waits.
"""

from __future__ import annotations

import asyncio


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class Pulse:
    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[bool]] = set()

    def fire(self) -> None:
        """Wake every task waiting now (not those that start waiting later)."""
        if not self._waiters:
            return
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    async def wait(self, timeout: float, *, also: Pulse | None = None) -> bool:
        """Until the next `fire` of this pulse or of `also` (True), or for `timeout` seconds (False)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.add(waiter)
        if also is not None:
            also._waiters.add(waiter)
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)
            if also is not None:
                also._waiters.discard(waiter)
