"""Comparing instances without servers: digests, record diffs, tolerance, differences, the report."""

from __future__ import annotations

from chroma_ha.catalog.compare import (
    CollectionDigest,
    Difference,
    Report,
    catalog_ids,
    changed_records,
    collection_fields,
    diff_records,
    digests_differ,
    embeddings_close,
    page_digests,
    presence,
    record_digest,
    records_difference,
)
from chroma_ha.catalog.inventory import CollectionInfo, Records, tenants_of


def records(*rows: tuple[str, list[float] | None, dict | None, str | None]) -> Records:
    return Records(
        ids=[r[0] for r in rows],
        embeddings=[r[1] for r in rows],
        metadatas=[r[2] for r in rows],
        documents=[r[3] for r in rows],
        uris=[None for _ in rows],
    )


ROWS = [("a", [1.0, 2.0], {"k": 1, "z": "x"}, "doc a"), ("b", [3.0, 4.0], None, None), ("c", [0.5, 0.25], {}, "c")]


def test_the_collection_digest_does_not_depend_on_page_order() -> None:
    one, two = CollectionDigest(), CollectionDigest()
    one.add(records(*ROWS))
    two.add(records(ROWS[2]))
    two.add(records(ROWS[1], ROWS[0]))
    assert (one.count, one.ids, one.content) == (two.count, two.ids, two.content) == (3, one.ids, one.content)
    assert not digests_differ({"x": one, "y": two})


def test_every_field_changes_the_record_digest() -> None:
    base = record_digest("a", [1.0, 2.0], {"k": 1}, "doc", None)
    assert record_digest("a", [1.0, 2.0], {"k": 1}, "doc", None) == base
    assert record_digest("a", [2.0, 1.0], {"k": 1}, "doc", None) != base
    assert record_digest("a", [1.0, 2.0], {"k": 2}, "doc", None) != base
    assert record_digest("a", [1.0, 2.0], {"k": 1}, "other", None) != base
    assert record_digest("a", [1.0, 2.0], {"k": 1}, "doc", "s3://x") != base
    assert record_digest("b", [1.0, 2.0], {"k": 1}, "doc", None) != base
    assert record_digest("a", [1.0, 2.0], {"k": 1}, None, None) != record_digest("a", [1.0, 2.0], {"k": 1}, "", None)


def test_metadata_key_order_does_not_matter() -> None:
    one = record_digest("a", None, {"x": 1, "y": 2}, None, None)
    assert one == record_digest("a", None, {"y": 2, "x": 1}, None, None)


def test_a_changed_record_changes_the_collection_digest() -> None:
    one, two = CollectionDigest(), CollectionDigest()
    one.add(records(*ROWS))
    two.add(records(ROWS[0], ROWS[1], ("c", [0.5, 0.25], {}, "changed")))
    assert digests_differ({"x": one, "y": two})
    assert one.ids == two.ids and one.content != two.content


def test_diff_records_names_missing_extra_and_changed() -> None:
    reference = dict(page_digests(records(*ROWS)))
    other = dict(page_digests(records(ROWS[0], ("c", [0.5, 0.25], {}, "changed"), ("d", [1.0, 1.0], None, None))))
    diff = diff_records(reference, other)
    assert (diff.missing, diff.extra, diff.changed) == (["b"], ["d"], ["c"])
    assert diff.summary() == {
        "missing": {"count": 1, "examples": ["b"]},
        "extra": {"count": 1, "examples": ["d"]},
        "changed": {"count": 1, "examples": ["c"]},
    }
    assert diff_records(reference, reference).empty


def test_embeddings_are_equal_within_float32_round_trip_noise_only() -> None:
    assert embeddings_close([85.0, 1.0], [85.00001, 1.0])
    assert embeddings_close([85.0, 1.0], [85.0, 0.99999994])
    assert not embeddings_close([85.0, 1.0], [85.01, 1.0])
    assert not embeddings_close([1.0, 2.0], [1.0, 2.0, 3.0])
    assert embeddings_close(None, None) and not embeddings_close(None, [1.0])


def test_changed_records_ignores_noise_but_not_real_changes() -> None:
    mine = records(*ROWS)
    theirs = records(
        ("a", [1.0000001, 2.0], {"z": "x", "k": 1}, "doc a"),
        ("b", [3.0, 4.0], None, "now a document"),
    )
    assert changed_records(mine, theirs) == ["b", "c"]


def info(name: str, metadata: dict | None = None, space: str = "l2", cid: str = "id") -> CollectionInfo:
    return CollectionInfo("t", "d", name, cid, metadata, {"hnsw": {"space": space}}, None)


def test_presence_reports_only_partial_holding() -> None:
    assert presence("t/d/x", "collection", {"i1": True, "i2": True}) is None
    assert presence("t/d/x", "collection", {"i1": False, "i2": False}) is None
    found = presence("t/d/x", "collection", {"i1": True, "i2": False})
    assert found == Difference("collection", "t/d/x", {"present_on": ["i1"], "missing_on": ["i2"]})
    assert found.lines() == ["present on i1; missing on i2"]


def test_collection_fields_compare_metadata_and_configuration() -> None:
    assert collection_fields({"i1": info("x", {"a": 1}), "i2": info("x", {"a": 1})}) == []
    kinds = [d.kind for d in collection_fields({"i1": info("x", {"a": 1}), "i2": info("x", {"a": 2}, "cosine")})]
    assert kinds == ["metadata", "configuration"]


def test_catalog_ids_must_map_every_copy_to_one_canonical_id() -> None:
    infos = {"i1": info("x", cid="one"), "i2": info("x", cid="two")}
    assert catalog_ids(infos, {"i1": {"one": "C"}, "i2": {"two": "C"}}) is None
    assert catalog_ids(infos, {"i1": {"one": "C"}, "i2": {"two": "D"}}) is not None
    missing = catalog_ids(infos, {"i1": {"one": "C"}, "i2": {}})
    assert missing is not None and missing.detail == {"canonical_ids": {"i1": "C", "i2": None}}


def test_the_report_is_ok_only_without_differences() -> None:
    report = Report(["i1", "i2"])
    assert report.ok and report.as_dict()["ok"]
    diff = records_difference("t/d/x", "i1", {"i2": diff_records({"a": b"1"}, {})})
    assert diff is not None
    report.differences.append(diff)
    assert not report.ok
    assert report.as_dict()["differences"] == [
        {
            "kind": "records",
            "where": "t/d/x",
            "reference": "i1",
            "instances": {"i2": {"missing": {"count": 1, "examples": ["a"]}}},
        }
    ]
    assert diff.lines() == ["compared with i1:", "i2: missing 1 (a)"]


def test_tenants_come_from_the_log_without_the_gateways_own() -> None:
    scopes = ["acme", "acme/projects", "chroma_ha_system/system", "beta/x"]
    assert tenants_of(scopes) == ["acme", "beta", "default_tenant"]
    assert tenants_of([]) == ["default_tenant"]
