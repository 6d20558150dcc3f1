"""Document-level deletion without servers: the resolution logic against a fake read path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from chroma_ha.errors import RequestRejected
from chroma_ha.gateway.deletes import DocumentDeletes, key_values, value_groups
from chroma_ha.gateway.reads import ReadResult
from chroma_ha.gateway.routes import Kind, Route
from chroma_ha.upstream.client import Upstream

COLLECTION = "5f0c6c1e-0000-4000-8000-000000000001"
ROUTE = Route(Kind.WRITE, "delete", "default_tenant", "default_database", COLLECTION)


def matches(metadata: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    for key, condition in where.items():
        value = metadata.get(key)
        if isinstance(condition, dict) and "$in" in condition:
            if value not in condition["$in"] or type(value) is not type(condition["$in"][0]):
                return False
        elif value != condition:
            return False
    return True


class FakeReads:
    """Answers `get` (ids, where with `$in` or equality) and get-by-id from an in-memory collection."""

    def __init__(
        self, records: dict[str, dict[str, Any]], name: str = "docs", stale_by: int = 0, status: int = 200
    ) -> None:
        self.records = records
        self.name = name
        self.stale_by = stale_by
        self.status = status
        self.requests: list[dict[str, Any]] = []

    async def handle(
        self,
        route: Route,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        fresh: bool = True,
    ) -> ReadResult:
        assert fresh and route.collection == COLLECTION and route.kind is Kind.READ
        if route.op == "get_collection_by_id":
            answer: Any = {"id": COLLECTION, "name": self.name}
        else:
            request = orjson.loads(body)
            self.requests.append(request)
            found = [
                rid
                for rid, metadata in sorted(self.records.items())
                if ("ids" not in request or rid in request["ids"]) and matches(metadata, request.get("where") or {})
            ]
            answer = {"ids": found, "metadatas": [self.records[r] for r in found]}
        upstream = Upstream(self.status, [], orjson.dumps(answer))
        return ReadResult(upstream, upstream.body, "i1", self.stale_by)


def expander(reads: FakeReads, collections: tuple[str, ...] = ()) -> DocumentDeletes:
    return DocumentDeletes(key="document_id", collections=collections, reads=reads)  # type: ignore[arg-type]


CHUNKS: dict[str, dict[str, Any]] = {
    "a-1": {"document_id": "doc-a", "page": 1},
    "a-2": {"document_id": "doc-a", "page": 2},
    "b-1": {"document_id": "doc-b", "page": 1},
    "b-2": {"document_id": "doc-b", "page": 2},
    "n-1": {"document_id": 7, "page": 1},
    "n-2": {"document_id": 7, "page": 2},
    "loose": {"page": 1},
}


def test_key_values_keep_scalars_only() -> None:
    assert key_values([{"k": "x"}, None, {"k": 3}, {"k": [1]}, {"other": 1}, {"k": True}], "k") == ["x", 3, True]


def test_value_groups_split_by_type_for_in() -> None:
    assert value_groups(["a", "b"], ["b", "c", 7, 7, 2.5]) == [["a", "b", "c"], [7], [2.5]]


async def test_a_document_id_and_a_chunk_id_both_expand_to_the_whole_document() -> None:
    reads = FakeReads(dict(CHUNKS))
    extra = await expander(reads).expand(COLLECTION, {"ids": ["doc-a", "b-2"]}, route=ROUTE, headers=[])
    assert extra == {"apply_body": {"ids": ["a-1", "a-2", "b-1", "b-2", "doc-a"]}, "expanded_from": ["doc-a", "b-2"]}


async def test_a_numeric_key_value_is_looked_up_with_its_own_type() -> None:
    extra = await expander(FakeReads(dict(CHUNKS))).expand(COLLECTION, {"ids": ["n-1"]}, route=ROUTE, headers=[])
    assert extra["apply_body"] == {"ids": ["n-1", "n-2"]}


async def test_nothing_to_expand_leaves_the_delete_as_sent() -> None:
    reads = FakeReads(dict(CHUNKS))
    assert await expander(reads).expand(COLLECTION, {"ids": ["loose", "nope"]}, route=ROUTE, headers=[]) == {}
    assert await expander(reads).expand(COLLECTION, {"where": {"page": 1}}, route=ROUTE, headers=[]) == {}
    assert await expander(reads).expand(COLLECTION, {"ids": ["a-1"], "limit": 1}, route=ROUTE, headers=[]) == {}


async def test_a_filter_next_to_ids_is_resolved_on_the_expanded_set() -> None:
    reads = FakeReads(dict(CHUNKS))
    payload: dict[str, object] = {"ids": ["doc-a", "doc-b"], "where": {"page": 2}}
    extra = await expander(reads).expand(COLLECTION, payload, route=ROUTE, headers=[])
    assert extra["apply_body"] == {"ids": ["a-2", "b-2"]}
    assert reads.requests[-1]["where"] == {"page": 2}


async def test_a_filter_that_keeps_nothing_leaves_the_delete_as_sent() -> None:
    payload: dict[str, object] = {"ids": ["doc-a"], "where": {"page": 9}}
    assert await expander(FakeReads(dict(CHUNKS))).expand(COLLECTION, payload, route=ROUTE, headers=[]) == {}


async def test_only_the_listed_collections_are_expanded() -> None:
    reads = FakeReads(dict(CHUNKS), name="notes")
    assert await expander(reads, ("docs",)).expand(COLLECTION, {"ids": ["a-1"]}, route=ROUTE, headers=[]) == {}
    reads.name = "docs"
    extra = await expander(reads, ("docs",)).expand(COLLECTION, {"ids": ["a-1"]}, route=ROUTE, headers=[])
    assert extra["apply_body"] == {"ids": ["a-1", "a-2"]}


async def test_a_stale_or_failing_read_refuses_rather_than_logging_a_smaller_delete() -> None:
    for reads in (FakeReads(dict(CHUNKS), stale_by=3), FakeReads(dict(CHUNKS), status=503)):
        with pytest.raises(RequestRejected) as refused:
            await expander(reads).expand(COLLECTION, {"ids": ["a-1"]}, route=ROUTE, headers=[])
        assert refused.value.status == 503


async def test_a_read_chroma_refuses_for_the_payload_leaves_the_delete_to_chroma() -> None:
    reads = FakeReads(dict(CHUNKS), status=404)
    assert await expander(reads).expand(COLLECTION, {"ids": ["a-1"]}, route=ROUTE, headers=[]) == {}
