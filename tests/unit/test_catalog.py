from __future__ import annotations

import orjson

from chroma_ha.catalog.ids import Catalog
from chroma_ha.store import IdMapping

CANON = "11111111-1111-4111-8111-111111111111"
OWN = "22222222-2222-4222-8222-222222222222"
P = f"/api/v2/tenants/t/databases/d/collections/{CANON}/add"


def catalog() -> Catalog:
    cat = Catalog(store=None)  # type: ignore[arg-type]
    cat.learn([IdMapping("http://i1", CANON, OWN)])
    return cat


def test_paths_translate_to_the_instance_id_and_names_pass_unchanged() -> None:
    cat = catalog()
    assert cat.path_for("http://i1", P, CANON) == P.replace(CANON, OWN)
    assert cat.path_for("http://i2", P, CANON) == P  # not mapped there: unchanged
    assert cat.path_for("http://i1", "/api/v2/x/collections/docs", None) == "/api/v2/x/collections/docs"


def test_collection_models_and_error_messages_come_back_canonical() -> None:
    cat = catalog()
    models = orjson.dumps([{"id": OWN, "name": "docs"}])
    assert orjson.loads(cat.canonical_body("http://i1", "list_collections", 200, models))[0]["id"] == CANON
    error = orjson.dumps({"error": "NotFoundError", "message": f"Collection [{OWN}] does not exist."})
    assert CANON.encode() in cat.canonical_body("http://i1", "add", 404, error)
    records = b'{"ids":["' + OWN.encode() + b'"]}'  # a record id that looks like a collection id stays
    assert cat.canonical_body("http://i1", "get", 200, records) == records


def test_relearning_a_canonical_id_replaces_the_old_reverse_entry() -> None:
    cat = catalog()
    cat.learn([IdMapping("http://i1", CANON, "33333333-3333-4333-8333-333333333333")])
    assert cat.canonical_id("http://i1", OWN) is None
    assert cat.instance_id("http://i1", CANON) == "33333333-3333-4333-8333-333333333333"
