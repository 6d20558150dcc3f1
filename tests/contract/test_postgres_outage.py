"""A PostgreSQL store whose server stops: it fails at once (within seconds, not after psycopg's 30 s wait for a
pooled connection; the write path gives up on it after one), and it answers again within about a second of the
server's return, however long the outage lasted (the pool's reconnection backoff is capped). A real server,
stopped and started."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chroma_ha.errors import StoreError
from chroma_ha.local_postgres import StoppablePostgres, stoppable_postgres
from chroma_ha.store.postgres import PostgresStore
from tests.contract.test_store import new_entry

OUTAGE_S = 8.0  # long enough for psycopg's own backoff to have grown to several seconds
FAILS_WITHIN_S = 4.0
RESUMES_WITHIN_S = 3.0


@pytest.fixture
def server() -> Iterator[StoppablePostgres]:
    """A PostgreSQL of this test's own, which it stops and starts (under the system temp dir: the server runs as
    another user and must traverse the path)."""
    base = Path(tempfile.mkdtemp(prefix="chroma-ha-pg-store-outage-"))
    try:
        with stoppable_postgres(base) as started:
            yield started
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def test_a_stopped_server_fails_the_store_at_once_and_its_return_resumes_it_quickly(
    server: StoppablePostgres,
) -> None:
    store = PostgresStore(server.dsn)
    await store.open()
    try:
        await store.append([new_entry(1)])
        await asyncio.to_thread(server.stop)
        stopped = time.monotonic()
        while time.monotonic() < stopped + OUTAGE_S:
            with pytest.raises(StoreError):
                await asyncio.wait_for(store.head(), FAILS_WITHIN_S)
            with pytest.raises(StoreError):
                await asyncio.wait_for(store.append([new_entry(2)]), FAILS_WITHIN_S)
            await asyncio.sleep(0.5)
        await asyncio.to_thread(server.start)
        back = time.monotonic()
        while True:
            try:
                head = await asyncio.wait_for(store.head(), FAILS_WITHIN_S)
                break
            except StoreError:
                assert time.monotonic() < back + RESUMES_WITHIN_S, "the store did not resume after the server"
                await asyncio.sleep(0.05)
        assert head == 1
        assert await store.append([new_entry(3)]) == [2]
    finally:
        await store.close()
