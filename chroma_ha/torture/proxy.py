"""A fault-injecting TCP proxy between the gateways and one instance: a slow or lossy network on demand.

The gateways are configured with the proxy's URL instead of the instance's, so every byte between them and that
instance (health probes, reads, the applier's writes) crosses it. It runs its own event loop on a thread of its
own, so the recording process's threads never wait on it. `set_faults` changes what it does to every chunk from
then on, kept-alive connections included:
- `latency`: seconds each chunk is held before it is passed on, in both directions;
- `drop`: the chance that a new connection is closed at once, and that a chunk kills its connection with a reset
  (SO_LINGER 0), as a lossy link or a middlebox would.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from concurrent.futures import Future
from dataclasses import dataclass

CHUNK = 65536


@dataclass(frozen=True)
class NetFaults:
    latency: float = 0.0
    drop: float = 0.0


CLEAN = NetFaults()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset rather than a FIN: the peer sees ECONNRESET, not a clean end."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultyProxy:
    """Listens on `127.0.0.1:port` and forwards to `127.0.0.1:upstream_port`."""

    def __init__(self, port: int, upstream_port: int, seed: int) -> None:
        self.port = port
        self.upstream_port = upstream_port
        self._rng = random.Random(f"{seed}-proxy")
        self._faults = CLEAN
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy-{port}", daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultyProxy:
        self._thread.start()
        started: Future[None] = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        started.result(10)
        return self

    def set_faults(self, faults: NetFaults) -> None:
        self._faults = faults  # one reference swap: read by the loop's thread on every chunk

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._writers.add(client_w)
        try:
            if self._faults.drop and self._rng.random() < self._faults.drop:
                _reset(client_w)
                return
            try:
                upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            except OSError:
                _reset(client_w)  # the instance is down: the gateway sees a refused connection as a reset
                return
            self._writers.add(upstream_w)
            try:
                await asyncio.gather(
                    self._pipe(client_r, upstream_w, client_w), self._pipe(upstream_r, client_w, upstream_w)
                )
            finally:
                self._writers.discard(upstream_w)
                upstream_w.transport.abort()
        finally:
            self._writers.discard(client_w)
            client_w.transport.abort()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, source_w: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                chunk = await source.read(CHUNK)
                if not chunk:
                    break
                faults = self._faults
                if faults.latency:
                    await asyncio.sleep(faults.latency)
                if faults.drop and self._rng.random() < faults.drop:
                    _reset(sink)
                    _reset(source_w)
                    return
                sink.write(chunk)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # one side ended: end both, so neither peer waits on a half-open connection
            sink.transport.abort()
            source_w.transport.abort()
