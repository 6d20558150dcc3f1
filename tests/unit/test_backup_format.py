"""The backup and archive formats without servers: manifests and their checksums, record pages, the archive's
segments (closed when due, immutable, checksummed, contiguous), and retention held back by the archive."""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from pathlib import Path

import orjson
import pytest

from chroma_ha.backup.container import opened, pack, staging
from chroma_ha.backup.format import (
    FORMAT,
    VERSION,
    add_payload,
    check_files,
    encode_records,
    load_manifest,
    record_file,
    save_manifest,
)
from chroma_ha.backup.segments import (
    ARCHIVE_CURSOR,
    Archiver,
    archived_lines,
    check_segments,
    last_seq,
    load_archive,
)
from chroma_ha.catalog.inventory import Records
from chroma_ha.errors import BackupError
from chroma_ha.replication.retention import Retention
from chroma_ha.store import MemoryStore, NewEntry


def flip_a_byte(path: Path, at: int = 5) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def entries(count: int, start: int = 0) -> list[NewEntry]:
    return [
        NewEntry(
            op="add",
            method="POST",
            path=f"/api/v2/tenants/t/databases/d/collections/{'0' * 8}-0000-0000-0000-{'0' * 12}/add",
            body=orjson.dumps({"ids": [f"r{start + n}"], "embeddings": [[1.0, 2.0]]}),
            headers={"content-type": "application/json"},
            collection_id=f"{'0' * 8}-0000-0000-0000-{'0' * 12}",
        )
        for n in range(count)
    ]


def test_a_page_of_records_becomes_an_add_with_the_official_clients_base64_float32_embeddings() -> None:
    page = Records(["a", "b"], [[0.5, -1.25], [3.0, 4.0]], [{"k": 1}, None], ["doc", None], [None, None])
    body, count = add_payload(encode_records(page))
    sent = orjson.loads(body)
    assert count == 2 and "uris" not in sent  # a column of nulls only is left out, as Records.payload does
    assert (sent["ids"], sent["metadatas"], sent["documents"]) == (page.ids, page.metadatas, page.documents)
    assert [list(struct.unpack("<2f", base64.b64decode(e))) for e in sent["embeddings"]] == page.embeddings


def test_a_manifest_checks_itself_and_every_file(tmp_path: Path) -> None:
    manifest = {"format": FORMAT, "version": VERSION, "complete": True, "files": {}}
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "p.json").write_bytes(b'{"ids": ["a"]}')
    record_file(manifest, tmp_path, "records/p.json", 1)
    save_manifest(tmp_path, manifest)
    assert check_files(tmp_path, load_manifest(tmp_path)) == 1

    flip_a_byte(tmp_path / "records" / "p.json")
    with pytest.raises(BackupError, match=r"records/p\.json is corrupted"):
        check_files(tmp_path, load_manifest(tmp_path))

    text = (tmp_path / "manifest.json").read_text().replace('"complete": true', '"complete": false')
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(BackupError, match=r"manifest\.json is corrupted: its checksum"):
        load_manifest(tmp_path)


def test_a_backup_packed_into_a_tar_gz_opens_as_the_same_folder(tmp_path: Path) -> None:
    target = tmp_path / "b.tar.gz"
    folder = staging(target)
    manifest = {"format": FORMAT, "version": VERSION, "complete": True, "files": {}}
    (folder / "log").mkdir(parents=True)
    (folder / "log" / "1-2.jsonl").write_bytes(b'{"seq": 1}\n{"seq": 2}\n')
    record_file(manifest, folder, "log/1-2.jsonl", 2)
    save_manifest(folder, manifest)
    pack(folder, target)
    assert target.is_file() and not folder.exists()
    with opened(target) as unpacked:
        assert check_files(unpacked, load_manifest(unpacked)) == 1


def test_segments_close_when_due_are_listed_checksummed_and_hold_every_entry_in_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = MemoryStore()
        archiver = Archiver(store, tmp_path, owner="g", interval=5.0, lease_ttl=10.0)
        await store.append(entries(3))
        assert not await archiver.archive_once(now=time.time())  # the first entry is not 5 s old yet
        assert await archiver.archive_once(now=time.time() + 6)
        await store.append(entries(2, start=3))
        assert await archiver.archive_once(now=time.time() + 6)
        assert not await archiver.archive_once(now=time.time() + 6)  # nothing left to archive

        manifest = load_archive(tmp_path)
        assert manifest is not None
        assert [(s["first"], s["last"], s["entries"]) for s in manifest["segments"]] == [(1, 3, 3), (4, 5, 2)]
        assert last_seq(manifest) == 5
        check_segments(tmp_path, manifest)
        assert [line["seq"] for line in archived_lines(tmp_path, manifest, 2)] == [3, 4, 5]
        assert (await store.cursors())[ARCHIVE_CURSOR].seq == 5  # retention is held back from here on

        first = tmp_path / "segments" / manifest["segments"][0]["file"]
        flip_a_byte(first, at=20)
        with pytest.raises(BackupError, match=f"{first.name} is corrupted"):
            check_segments(tmp_path, manifest)

    asyncio.run(scenario())


def test_an_archive_with_a_missing_segment_is_refused_as_a_gap(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = MemoryStore()
        archiver = Archiver(store, tmp_path, owner="g", interval=1.0, lease_ttl=10.0)
        for n in range(3):
            await store.append(entries(2, start=2 * n))
            assert await archiver.archive_once(now=time.time() + 2)
        manifest = load_archive(tmp_path)
        assert manifest is not None
        del manifest["segments"][1]
        with pytest.raises(BackupError, match="starts at seq 5, not 3: the archive has a gap"):
            check_segments(tmp_path, manifest)

    asyncio.run(scenario())


def test_retention_never_prunes_what_the_archive_has_not_taken() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        await store.append(entries(10))
        await store.set_cursor("http://i", 10, "inc")
        await store.set_cursor(ARCHIVE_CURSOR, 4, ARCHIVE_CURSOR)
        retention = Retention(store, ["http://i"], 0.0, holders=[ARCHIVE_CURSOR])
        await retention.prune_once(now=time.time() + 60)
        assert await store.oldest_seq() == 5
        without = Retention(store, ["http://i"], 0.0)
        await without.prune_once(now=time.time() + 60)
        assert await store.oldest_seq() == 11

    asyncio.run(scenario())


def test_the_archive_of_another_log_is_refused_rather_than_silently_skipped(tmp_path: Path) -> None:
    async def scenario() -> None:
        old = MemoryStore()
        await old.append(entries(5))
        assert await Archiver(old, tmp_path, owner="g", interval=1.0, lease_ttl=10.0).archive_once(time.time() + 2)
        restored = MemoryStore()  # a new deployment's log starts at seq 1 again
        await restored.append(entries(2))
        archiver = Archiver(restored, tmp_path, owner="g", interval=1.0, lease_ttl=10.0)
        with pytest.raises(BackupError, match="it is the archive of another log"):
            await archiver.archive_once(time.time() + 2)

    asyncio.run(scenario())
