"""Read-your-writes across gateways on one PostgreSQL: a write acknowledged by one gateway is seen by the very next
read through the other, every time, with no stale mark. Two real gateway processes, real Chroma servers.

The writer moves halfway: the first writer becomes the log's sole appender and takes the writer lease (its own
reads then prove their freshness without the store); the other gateway's first write must revoke it, and from
then on the first gateway's reads must see the other's writes.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, on_postgres, snapshot

PAIRS = 2000
COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"
STALE_HEADER = "x-chroma-ha-stale-by"


def write_then_read(writer: httpx.Client, reader: httpx.Client, collection: str, n: int) -> str | None:
    """One pair: what went wrong, or None when the read saw the write it followed."""
    record = f"r{n}"
    added = writer.post(
        f"{COLLECTIONS}/{collection}/add",
        json={"ids": [record], "embeddings": [[float(n), 1.0]], "documents": [f"doc {n}"]},
    )
    if added.status_code != 201:
        return f"pair {n}: the write answered {added.status_code} {added.text[:200]}"
    got = reader.post(f"{COLLECTIONS}/{collection}/get", json={"ids": [record], "include": ["documents"]})
    if got.status_code != 200:
        return f"pair {n}: the read answered {got.status_code} {got.text[:200]}"
    if STALE_HEADER in got.headers:
        return f"pair {n}: the read was marked stale by {got.headers[STALE_HEADER]}"
    if got.json()["ids"] != [record]:
        return f"pair {n}: the read did not see the write: {got.json()}"
    return None


@on_postgres
def test_every_read_through_the_other_gateway_sees_the_write_just_acknowledged(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]
) -> None:
    first, second = gateway_with(), gateway_with()
    with httpx.Client(base_url=first.url, timeout=30) as a, httpx.Client(base_url=second.url, timeout=30) as b:
        created = a.post(COLLECTIONS, json={"name": "fresh", "configuration": None, "metadata": None})
        assert created.status_code == 200, created.text
        collection = created.json()["id"]
        failures = []
        for n in range(PAIRS):
            writer, reader = (a, b) if n < PAIRS // 2 else (b, a)
            failure = write_then_read(writer, reader, collection, n)
            if failure is not None:
                failures.append(failure)
        assert failures == [], f"{len(failures)} of {PAIRS} pairs failed; the first: {failures[:5]}"
    second.wait_drained()
    held = [snapshot(s.url)["fresh"]["records"] for s in chroma_pair]
    assert len(held[0]) == PAIRS and held[0] == held[1]
