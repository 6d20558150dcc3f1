"""A backup copies from one instance, in process against fake instances: a source wiped during the copy would
answer a partial copy, so the backup refuses it, forgets what it copied, and a re-run copies from the other one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chroma_ha.backup.format import check_files, load_manifest
from chroma_ha.backup.snapshot import BackupTaker
from chroma_ha.errors import BackupError
from tests.fake_chroma import FakeChroma, FakeCluster, call, drained, error, in_process

BASE = "/api/v2/tenants/default_tenant/databases/default_database/collections"


class WipesOnFirstPage:
    """A progress tracker that wipes the source once the first page of records is copied."""

    def __init__(self, source: FakeChroma) -> None:
        self.source = source
        self.pages = 0

    def add_total(self, records: int) -> None:
        pass

    def describe(self, text: str) -> None:
        pass

    def advance(self, records: int) -> None:
        self.pages += 1
        if self.pages == 1:
            self.source.wipe()


def test_a_source_wiped_during_the_copy_is_refused_and_a_rerun_copies_from_another(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = FakeCluster(2)
        async with in_process(cluster) as gateway:
            status, created = await call(gateway, "POST", BASE, {"name": "docs"})
            assert status == 200
            ids = [f"r{n}" for n in range(10)]
            status, _ = await call(
                gateway, "POST", f"{BASE}/{created['id']}/add", {"ids": ids, "embeddings": [[1.0, 2.0]] * 10}
            )
            assert status == 201
            await drained(gateway)
            client = cluster.transport(1.0)
            urls = list(cluster.urls)
            first = cluster.by_url[urls[0]]
            taker = BackupTaker(
                store=gateway.store, client=client, instances=urls, folder=tmp_path, page_size=3,
                tracker=WipesOnFirstPage(first),
            )  # fmt: skip
            with pytest.raises(BackupError, match=f"{urls[0]} was wiped or replaced during the backup"):
                await taker.run()
            assert not (tmp_path / "manifest.json").exists()

            again = BackupTaker(store=gateway.store, client=client, instances=urls, folder=tmp_path, page_size=3)
            manifest = await again.run()
            assert manifest["complete"] and manifest["source"] == urls[1]
            assert [c["records"] for c in manifest["collections"]] == [10]
            assert check_files(tmp_path, load_manifest(tmp_path)) == 4  # pages of 3, 3, 3 and 1 records

    asyncio.run(scenario())


CHURN_ERROR = error(500, "InternalError", "Error executing plan: Internal error: Error finding id")


class FailsAfterFirstPage(WipesOnFirstPage):
    """A progress tracker that makes every instance answer its next two requests with the 500 a local Chroma gives
    under churn (`Error finding id`), once the first page of records is copied."""

    def __init__(self, sources: list[FakeChroma]) -> None:
        self.sources = sources
        self.pages = 0

    def advance(self, records: int) -> None:
        self.pages += 1
        if self.pages == 1:
            for source in self.sources:
                source.fail_next = [CHURN_ERROR, CHURN_ERROR]


def test_a_page_the_source_fails_to_answer_is_asked_again_and_the_backup_completes(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = FakeCluster(2)
        async with in_process(cluster) as gateway:
            _, created = await call(gateway, "POST", BASE, {"name": "docs"})
            ids = [f"r{n}" for n in range(10)]
            await call(gateway, "POST", f"{BASE}/{created['id']}/add", {"ids": ids, "embeddings": [[1.0, 2.0]] * 10})
            await drained(gateway)
            urls = list(cluster.urls)
            tracker = FailsAfterFirstPage([cluster.by_url[u] for u in urls])
            taker = BackupTaker(
                store=gateway.store, client=cluster.transport(1.0), instances=urls, folder=tmp_path, page_size=3,
                tracker=tracker,
            )  # fmt: skip
            manifest = await taker.run()
            assert manifest["complete"] and [c["records"] for c in manifest["collections"]] == [10]
            assert tracker.pages == 4
            assert not cluster.by_url[manifest["source"]].fail_next  # both failures were answered to the copy

    asyncio.run(scenario())
