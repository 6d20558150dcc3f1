"""The seam below everything that talks to an instance: `Transport` is what the gateway's parts ask of it.

`InstanceClient` is the transport over the network. `InProcessTransport` hands every request to a function in the
same process, the way httpx's MockTransport does, so the request paths, the appliers and the bootstrap can be
tested against instances simulated in memory, with no socket and no subprocess.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..errors import InstanceError
from .client import Answered, Headers, Upstream


class Transport(Protocol):
    async def request(
        self,
        instance: str,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Headers = None,
        body: bytes = b"",
        timeout: float | None = None,
        idempotent: bool | None = None,
    ) -> Upstream:
        """The instance's answer; InstanceError when it gives none (refused, reset, timed out). `idempotent`: may
        the request be sent again when a kept-alive connection turns out closed (None: only GET and HEAD)?"""
        ...

    def send_now(
        self,
        instance: str,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Headers = None,
        body: bytes = b"",
        answered: Answered,
    ) -> bool:
        """Send at once and call `answered` later with the answer or the error; False, with nothing sent, when it
        cannot be sent at once (the caller then uses `request`)."""
        ...

    async def close(self) -> None: ...


# One request as an in-process instance sees it: (instance, method, path, query, headers, body).
Handler = Callable[[str, str, str, str, Headers, bytes], Awaitable[Upstream]]


class InProcessTransport:
    """Every request answered by `handler`, which raises InstanceError for an instance that gives no answer; one
    that takes longer than the timeout fails as the network's does."""

    def __init__(self, handler: Handler, request_timeout: float) -> None:
        self._handler = handler
        self._timeout = request_timeout
        self._tasks: set[asyncio.Task[None]] = set()

    async def request(
        self,
        instance: str,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Headers = None,
        body: bytes = b"",
        timeout: float | None = None,
        idempotent: bool | None = None,
    ) -> Upstream:
        limit = timeout or self._timeout
        try:
            return await asyncio.wait_for(self._handler(instance, method, path, query, headers, body), limit)
        except TimeoutError:
            raise InstanceError(instance, f"TimeoutError: no answer within {limit:g}s") from None

    def send_now(
        self,
        instance: str,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Headers = None,
        body: bytes = b"",
        answered: Answered,
    ) -> bool:
        async def exchange() -> None:
            try:
                upstream = await self.request(instance, method, path, query=query, headers=headers, body=body)
            except InstanceError as exc:
                answered(None, exc)
                return
            answered(upstream, None)

        task = asyncio.get_running_loop().create_task(exchange())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
