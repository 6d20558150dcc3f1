"""The OpenAPI 3.1 description of the admin API, served at GET /admin/openapi.json (docs/admin-api.md is its prose)."""

from __future__ import annotations

from typing import Any

_NUM = {"type": "number"}
_INT = {"type": "integer"}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_NUM_OR_NULL = {"type": ["number", "null"]}


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _map(values: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": values}


_RATES = _obj({"1m": _NUM, "5m": _NUM, "15m": _NUM})
_PERCENTILES = _obj({"p50": _NUM, "p90": _NUM, "p99": _NUM, "max": _NUM})
_ERROR = _obj({"error": _STR, "message": _STR}, ["error", "message"])
_MEMBER = {"type": "string", "enum": ["joining", "active", "draining"], "description": "membership state"}

SCHEMAS: dict[str, Any] = {
    "Error": _ERROR,
    "Health": _obj(
        {
            "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
            "healthy_instances": {"type": "string", "description": "up instances / all instances, as n/m"},
            "store": {"type": "string", "enum": ["ok", "unreachable"]},
            "instances": _map(_obj({"up": _BOOL, "member": _MEMBER})),
            "reasons": {"type": "array", "items": _STR},
        },
        ["status", "healthy_instances", "reasons"],
    ),
    "Status": _obj(
        {
            "version": _STR,
            "gateway_id": _STR,
            "uptime_seconds": _NUM,
            "status": _STR,
            "healthy_instances": _STR,
            "reasons": {"type": "array", "items": _STR},
            "log": _obj({"head": _INT, "oldest": _INT}),
            "batch_limits": _obj({"max_records": _INT, "max_bytes": _INT}),
            "instances": _map(
                _obj(
                    {
                        "member": _MEMBER,
                        "state": {
                            "type": "string",
                            "description": "applier state: starting, standby, idle, applying, "
                            "retrying, down, bootstrapping, stopped (draining)",
                        },
                        "up": _BOOL,
                        "success_rate": _NUM,
                        "requests": _INT,
                        "failures": _INT,
                        "consecutive_failures": _INT,
                        "outstanding": _INT,
                        "last_check": _NUM,
                        "last_error": _STR,
                        "state_since": _NUM,
                        "cursor": _INT,
                        "pending": _INT,
                        "lag_seconds": _NUM,
                        "heartbeat_ms": _NUM_OR_NULL,
                    }
                )
            ),
            "alerts_firing": {"type": "array", "items": _STR},
            "settings": {"type": "object", "description": "the settings in force; secrets shown as ***"},
        },
        ["version", "settings", "instances"],
    ),
    "WalStatus": _obj(
        {
            "head": _INT,
            "oldest": _INT,
            "pending": _INT,
            "oldest_pending_age_seconds": _NUM,
            "state": {"type": "string", "enum": ["applying", "idle"]},
            "instances": _map(
                _obj(
                    {
                        "member": _MEMBER,
                        "cursor": _INT,
                        "pending": _INT,
                        "lag_seconds": _NUM,
                        "state": _STR,
                        "up": _BOOL,
                    }
                )
            ),
            "divergence_count": _INT,
            "divergences": {
                "type": "array",
                "items": _obj(
                    {
                        "seq": _INT,
                        "instance": _STR,
                        "status": _INT,
                        "expected_status": _INT,
                        "created_at": _NUM,
                    }
                ),
            },
        },
        ["head", "instances", "divergences"],
    ),
    "WalStats": _obj(
        {
            "scope": _STR,
            "appended": _obj({"entries": _INT, "bytes": _INT, "per_second": _RATES}),
            "applied": _obj({"entries": _INT, "bytes": _INT, "per_second": _RATES}),
            "batch_sizes": _PERCENTILES,
            "batch_limits": _obj({"max_records": _INT, "max_bytes": _INT}),
            "deletes_converted": _INT,
            "retries": _INT,
            "rejections": _INT,
            "lag_seconds": {**_PERCENTILES, "description": "time from append to commit on an instance"},
            "instances": _map(
                _obj(
                    {
                        "applied_entries": _INT,
                        "applied_batches": _INT,
                        "applied_bytes": _INT,
                        "applied_per_second": _RATES,
                        "batch_sizes": _PERCENTILES,
                        "last_batch_size": _INT,
                        "retries": _INT,
                        "rejections": _INT,
                        "lag_seconds": _PERCENTILES,
                    }
                )
            ),
        }
    ),
    "Resources": _obj(
        {
            "at": _NUM,
            "process": _obj({"cpu_percent": _NUM, "memory_bytes": _INT}),
            "host": _obj(
                {
                    "cpu_percent": _NUM,
                    "memory_percent": _NUM,
                    "memory_available_bytes": _INT,
                    "memory_total_bytes": _INT,
                }
            ),
            "instances": _map(_obj({"up": _BOOL, "heartbeat_seconds": _NUM_OR_NULL})),
        }
    ),
    "Recommendations": _obj(
        {
            "current": {"type": "array", "items": _obj({"kind": _STR, "reason": _STR, "details": {"type": "object"}})},
            "recommendations": {
                "type": "array",
                "items": _obj(
                    {
                        "id": _INT,
                        "created_at": _NUM,
                        "kind": _STR,
                        "reason": _STR,
                        "details": {"type": "object"},
                        "current": _BOOL,
                    }
                ),
            },
        }
    ),
    "DashboardData": {
        "type": "object",
        "description": "instances, the last hour of samples, alerts, recommendations: what the dashboard page draws",
    },
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_UNAUTHORIZED = {"401": _json("Error", "The admin token is set and the request did not carry it")}


def _get(summary: str, responses: dict[str, Any], *, guarded: bool = True) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {**responses, **(_UNAUTHORIZED if guarded else {})}}
    if not guarded:
        operation["security"] = []
    return {"get": operation}


_OBJECT = {"description": "see docs/admin-api.md", "content": {"application/json": {"schema": {"type": "object"}}}}
_BAD = {"400": _json("Error", "a parameter or body field that cannot be used")}


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _post(summary: str, body: dict[str, Any], responses: dict[str, Any]) -> dict[str, Any]:
    content = {"application/json": {"schema": _obj(body)}}
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": False, "content": content},
            "responses": {**responses, **_BAD, **_UNAUTHORIZED},
        }
    }


def _log_routes() -> dict[str, Any]:
    entries = _get("The entries the log still holds around a seq", {"200": _OBJECT, **_BAD})
    entries["get"]["parameters"] = [
        _query("seq", _INT, "the seq to show the entries around", required=True),
        _query("before", _INT, "entries before it (default 5, at most 100)"),
        _query("after", _INT, "entries after it (default 5, at most 100)"),
    ]
    divergences = _get("The divergences with their entries and both answers", {"200": _OBJECT, **_BAD})
    divergences["get"]["parameters"] = [
        _query("instance", _STR, "only this instance's"),
        _query("include_resolved", _BOOL, "also the resolved ones"),
    ]
    return {
        "/wal/entries": entries,
        "/wal/divergences": divergences,
        "/wal/prune": _post(
            "Prune now what every instance has applied",
            {"upto": _INT, "older_than": _NUM},
            {"200": _OBJECT, "503": _json("Error", "the store failed")},
        ),
        "/instances/bootstrap": _post(
            "Rebuild one instance from an in-sync instance",
            {"instance": _STR},
            {
                "202": _OBJECT,
                "404": _json("Error", "not one of the instances"),
                "409": _json("Error", "no instance to copy from, or its applier runs in another gateway"),
            },
        ),
        **_member_routes(),
    }


def _member_routes() -> dict[str, Any]:
    listing = _get("The instances, with their membership state, cursor, lag and health", {"200": _OBJECT})
    listing["post"] = _post(
        "Add an instance: it joins (is copied and catches up while writes go on), then serves reads",
        {"url": _STR},
        {
            "202": _OBJECT,
            "400": _json("Error", "not an http(s) URL, or one with credentials"),
            "409": _json("Error", "already an instance"),
        },
    )["post"]
    return {
        "/instances": listing,
        "/instances/remove": _post(
            "Drain an instance (no new reads, its applier stopped), then forget it",
            {"url": _STR},
            {
                "200": _OBJECT,
                "404": _json("Error", "not one of the instances"),
                "409": _json("Error", "the last active instance"),
            },
        ),
    }


def admin_openapi(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chroma-ha admin API",
            "version": version,
            "description": "Health, status, the write-ahead log, metrics, recommendations and the dashboard of a "
            "chroma-ha gateway. Chroma's own API is served unchanged under /api/v2.",
        },
        "security": [{"bearer": []}, {"token": []}],
        "paths": {
            "/health": _get(
                "Is the gateway serving, and what is up",
                {
                    "200": _json("Health", "healthy or degraded: reads and writes are served"),
                    "503": _json("Health", "unhealthy: the store is unreachable or no instance is up"),
                },
                guarded=False,
            ),
            "/status": _get("Everything an operator needs in one document", {"200": _json("Status", "status")}),
            "/wal/status": _get("The log now", {"200": _json("WalStatus", "the log now")}),
            "/wal/stats": _get("The log over time", {"200": _json("WalStats", "rates, batches, lags")}),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format); JSON resource figures with Accept: application/json",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "metrics",
                            "content": {
                                "text/plain": {"schema": {"type": "string"}},
                                "application/json": {"schema": {"$ref": "#/components/schemas/Resources"}},
                            },
                        }
                    },
                }
            },
            "/recommendations": _get(
                "Current and past upgrade recommendations",
                {"200": _json("Recommendations", "recommendations, newest first")},
            ),
            "/dashboard": {
                "get": {
                    "summary": "The dashboard page (HTML; asks for the token as a Basic password when one is set)",
                    "responses": {
                        "200": {"description": "page", "content": {"text/html": {"schema": _STR}}},
                        **_UNAUTHORIZED,
                    },
                }
            },
            "/dashboard/data": _get("What the dashboard draws", {"200": _json("DashboardData", "dashboard data")}),
            "/admin/openapi.json": _get("This document", {"200": {"description": "OpenAPI 3.1 document"}}),
            **_log_routes(),
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the admin_token setting"},
                "token": {"type": "apiKey", "in": "header", "name": "X-Chroma-HA-Token"},
            },
        },
    }
