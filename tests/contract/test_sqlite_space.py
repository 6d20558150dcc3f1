"""The SQLite store gives the space of pruned entries back to the file system, new stores and old ones alike."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from chroma_ha.store import NewEntry
from chroma_ha.store.sqlite import AUTO_VACUUM_INCREMENTAL, MIGRATIONS, SQLiteStore

ENTRIES = 400
BODY = 20_000


def pragma(path: Path, name: str) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


def file_bytes(path: Path) -> int:
    """The database file's size once its WAL is folded into it."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


async def fill_and_prune(path: Path) -> tuple[int, int]:
    """File sizes with ENTRIES large entries, and after pruning them all."""
    store = SQLiteStore(str(path))
    await store.open()
    try:
        for _ in range(ENTRIES // 50):
            await store.append([NewEntry(op="add", method="POST", path="/x", body=os.urandom(BODY))] * 50)
        full = file_bytes(path)
        assert await store.prune(await store.head()) == ENTRIES
        return full, file_bytes(path)
    finally:
        await store.close()


async def test_a_new_store_gives_the_pages_of_pruned_entries_back(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    full, pruned = await fill_and_prune(path)
    assert pragma(path, "auto_vacuum") == AUTO_VACUUM_INCREMENTAL
    assert pragma(path, "freelist_count") == 0
    assert full > ENTRIES * BODY and pruned < full // 10


async def test_a_store_made_without_incremental_vacuum_is_switched_once_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    with closing(sqlite3.connect(path)) as conn:  # as an older gateway made it: no auto_vacuum
        conn.executescript(MIGRATIONS[0].sql)
        conn.execute("INSERT INTO cursors (instance, seq, incarnation, updated_at) VALUES ('a', 7, 'i', 1.0)")
        conn.commit()
    assert pragma(path, "auto_vacuum") == 0

    store = SQLiteStore(str(path))
    await store.open()
    try:
        assert {i: c.seq for i, c in (await store.cursors()).items()} == {"a": 7}
    finally:
        await store.close()
    assert pragma(path, "auto_vacuum") == AUTO_VACUUM_INCREMENTAL
    full, pruned = await fill_and_prune(path)
    assert pragma(path, "freelist_count") == 0 and pruned < full // 10
