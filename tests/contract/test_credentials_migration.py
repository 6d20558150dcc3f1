"""Migration 0004 of both durable stores: entries an older gateway logged with a client's `authorization` and
`x-chroma-token` headers lose them, every other header and the entries themselves kept; no byte of the token is left
in the SQLite file (its freed space is zeroed) or in the live rows of PostgreSQL."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import psycopg

from tests.contract.database import create_version_1
from tests.contract.test_store import read_all

if TYPE_CHECKING:
    from tests.contract.conftest import Backend

TOKEN = "old-client-token-5e0b1c9d7a"
OLD_HEADERS = {"authorization": f"Bearer {TOKEN}", "x-chroma-token": TOKEN, "content-type": "application/json"}


def log_with_credentials(backend: Backend) -> None:
    """A store an older gateway left (schema version 1) whose log holds an entry logged with a client's
    credentials, as gateways did before 0004: opening it runs every later step."""
    create_version_1(backend)
    row = (10, 11.0, "add", "POST", "/10", "", orjson.dumps(OLD_HEADERS), b"{}", None, "t/d", b"{}")
    insert = (
        "INSERT INTO entries (seq, created_at, op, method, path, query, headers, body, collection_id, scope, extra)"
        " VALUES ({0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0})"
    )
    if backend.name == "sqlite":
        with closing(sqlite3.connect(backend.location)) as conn, conn:
            conn.execute(insert.format("?"), row)
    else:
        as_text = (*row[:6], row[6].decode(), *row[7:10], row[10].decode())
        with psycopg.connect(backend.location) as pg:
            pg.execute(insert.format("%s"), as_text)  # type: ignore[arg-type]


def live_bytes(backend: Backend) -> bytes:
    if backend.name == "sqlite":
        return b"".join(p.read_bytes() for p in Path(backend.location).parent.glob(Path(backend.location).name + "*"))
    with psycopg.connect(backend.location) as pg, pg.cursor().copy("COPY entries TO STDOUT") as copy:
        return b"".join(bytes(block) for block in copy)


async def test_entries_logged_with_client_credentials_lose_them(durable: Backend) -> None:
    log_with_credentials(durable)
    assert TOKEN.encode() in live_bytes(durable)

    store = await durable.open_store()
    entries = {e.seq: e for e in await read_all(store)}
    await durable.close_all()

    assert entries[10].headers == {"content-type": "application/json"}
    assert entries[10].op == "add" and entries[10].path == "/10"
    assert all(e.headers == {"x-n": str(seq)} for seq, e in entries.items() if seq != 10)  # untouched
    assert TOKEN.encode() not in live_bytes(durable)
