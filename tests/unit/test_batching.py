from __future__ import annotations

import orjson

from chroma_ha.cluster.limits import Limits
from chroma_ha.replication.batching import plan_batches
from chroma_ha.store import Entry

WIDE = Limits(max_records=1000, max_bytes=1 << 20)


def entry(seq: int, op: str, ids: list[str], collection: str = "c1", **fields: object) -> Entry:
    body = {"ids": ids, "embeddings": [[float(seq)] * 2 for _ in ids], **fields}
    return Entry(op=op, method="POST", path=f"/x/{op}", body=orjson.dumps(body), collection_id=collection, seq=seq)


def test_consecutive_compatible_entries_merge_in_order() -> None:
    batches = plan_batches([entry(1, "add", ["a"]), entry(2, "add", ["b", "c"])], WIDE)
    assert len(batches) == 1
    merged = orjson.loads(batches[0].body)
    assert merged["ids"] == ["a", "b", "c"]
    assert merged["embeddings"] == [[1.0, 1.0], [2.0, 2.0], [2.0, 2.0]]
    assert batches[0].last_seq == 2


def test_shared_id_operation_collection_or_shape_breaks_a_batch() -> None:
    entries = [
        entry(1, "add", ["a"]),
        entry(2, "add", ["a"]),  # same id: order matters
        entry(3, "upsert", ["b"]),  # other operation
        entry(4, "upsert", ["c"], collection="c2"),  # other collection
        entry(5, "upsert", ["d"], collection="c2", documents=["x"]),  # other fields
    ]
    assert [[e.seq for e in b.entries] for b in plan_batches(entries, WIDE)] == [[1], [2], [3], [4], [5]]


def test_deletes_are_never_merged_and_keep_their_place() -> None:
    delete = Entry(op="delete", method="POST", path="/x", body=b'{"ids":["a"]}', collection_id="c1", seq=2)
    batches = plan_batches([entry(1, "add", ["a"]), delete, entry(3, "add", ["b"])], WIDE)
    assert [[e.seq for e in b.entries] for b in batches] == [[1], [2], [3]]
    assert batches[1].body == delete.body


def test_limits_bound_records_and_bytes() -> None:
    entries = [entry(n, "add", [f"id{n}"]) for n in range(1, 11)]
    assert [len(b.entries) for b in plan_batches(entries, Limits(3, 1 << 20))] == [3, 3, 3, 1]
    one_size = len(entries[0].body)
    assert all(len(b.entries) <= 2 for b in plan_batches(entries, Limits(1000, one_size * 2 + 1)))


def test_duplicate_ids_inside_one_request_are_left_for_chroma_to_judge() -> None:
    batches = plan_batches([entry(1, "upsert", ["a", "a"]), entry(2, "upsert", ["b"])], WIDE)
    assert [len(b.entries) for b in batches] == [1, 1]
