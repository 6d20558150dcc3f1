"""The instance client against a real socket that stops answering, or never finishes its answer: both ways of
asking time out at their deadline, and the connection that timed out is never used again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from chroma_ha.errors import InstanceError
from chroma_ha.local_cluster import free_port
from chroma_ha.upstream.client import WATCH_INTERVAL_S, InstanceClient, Upstream

TIMEOUT_S = 0.3
# The event loop's clock is read once per iteration, at millisecond resolution: a deadline can fall a little early.
CLOCK_SLACK_S = 0.01


class FallsSilent:
    """Answers the first `answers` requests of the whole server, then reads and never answers."""

    def __init__(self, answers: int) -> None:
        self.left = answers
        self.connections = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while await reader.readuntil(b"\r\n\r\n"):
            if self.left <= 0:
                continue
            self.left -= 1
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4\r\n\r\ntrue")
            await writer.drain()


@pytest_asyncio.fixture
async def silent_after_one() -> AsyncIterator[tuple[str, FallsSilent]]:
    behaviour = FallsSilent(answers=1)
    port = free_port()
    server = await asyncio.start_server(behaviour, "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}", behaviour
    server.close()


async def test_an_awaited_request_times_out_and_its_connection_is_dropped(silent_after_one) -> None:
    url, behaviour = silent_after_one
    client = InstanceClient(request_timeout=30.0)
    assert (await client.request(url, "GET", "/first")).body == b"true"
    started = time.monotonic()
    with pytest.raises(InstanceError, match=f"no answer within {TIMEOUT_S:g}s"):
        await client.request(url, "GET", "/second", timeout=TIMEOUT_S)
    took = time.monotonic() - started
    assert took >= TIMEOUT_S - CLOCK_SLACK_S, took
    with pytest.raises(InstanceError):  # a new connection: the timed-out one is not reused for the next request
        await client.request(url, "GET", "/third", timeout=TIMEOUT_S)
    assert behaviour.connections == 2
    await client.close()


async def test_a_request_answered_by_callback_times_out(silent_after_one) -> None:
    url, _ = silent_after_one
    client = InstanceClient(request_timeout=TIMEOUT_S)
    await client.request(url, "GET", "/first")  # leaves a kept-alive connection for send_now
    outcome: asyncio.Future[tuple[Upstream | None, InstanceError | None]] = asyncio.get_running_loop().create_future()
    started = time.monotonic()
    assert client.send_now(url, "GET", "/second", answered=lambda up, error: outcome.set_result((up, error)))
    upstream, error = await asyncio.wait_for(outcome, TIMEOUT_S + 10 * WATCH_INTERVAL_S)
    assert upstream is None and error is not None and "no answer within" in str(error)
    assert time.monotonic() - started >= TIMEOUT_S - CLOCK_SLACK_S
    assert not client.send_now(url, "GET", "/third", answered=lambda up, error: None), "no idle connection is left"
    await client.close()


async def drips_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers with a head and then a byte of body now and then, never reaching the length it announced."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n")
    try:
        while True:
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(WATCH_INTERVAL_S / 4)
    except ConnectionError:
        pass  # the client gave up on it, as it should


async def test_an_answer_that_never_ends_is_cut_at_the_deadline() -> None:
    port = free_port()
    server = await asyncio.start_server(drips_forever, "127.0.0.1", port)
    client = InstanceClient(request_timeout=30.0)
    with pytest.raises(
        InstanceError, match=f"no answer within {TIMEOUT_S:g}s"
    ):  # bytes keep coming: the deadline holds
        await client.request(f"http://127.0.0.1:{port}", "GET", "/", timeout=TIMEOUT_S)
    await client.close()
    server.close()
