"""The store's commits as operations show them: `/wal/stats` (count, rate, entries per commit) and `/metrics`
(counters), read from the store's own `CommitStats`, on a whole gateway in this process."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from chroma_ha.store.memory import MemoryStore
from tests.fake_chroma import FakeCluster, call, in_process

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"


async def test_wal_stats_and_metrics_show_the_stores_commits() -> None:
    store = MemoryStore()
    async with in_process(FakeCluster(), store=store) as gateway:
        status, created = await call(gateway, "POST", COLLECTIONS, {"name": "docs"})
        assert status == 200, created
        adds = [
            call(gateway, "POST", f"{COLLECTIONS}/{created['id']}/add", {"ids": [f"r{n}"], "embeddings": [[1.0, 2.0]]})
            for n in range(5)
        ]
        assert [s for s, _ in await asyncio.gather(*adds)] == [201] * 5
        status, stats = await call(gateway, "GET", "/wal/stats")
        assert status == 200, stats
        metrics = gateway.metrics.render().decode()
    commits = stats["commits"]
    assert commits["entries"] == 6 == store.commit_stats.entries
    assert commits["count"] == store.commit_stats.commits >= 1
    assert commits["entries_per_commit"] == round(6 / commits["count"], 3)
    assert commits["entries_per_commit_recent"]["max"] >= 1 and set(commits["per_second"]) == {"1m", "5m", "15m"}
    found = {s.name: s.value for f in text_string_to_metric_families(metrics) for s in f.samples}
    assert found["chroma_ha_log_commits_total"] == commits["count"]
    assert found["chroma_ha_log_committed_entries_total"] == 6
