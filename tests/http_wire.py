"""The HTTP-in tests' wire: raw sockets on loopback, answers parsed off the wire, and h11 as the reference reader
of a request stream.

Every helper that more than one HTTP-in test module uses lives here. Like those modules, it imports nothing of the
package but `http_server`, so they run whatever state the rest of it is in (hence its own `free_port`).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from chroma_ha.gateway.http_server import MAX_HEAD_BYTES


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length"))
    return head + await reader.readexactly(length)


# Hop-by-hop headers, written out here again rather than taken from the server, so the test checks its rule.
HOP_BY_HOP = {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"expect"}
Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class Parsed:
    method: str
    path: str
    query: str
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class Outcome:
    requests: tuple[Parsed, ...]
    refused: int | None  # the status the stream was refused with; None: every complete request was accepted


def end_to_end(headers: Headers) -> Headers:
    named = {token.strip().lower() for name, value in headers if name == b"connection" for token in value.split(b",")}
    return tuple(
        (name, value)
        for name, value in headers
        if name not in HOP_BY_HOP and name not in named and not name.startswith(b"proxy-")
    )


def split_target(target: bytes) -> tuple[str, str]:
    if target.startswith(b"/") or target == b"*":
        path, _, query = target.partition(b"?")
        return path.decode(), query.decode()
    parts = urlsplit(target.decode())
    return parts.path or "/", parts.query


def h11_reads(pieces: list[bytes]) -> Outcome:
    """What h11 makes of the stream, each request answered as it completes, the client's EOF after the stream.
    h11 limits only what it holds incomplete, so it is given 1 KiB at a time, when it asks for more: a head over
    the limit is then one it holds incomplete past the limit."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    chunks = [piece[start : start + 1024] for piece in pieces for start in range(0, len(piece), 1024)]
    chunks.reverse()
    requests: list[Parsed] = []
    head: h11.Request | None = None
    body = b""
    eof = False
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:
            # a request cut short by the end of the stream is no decision: the gateway drops it unanswered
            return Outcome(tuple(requests), None if eof else exc.error_status_hint)
        if event is h11.NEED_DATA:
            eof = not chunks
            connection.receive_data(chunks.pop() if chunks else b"")
        elif event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
            return Outcome(tuple(requests), None)
        elif isinstance(event, h11.Request):
            head, body = event, b""
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            path, query = split_target(head.target)
            method = "GET" if head.method == b"HEAD" else head.method.decode()  # the gateway hands HEAD on as GET
            requests.append(Parsed(method, path, query, end_to_end(tuple(head.headers)), body))
            connection.send(h11.Response(status_code=404, headers=[(b"content-length", b"0")]))  # never a switch
            connection.send(h11.EndOfMessage())
            if connection.our_state is h11.MUST_CLOSE:
                return Outcome(tuple(requests), None)
            connection.start_next_cycle()


def answers_in(data: bytes) -> list[tuple[int, dict[bytes, bytes]]]:
    """Final answers, as (status, headers); interim 1xx answers are left out."""
    found = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = dict(line.lower().split(b": ", 1) for line in lines[1:])
        data = data[int(fields.get(b"content-length", b"0")) :]
        if status >= 200:
            found.append((status, fields))
    return found
