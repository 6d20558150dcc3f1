"""Continuous archiving: every committed log entry, in order, into immutable segment files in `archive_dir`.

Layout of the archive folder:

    archive.json                         the archive manifest: every closed segment, its seqs, count and sha256
    segments/<first>-<last>.jsonl        entries first..last, one JSON object a line (the backup's entry format)

A segment is written whole once its first entry is `archive_interval` seconds old (or the log holds
`SEGMENT_ENTRIES` entries to archive), then listed in the manifest; a listed segment is never written again. So the
archive lags the log by at most about `archive_interval`: restore reaches any seq up to the last closed segment.

Invariants: segments are contiguous (each starts right after the previous one's last seq) unless the log was pruned
before archiving began, which the manifest records as `first_seq`. The store keeps a cursor, `ARCHIVE_CURSOR`, at
the last archived seq, and retention never prunes past it, so no entry leaves the log before it is archived. One
gateway archives at a time: the one holding the store's lease `ARCHIVE_CURSOR` (with several gateways the folder
must be the same shared folder for all of them). A gateway killed while writing a segment leaves a `.partial` file
that the next run overwrites: the manifest, written last, decides what the archive holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ..errors import BackupError, StoreError
from ..store import LogStore
from .format import encode_entry, read_checked, sha256_file, write_checked

log = logging.getLogger(__name__)

ARCHIVE_FORMAT = "chroma-ha-archive"
ARCHIVE_VERSION = 1
ARCHIVE_MANIFEST = "archive.json"
ARCHIVE_CURSOR = "archive"  # the cursor and lease name in the store; never an instance URL
SEGMENT_ENTRIES = 10_000
READ_ENTRIES = 500
READ_BYTES = 16 << 20


def load_archive(folder: Path) -> dict[str, Any] | None:
    """The archive manifest, checked; None when the folder holds no archive yet."""
    path = folder / ARCHIVE_MANIFEST
    return read_checked(path, ARCHIVE_FORMAT) if path.exists() else None


def save_archive(folder: Path, manifest: dict[str, Any]) -> None:
    write_checked(folder / ARCHIVE_MANIFEST, manifest)


def new_archive(first_seq: int) -> dict[str, Any]:
    return {"format": ARCHIVE_FORMAT, "version": ARCHIVE_VERSION, "first_seq": first_seq, "segments": []}


def last_seq(manifest: dict[str, Any]) -> int:
    segments = manifest["segments"]
    return int(segments[-1]["last"]) if segments else int(manifest["first_seq"]) - 1


def check_segments(folder: Path, manifest: dict[str, Any]) -> None:
    """Every listed segment present, matching its sha256, and following the one before it."""
    expected = int(manifest["first_seq"])
    for segment in manifest["segments"]:
        path = folder / "segments" / segment["file"]
        if segment["first"] != expected:
            raise BackupError(f"{path} starts at seq {segment['first']}, not {expected}: the archive has a gap")
        if not path.is_file():
            raise BackupError(f"{path} is missing from the archive")
        if sha256_file(path) != segment["sha256"]:
            raise BackupError(f"{path} is corrupted: its sha256 does not match {ARCHIVE_MANIFEST}")
        expected = segment["last"] + 1


def archived_lines(folder: Path, manifest: dict[str, Any], after: int) -> Iterator[dict[str, Any]]:
    """The archived entries after `after`, in seq order (segments checked beforehand with `check_segments`)."""
    for segment in manifest["segments"]:
        if segment["last"] <= after:
            continue
        with (folder / "segments" / segment["file"]).open("rb") as f:
            for raw in f:
                line = orjson.loads(raw)
                if line["seq"] > after:
                    yield line


class Archiver:
    """The loop of one gateway that archives while it holds the lease; it wakes on an append or its interval."""

    def __init__(self, store: LogStore, folder: Path, *, owner: str, interval: float, lease_ttl: float) -> None:
        self._store = store
        self._folder = folder
        self._owner = owner
        self._interval = interval
        self._lease_ttl = lease_ttl
        self.archived_upto = 0
        self.holds_lease = False

    def status_document(self) -> dict[str, Any]:
        return {"folder": str(self._folder), "archived_upto": self.archived_upto, "archiving": self.holds_lease}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                # the lease is renewed before every segment: a long backlog must not outlast it
                self.holds_lease = await self._store.acquire_lease(ARCHIVE_CURSOR, self._owner, self._lease_ttl)
                while self.holds_lease and await self.archive_once():
                    self.holds_lease = await self._store.acquire_lease(ARCHIVE_CURSOR, self._owner, self._lease_ttl)
            except StoreError as exc:
                log.warning("archiving waits for the store: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(self._interval, self._lease_ttl / 3) / 2)
        if self.holds_lease:
            with contextlib.suppress(StoreError):
                await self._store.release_lease(ARCHIVE_CURSOR, self._owner)

    async def archive_once(self, now: float | None = None) -> bool:
        """Close one segment when one is due; whether one was."""
        now = time.time() if now is None else now
        manifest = load_archive(self._folder)
        if manifest is None:
            manifest = new_archive(await self._store.oldest_seq())
            save_archive(self._folder, manifest)
        after = last_seq(manifest)
        head = await self._store.head()
        if head < after:
            raise BackupError(
                f"{self._folder} archives seqs up to {after}, past this log's head {head}: it is the archive of "
                "another log (a restored deployment starts at seq 1); give archive_dir a folder of its own"
            )
        self.archived_upto = after
        await self._store.set_cursor(ARCHIVE_CURSOR, after, ARCHIVE_CURSOR)  # holds retention back from here
        if await self._store.oldest_seq() > after + 1:
            raise BackupError(f"the log was pruned past seq {after} before it was archived")
        first = await self._store.read_keys(after, 1)
        if not first or (head - after < SEGMENT_ENTRIES and now - first[0].created_at < self._interval):
            return False
        await self._write_segment(manifest, after)
        return True

    async def _write_segment(self, manifest: dict[str, Any], after: int) -> None:
        segments = self._folder / "segments"
        segments.mkdir(parents=True, exist_ok=True)
        partial = segments / "segment.partial"
        count, last = 0, after
        with partial.open("wb") as f:
            while count < SEGMENT_ENTRIES:
                entries = await self._store.read(last, min(READ_ENTRIES, SEGMENT_ENTRIES - count), READ_BYTES)
                if not entries:
                    break
                for entry in entries:
                    f.write(encode_entry(entry))
                count, last = count + len(entries), entries[-1].seq
            f.flush()
            os.fsync(f.fileno())
        name = f"{after + 1:012d}-{last:012d}.jsonl"
        partial.replace(segments / name)
        path = segments / name
        manifest["segments"].append(
            {
                "file": name,
                "first": after + 1,
                "last": last,
                "entries": count,
                "sha256": sha256_file(path),
                "bytes": path.stat().st_size,
                "closed_at": time.time(),
            }
        )
        save_archive(self._folder, manifest)
        self.archived_upto = last
        await self._store.set_cursor(ARCHIVE_CURSOR, last, ARCHIVE_CURSOR)
        log.info("archived entries %d to %d in %s", after + 1, last, name)
