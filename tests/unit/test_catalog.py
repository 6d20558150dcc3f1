from __future__ import annotations

import orjson

from chroma_ha.catalog.ids import Catalog
from chroma_ha.store import IdMapping
from chroma_ha.store.memory import MemoryStore

CANON = "11111111-1111-4111-8111-111111111111"
OWN = "22222222-2222-4222-8222-222222222222"
P = f"/api/v2/tenants/t/databases/d/collections/{CANON}/add"


def catalog() -> Catalog:
    cat = Catalog(MemoryStore())
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


class CountingStore(MemoryStore):
    """Counts the reads of the whole map."""

    def __init__(self) -> None:
        super().__init__()
        self.map_reads = 0

    async def mappings(self, instance: str | None = None) -> list[IdMapping]:
        self.map_reads += 1
        return await super().mappings(instance)


async def test_a_load_reads_the_map_only_when_some_gateway_changed_it() -> None:
    store = CountingStore()
    cat = Catalog(store)
    await cat.load()
    await cat.load()
    assert store.map_reads == 1
    await store.record_mappings([IdMapping("http://i1", CANON, OWN)])  # as another gateway would
    await cat.load()
    assert store.map_reads == 2 and cat.instance_id("http://i1", CANON) == OWN
    cat.forget("http://i1")  # the cache no longer matches the store's map, whatever its version says
    await cat.load()
    assert store.map_reads == 3 and cat.instance_id("http://i1", CANON) == OWN


async def test_requests_for_made_up_ids_cost_no_reload_of_the_map() -> None:
    store = CountingStore()
    cat = Catalog(store)
    await cat.load()
    made_up = "44444444-4444-4444-8444-444444444444"
    for _ in range(1000):
        assert not await cat.refresh_if_unknown(made_up)
    assert store.map_reads == 1
    await store.record_mappings([IdMapping("http://i1", made_up, OWN)])
    assert await cat.refresh_if_unknown(CANON) is False  # another unknown id: the changed map is read
    assert store.map_reads == 2 and cat.is_known(made_up)
