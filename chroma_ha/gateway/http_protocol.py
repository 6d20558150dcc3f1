"""uvicorn's httptools protocol, with the writes of one response joined into one send.

uvicorn writes a response's status line and headers, then its body, as two writes, and uvloop sends each at once:
two segments on the wire, so the client wakes twice and the gateway makes two system calls where Chroma makes
one. On this path every loopback write costs tens of microseconds (the kernel delivers it to the reader in the
writer's time), so the writes one step of the event loop makes are held and sent together as it ends.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _JoinedWrites:
    """A transport whose writes wait for the end of the current event-loop step and go out as one `writelines`.

    Everything else is the real transport's; `close` sends what is held first.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self._send)
        self._held.append(data)

    def _send(self) -> None:
        held, self._held = self._held, []
        if held and not self._transport.is_closing():
            self._transport.writelines(held)

    def close(self) -> None:
        self._send()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class JoinedWritesHttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_JoinedWrites(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]
