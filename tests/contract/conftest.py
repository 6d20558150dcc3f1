"""Fixtures of the store contract suite: every backend, opened on an empty store, as many times as a test asks.

PostgreSQL is a real server started once per session (chroma_ha/local_postgres.py) with a fresh database per test.
When it cannot start, the tests that need it fail: they never skip. The memory backend's location is one
`MemoryDatabase`, which every store opened on it shares, as gateways share a database.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psycopg
import pytest

from chroma_ha.local_postgres import create_database, drop_database
from chroma_ha.store.base import LogStore
from chroma_ha.store.memory import MemoryDatabase, MemoryStore
from chroma_ha.store.postgres import PostgresStore
from chroma_ha.store.sqlite import SQLiteStore

DURABLE = ("sqlite", "postgres")
BACKENDS = (*DURABLE, "memory")


class Backend:
    """One empty store location (a SQLite file, a PostgreSQL database, a memory database) and a way to open stores
    on it.

    Each `open_store()` is a new store object, as a restarted or a second gateway would have.
    """

    def __init__(self, name: str, make: Callable[[], LogStore], location: str, damage: Callable[[], None]) -> None:
        self.name = name
        self.location = location
        self._make = make
        self._damage = damage
        self._open: list[LogStore] = []

    async def open_store(self) -> LogStore:
        store = self._make()
        await store.open()
        self._open.append(store)
        return store

    async def close_store(self, store: LogStore) -> None:
        self._open.remove(store)
        await store.close()

    async def close_all(self) -> None:
        while self._open:
            await self._open.pop().close()

    def drop_log_table(self) -> None:
        """Break the store under its feet, the way a lost or damaged database would."""
        self._damage()


def _drop_sqlite_log(path: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE entries")


def _drop_postgres_log(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE entries")


def _sqlite_backend(tmp_path: Path) -> Backend:
    path = str(tmp_path / "log.db")
    return Backend("sqlite", lambda: SQLiteStore(path), path, lambda: _drop_sqlite_log(path))


def _memory_backend() -> Backend:
    database = MemoryDatabase()
    return Backend("memory", lambda: MemoryStore(database), "memory", lambda: database.fail("the log is lost"))


async def _backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if name != "postgres":
        backend = _sqlite_backend(tmp_path) if name == "sqlite" else _memory_backend()
        try:
            yield backend
        finally:
            await backend.close_all()
        return
    server: str = request.getfixturevalue("postgres_server")
    dbname = f"contract_{uuid.uuid4().hex[:16]}"
    dsn = create_database(server, dbname)
    backend = Backend("postgres", lambda: PostgresStore(dsn), dsn, lambda: _drop_postgres_log(dsn))
    try:
        yield backend
    finally:
        await backend.close_all()
        drop_database(server, dbname)


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async for b in _backend(request.param, request, tmp_path):
        yield b


@pytest.fixture
async def store(backend: Backend) -> LogStore:
    return await backend.open_store()


@pytest.fixture(params=DURABLE)
async def durable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A backend with a schema on disk (SQLite, PostgreSQL), for what concerns that schema: its migrations."""
    async for b in _backend(request.param, request, tmp_path):
        yield b


@pytest.fixture
async def pg(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A PostgreSQL backend only, for what only a shared store can do (several gateways on one database)."""
    async for b in _backend("postgres", request, tmp_path):
        yield b
