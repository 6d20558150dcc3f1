"""`unsafe_reads_ignore_freshness`, the history checker's own test setting: reads then go to any healthy instance,
one that has not applied the client's writes included, unmarked; without it, they never do."""

from __future__ import annotations

from typing import Any

import pytest

from chroma_ha.upstream import Upstream
from tests.fake_chroma import FakeCluster, call, error, in_process

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"


def refuse_adds(method: str, path: str, payload: Any) -> Upstream | None:
    """The instance answers reads but cannot apply an add (a 503, retried by its applier for as long as it lasts)."""
    return error(503, "ServiceUnavailable", "busy") if path.endswith("/add") else None


@pytest.mark.parametrize("unsafe", [False, True])
async def test_reads_ignore_freshness_only_with_the_unsafe_setting(unsafe: bool) -> None:
    cluster = FakeCluster()
    extra = {"UNSAFE_READS_IGNORE_FRESHNESS": "true"} if unsafe else {}
    # reads prefer the instance that lags, by far
    async with in_process(cluster, INSTANCE_WEIGHTS="1,1000", READ_WAIT="0.2", **extra) as gateway:
        status, created = await call(gateway, "POST", COLLECTIONS, {"name": "docs"})
        assert status == 200, created
        cluster.instances[1].poison = refuse_adds
        body = {"ids": ["a"], "embeddings": [[1.0, 2.0]]}
        assert (await call(gateway, "POST", f"{COLLECTIONS}/{created['id']}/add", body))[0] == 201
        seen = set()
        for _ in range(20):
            status, got = await call(gateway, "POST", f"{COLLECTIONS}/{created['id']}/get", {"include": []})
            assert status == 200, got
            seen.add(tuple(got["ids"]))
        if unsafe:
            assert () in seen, "every read found the write: freshness was not ignored"
        else:
            assert seen == {("a",)}, "a read missed an acknowledged write"
