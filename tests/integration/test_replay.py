"""Invariant 2: a crash between applying an entry and recording it makes the entry applied again, harmlessly.

The store refuses the first commit of every batch, exactly as if the gateway had died after the instance applied
the batch and before the cursor moved: the applier then applies the same batch again. Every kind of write is
replayed this way, catalog changes included, and the instances must end as if each had been applied once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from chroma_ha.app import Gateway
from chroma_ha.errors import StoreError
from chroma_ha.local_cluster import ChromaServer, free_port
from chroma_ha.settings import Settings
from chroma_ha.store import Applied, Divergence, IdMapping
from chroma_ha.store.sqlite import SQLiteStore
from tests.harness import catalog_and_data_churn, snapshot, wait_drained


class CrashBeforeCommitStore(SQLiteStore):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.refused: set[tuple[str, int]] = set()

    async def commit_batch(
        self, instance: str, applied: Sequence[Applied], cursor: int, mappings: Sequence[IdMapping]
    ) -> list[Divergence]:
        if (instance, cursor) not in self.refused:
            self.refused.add((instance, cursor))
            raise StoreError("injected: the gateway died before recording this batch")
        return await super().commit_batch(instance, applied, cursor, mappings)


@pytest.fixture
def replaying_gateway(
    tmp_path: Path, chroma_pair: list[ChromaServer]
) -> Iterator[tuple[int, list[ChromaServer], CrashBeforeCommitStore]]:
    """A gateway in this process (so that its store can be the one above) in front of `chroma_pair`."""
    settings = Settings.load(
        {
            "instances": tuple(s.url for s in chroma_pair),
            "port": free_port(),
            "backoff_base": 0.01,
            "backoff_cap": 0.05,
            "health_interval": 0.25,
        },
        env={},
    )
    store = CrashBeforeCommitStore(str(tmp_path / "wal.db"))
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()
    gateway = Gateway(settings, store=store)
    thread = threading.Thread(target=lambda: loop.run_until_complete(gateway.serve(stop, on_ready=ready.set)))
    thread.start()
    try:
        assert ready.wait(30), "the gateway did not start"
        yield settings.http.port, chroma_pair, store
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        assert not thread.is_alive(), "the gateway did not stop within 15s"
        loop.close()


def test_every_write_replayed_after_a_crash_before_commit_changes_nothing(
    replaying_gateway: tuple[int, list[ChromaServer], CrashBeforeCommitStore],
) -> None:
    port, servers, store = replaying_gateway
    catalog_and_data_churn(port)
    wait_drained(f"http://127.0.0.1:{port}")
    first, second = (snapshot(s.url) for s in servers)
    assert first == second
    assert sorted(first) == ["renamed", "temp"]
    assert first["temp"]["records"].keys() == {"t2"}
    assert first["renamed"]["metadata"] == {"v": 2}
    assert set(first["renamed"]["records"]) == {"a", "b"}
    assert len(store.refused) >= 2 * 14, "every batch on every instance was replayed"
    divergences = asyncio.run(_divergences(store))
    assert divergences == []


async def _divergences(store: SQLiteStore) -> list[Divergence]:
    fresh = SQLiteStore(store.path)
    await fresh.open()
    try:
        return await fresh.divergences()
    finally:
        await fresh.close()
