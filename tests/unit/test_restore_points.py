"""Where a restore may stop: the entries of a backup and of an archive beside it, and the points refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from chroma_ha.backup.format import FORMAT, VERSION, record_file, save_manifest
from chroma_ha.backup.restore import EntrySource
from chroma_ha.backup.segments import Archiver, save_archive
from chroma_ha.cli.restore import parse_time, target_seq
from chroma_ha.errors import BackupError
from chroma_ha.store import MemoryStore, NewEntry

START, CONSISTENT, END = 10, 12, 15


def backup(folder: Path) -> dict[str, Any]:
    """A backup whose snapshot starts at seq 10, is consistent at 12, and holds entries 11 to 15."""
    manifest: dict[str, Any] = {"format": FORMAT, "version": VERSION, "complete": True, "files": {}}
    manifest.update(start_seq=START, consistent_seq=CONSISTENT, end_seq=END)
    lines = [{"seq": seq, "created_at": 1000.0 + seq, "op": "add"} for seq in range(START + 1, END + 1)]
    (folder / "log").mkdir(parents=True)
    (folder / "log" / "11-15.jsonl").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    record_file(manifest, folder, "log/11-15.jsonl", len(lines))
    save_manifest(folder, manifest)
    return manifest


def archive(folder: Path, entries: int) -> Path:
    """An archive of a log of `entries` entries from seq 1, in one segment."""

    async def build() -> None:
        store = MemoryStore()
        await store.append([NewEntry(op="add", method="POST", path="/p") for _ in range(entries)])
        assert await Archiver(store, folder, owner="g", interval=1.0, lease_ttl=5.0).archive_once(time.time() + 2)

    asyncio.run(build())
    return folder


def test_the_backup_alone_reaches_its_end_seq_and_refuses_points_outside_it(tmp_path: Path) -> None:
    manifest = backup(tmp_path / "b")
    entries = EntrySource(tmp_path / "b", manifest, None)
    assert [line["seq"] for line in entries.lines(END)] == [11, 12, 13, 14, 15]
    assert target_seq(manifest, entries, None, None) == END
    assert target_seq(manifest, entries, 13, None) == 13
    with pytest.raises(BackupError, match="--to-seq 11 is before seq 12, where this backup becomes consistent"):
        target_seq(manifest, entries, 11, None)
    with pytest.raises(BackupError, match="holds entries up to seq 15, not 16"):
        target_seq(manifest, entries, 16, None)


def test_a_time_picks_the_last_entry_logged_at_or_before_it(tmp_path: Path) -> None:
    manifest = backup(tmp_path / "b")
    entries = EntrySource(tmp_path / "b", manifest, None)
    assert target_seq(manifest, entries, None, 1013.5) == 13
    assert target_seq(manifest, entries, None, 1015.0) == 15
    with pytest.raises(BackupError, match="seq 11 is the last logged at that time"):
        target_seq(manifest, entries, None, 1011.2)
    assert parse_time("2026-01-02T03:04:05") == parse_time("2026-01-02T03:04:05+00:00") == 1767323045.0
    assert parse_time("1767323045.5") == 1767323045.5


def test_an_archive_beside_the_backup_carries_the_entries_on_after_its_end(tmp_path: Path) -> None:
    manifest = backup(tmp_path / "b")
    entries = EntrySource(tmp_path / "b", manifest, archive(tmp_path / "a", 20))
    assert entries.last == 20
    assert [line["seq"] for line in entries.lines(18)] == list(range(11, 19))  # the backup's, then the archive's
    assert target_seq(manifest, entries, None, None) == 20


def test_an_archive_that_starts_after_the_backup_ends_is_refused(tmp_path: Path) -> None:
    manifest = backup(tmp_path / "b")
    folder = archive(tmp_path / "a", 20)
    document = orjson.loads((folder / "archive.json").read_bytes())
    document["first_seq"] = 17  # as if the log had been pruned past 16 before archiving began
    document["segments"][0]["first"] = 17

    save_archive(folder, document)
    with pytest.raises(BackupError, match="starts at seq 17, after the backup's last entry 15"):
        EntrySource(tmp_path / "b", manifest, folder)
