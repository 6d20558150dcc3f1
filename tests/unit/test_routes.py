from __future__ import annotations

import pytest

from chroma_ha.gateway.routes import Kind, classify

C = "/api/v2/tenants/t1/databases/d1/collections/3f1c9a6e-8f3e-4c4e-9b1e-2a6f0e2b7c11"


@pytest.mark.parametrize(
    ("method", "path", "kind", "op"),
    [
        ("GET", "/api/v2/heartbeat", Kind.LOCAL, "heartbeat"),
        ("GET", "/api/v2/pre-flight-checks", Kind.LOCAL, "pre_flight_checks"),
        ("POST", "/api/v2/reset", Kind.WRITE, "reset"),
        ("POST", "/api/v2/tenants", Kind.WRITE, "create_tenant"),
        ("PATCH", "/api/v2/tenants/t1", Kind.WRITE, "update_tenant"),
        ("GET", "/api/v2/tenants/t1", Kind.READ, "get_tenant"),
        ("POST", "/api/v2/tenants/t1/databases", Kind.WRITE, "create_database"),
        ("DELETE", "/api/v2/tenants/t1/databases/d1", Kind.WRITE, "delete_database"),
        ("GET", "/api/v2/tenants/t1/databases/d1/collections", Kind.READ, "list_collections"),
        ("POST", "/api/v2/tenants/t1/databases/d1/collections", Kind.WRITE, "create_collection"),
        ("GET", "/api/v2/tenants/t1/databases/d1/collections_count", Kind.READ, "count_collections"),
        ("GET", "/api/v2/tenants/t1/databases/d1/collections/by-id/x", Kind.READ, "get_collection_by_id"),
        ("GET", C, Kind.READ, "get_collection"),
        ("PUT", C, Kind.WRITE, "update_collection"),
        ("DELETE", "/api/v2/tenants/t1/databases/d1/collections/name", Kind.WRITE, "delete_collection"),
        ("POST", C + "/add", Kind.WRITE, "add"),
        ("POST", C + "/upsert", Kind.WRITE, "upsert"),
        ("POST", C + "/update", Kind.WRITE, "update"),
        ("POST", C + "/delete", Kind.WRITE, "delete"),
        ("POST", C + "/get", Kind.READ, "get"),
        ("POST", C + "/query", Kind.READ, "query"),
        ("POST", C + "/search", Kind.READ, "search"),
        ("GET", C + "/count", Kind.READ, "count"),
        ("POST", C + "/fork", Kind.UNREPLICABLE, "fork"),
        ("POST", C + "/functions/attach", Kind.UNREPLICABLE, "attach_function"),
        ("POST", C + "/attached_functions/f/detach", Kind.UNREPLICABLE, "detach_function"),
        ("GET", "/api/v2/collections/t1:d1:name", Kind.READ, "get_collection_by_crn"),
        ("POST", "/api/v2/nothing-here", Kind.UNKNOWN, "unknown"),
    ],
)
def test_every_chroma_route_has_a_class(method: str, path: str, kind: Kind, op: str) -> None:
    route = classify(method, path)
    assert (route.kind, route.op) == (kind, op)


def test_route_fields_and_scope() -> None:
    route = classify("POST", C + "/add")
    assert route.tenant == "t1" and route.database == "d1"
    assert route.collection_uuid == C.rsplit("/", 1)[1]
    assert route.scope == "t1/d1"
    by_name = classify("DELETE", "/api/v2/tenants/t1/databases/d1/collections/docs")
    assert by_name.collection == "docs" and by_name.collection_uuid is None
    assert classify("GET", "/api/v2/tenants/t1/databases").scope == "t1"
