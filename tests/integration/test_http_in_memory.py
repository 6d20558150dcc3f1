"""Memory of the gateway's HTTP server under clients that hold it: the server runs in a child process (so the
RSS measured is the server's alone), the clients here. Meanwhile another client's requests keep being answered
within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil

from tests.http_wire import free_port, read_answer

MIB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]

SERVER = """
import asyncio, sys
import uvloop
from chroma_ha.gateway.http_server import HttpResponse, HttpServer

class Handler:
    async def __call__(self, request):
        if request.path == "/block":
            await asyncio.Event().wait()  # a handler that never answers: a slow instance, at its worst
        if request.path.startswith("/big/"):
            return HttpResponse(200, b"x" * int(request.path.rsplit("/", 1)[1]))
        return HttpResponse(200, b'{"ok": true}')

    def forward_now(self, request, respond):
        return False

async def main():
    server = HttpServer(Handler(), max_body_bytes=int(sys.argv[1]))
    await server.start("127.0.0.1", int(sys.argv[2]))
    print("ready", flush=True)
    await asyncio.Event().wait()

uvloop.run(main())
"""


class Child:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.peak = 0

    @property
    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)


@contextlib.asynccontextmanager
async def child_server(max_body_bytes: int) -> AsyncIterator[Child]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(max_body_bytes), str(port)], stdout=subprocess.PIPE, env=env, cwd=ROOT
    )
    try:
        assert process.stdout is not None
        assert await asyncio.get_running_loop().run_in_executor(None, process.stdout.readline) == b"ready\n"
        yield Child(process, port)
    finally:
        process.kill()
        process.wait()


@contextlib.asynccontextmanager
async def watched(child: Child) -> AsyncIterator[list[float]]:
    """While the body runs: the child's peak RSS sampled, and a request on another connection every 50 ms
    (the latencies, yielded). The latency of a request still unanswered when the body ends counts too."""
    latencies: list[float] = []
    pending: list[float] = []

    async def sample() -> None:
        while True:
            child.peak = max(child.peak, child.rss)
            await asyncio.sleep(0.02)

    async def health() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", child.port)
        try:
            while True:
                pending[:] = [time.monotonic()]
                writer.write(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n")
                await read_answer(reader)
                latencies.append(time.monotonic() - pending.pop())
                await asyncio.sleep(0.05)
        finally:
            writer.close()

    tasks = [asyncio.create_task(sample()), asyncio.create_task(health())]
    try:
        yield latencies
    finally:
        for task in tasks:
            task.cancel()
        latencies.extend(time.monotonic() - started for started in pending)


async def send_until_blocked(writer: asyncio.StreamWriter, requests: list[bytes], patience: float) -> int:
    """Send the requests one after the other; stop when the server has not taken any for `patience` seconds."""
    sent = 0
    for raw in requests:
        writer.write(raw)
        try:
            await asyncio.wait_for(writer.drain(), patience)
        except TimeoutError:
            break
        sent += len(raw)
    return sent


async def test_pipelined_large_uploads_behind_a_handler_that_never_answers_stay_within_twice_the_body_limit() -> None:
    """Issue 10: one connection pipelining large requests grew the gateway by 320 MB for 480 MiB sent: nothing
    bounded the bodies waiting their turn. Now they stay within one body limit (32 MiB here) and a read: the
    bound is twice that, for 256 MiB offered (it read all of it: 256 MiB more)."""
    async with child_server(max_body_bytes=32 * MIB) as child:
        base = child.rss
        async with watched(child) as latencies:
            _, writer = await asyncio.open_connection("127.0.0.1", child.port)
            body = b"x" * (16 * MIB)
            upload = b"POST /up HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            blocked = b"GET /block HTTP/1.1\r\nhost: t\r\n\r\n"
            sent = await send_until_blocked(writer, [blocked] + [upload] * 16, patience=2.0)
            await asyncio.sleep(0.5)
        writer.close()
        assert child.peak - base < 64 * MIB, f"grew by {(child.peak - base) / MIB:.0f} MiB"
        assert sent < 16 * len(upload), "the server stopped reading"
        assert latencies and max(latencies) < 1.0, f"another client waited {max(latencies):.2f} s"


async def test_a_client_that_pipelines_and_never_reads_its_large_answers_holds_little_memory() -> None:
    """Issue 10, the same client reading none of its answers: reading stops once an answer waits in the write
    buffer. At worst an answer (8 MiB), one body in hand (8 MiB) and bodies waiting within one limit (32 MiB):
    the bound is 64 MiB, for 512 MiB offered (it grew by about 150 MiB)."""
    async with child_server(max_body_bytes=32 * MIB) as child:
        base = child.rss
        async with watched(child) as latencies:
            _, writer = await asyncio.open_connection("127.0.0.1", child.port)
            body = b"x" * (8 * MIB)
            request = b"POST /big/%d HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n%s" % (8 * MIB, len(body), body)
            await send_until_blocked(writer, [request] * 64, patience=2.0)  # never reads an answer
            await asyncio.sleep(0.5)
        writer.close()
        assert child.peak - base < 64 * MIB, f"grew by {(child.peak - base) / MIB:.0f} MiB"
        assert latencies and max(latencies) < 1.0, f"another client waited {max(latencies):.2f} s"


async def test_a_thousand_idle_connections_cost_under_40_kib_each() -> None:
    """A thousand connections doing nothing, half of them in the middle of a head (about 3 MiB in all)."""
    async with child_server(max_body_bytes=MIB) as child:
        base = child.rss
        async with watched(child) as latencies:
            idle = [await asyncio.open_connection("127.0.0.1", child.port) for _ in range(1000)]
            for n, (_, writer) in enumerate(idle):
                if n % 2:  # half of them in the middle of a head
                    writer.write(b"GET /slow HTTP/1.1\r\nhost: t\r\nx-a: " + b"a" * 512)
            await asyncio.sleep(1.0)
            child.peak = max(child.peak, child.rss)
        for _, writer in idle:
            writer.close()
        assert child.peak - base < 40 * 1000 * 1024, f"grew by {(child.peak - base) / MIB:.1f} MiB"
        assert latencies and max(latencies) < 1.0, f"another client waited {max(latencies):.2f} s"
