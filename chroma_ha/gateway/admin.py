"""The admin API: health, status, the state and statistics of the log, metrics, recommendations, the dashboard.

Every route but /health and /metrics asks for the admin token when one is set (see `guarded`). The documents are
built by plain functions of the gateway so the CLI and tests can use them without HTTP.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from .. import __version__
from ..errors import StoreError
from ..ops.dashboard import dashboard_routes
from ..ops.metrics import PROMETHEUS_CONTENT_TYPE, percentiles
from ..ops.monitor import log_positions
from ..ops.openapi import admin_openapi
from .http_server import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from ..app import Gateway
    from ..ops.pressure import Sample

JSON = b"application/json"
TOKEN_HEADER = b"x-chroma-ha-token"
DIVERGENCES_SHOWN = 100

Endpoint = Callable[[HttpRequest], Awaitable[HttpResponse]]


def json_response(data: Any, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(data), [(b"content-type", JSON), *(headers or [])])


def _header(request: HttpRequest, name: bytes) -> str:
    return (request.header(name) or b"").decode("latin-1")


def presented_tokens(request: HttpRequest) -> list[str]:
    """Tokens the request carries: `Authorization: Bearer`, `X-Chroma-HA-Token`, or a Basic password (browsers)."""
    found = [_header(request, TOKEN_HEADER)]
    scheme, _, value = _header(request, b"authorization").partition(" ")
    if scheme.lower() == "bearer":
        found.append(value.strip())
    elif scheme.lower() == "basic":
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            found.append(base64.b64decode(value.strip()).decode().partition(":")[2])
    return [t for t in found if t]


def guarded(endpoint: Endpoint, token: str, *, browser: bool = False) -> Endpoint:
    """Require the admin token when one is set; a browser page asks for it as a Basic password."""
    if not token:
        return endpoint
    expected = token.encode()
    challenge = 'Basic realm="chroma-ha admin"' if browser else 'Bearer realm="chroma-ha admin"'

    async def check(request: HttpRequest) -> HttpResponse:
        if any(hmac.compare_digest(t.encode(), expected) for t in presented_tokens(request)):
            return await endpoint(request)
        body = {"error": "Unauthorized", "message": "This admin route needs the admin token (Authorization: Bearer)"}
        return json_response(body, 401, [(b"www-authenticate", challenge.encode())])

    return check


async def health_document(gateway: Gateway) -> tuple[dict[str, Any], int]:
    instances = gateway.settings.instances
    up = gateway.health.up_instances()
    reasons = []
    try:
        head = await gateway.store.head()
        store_ok = True
    except StoreError as exc:
        head, store_ok = 0, False
        reasons.append(f"store unreachable: {exc}")
    if not up:
        reasons.append("no instance is up")
    lagging = [i for i in up if head - gateway.progress.cursors.get(i, 0) > 0]
    down = [i for i in instances if i not in up]
    if reasons:
        status = "unhealthy"
    elif down or lagging:
        status = "degraded"
        reasons.extend(f"instance {i} is down" for i in down)
        reasons.extend(f"instance {i} has not applied the whole log yet" for i in lagging)
    else:
        status = "healthy"
    document = {
        "status": status,
        "healthy_instances": f"{len(up)}/{len(instances)}",
        "store": "ok" if store_ok else "unreachable",
        "instances": {i: {"up": gateway.health.is_up(i)} for i in instances},
        "reasons": reasons,
    }
    return document, 200 if status != "unhealthy" else 503


async def status_document(gateway: Gateway) -> dict[str, Any]:
    health, _ = await health_document(gateway)
    now = time.time()
    head, positions = await log_positions(gateway.store, gateway.progress.cursors, now)
    latest = gateway.monitor.latest
    instances = {}
    for instance, applier in gateway.appliers.items():
        state, position = gateway.health.states[instance], positions[instance]
        heartbeat = latest.instances[instance].heartbeat_seconds if latest else None
        instances[instance] = {
            "state": applier.state,
            "up": state.up,
            "success_rate": round(state.success_rate, 4),
            "requests": state.requests,
            "failures": state.failures,
            "consecutive_failures": state.consecutive_failures,
            "outstanding": state.outstanding,
            "last_check": state.last_check,
            "last_error": state.last_error,
            "state_since": state.changed_at,
            "cursor": position.cursor,
            "pending": position.pending,
            "lag_seconds": position.lag_seconds,
            "heartbeat_ms": round(heartbeat * 1000, 2) if heartbeat is not None else None,
        }
    return {
        "version": __version__,
        "gateway_id": gateway.settings.gateway_id,
        "uptime_seconds": round(now - gateway.started_at, 1),
        "status": health["status"],
        "healthy_instances": health["healthy_instances"],
        "reasons": health["reasons"],
        "log": {"head": head, "oldest": await gateway.store.oldest_seq()},
        "batch_limits": {"max_records": gateway.limits.max_records, "max_bytes": gateway.limits.max_bytes},
        "instances": instances,
        "alerts_firing": [a.title for a in gateway.alerts.book.firing()],
        "settings": gateway.settings.redacted(),
    }


async def wal_status_document(gateway: Gateway) -> dict[str, Any]:
    store = gateway.store
    head, positions = await log_positions(store, gateway.progress.cursors, time.time())
    instances = {}
    for instance, applier in gateway.appliers.items():
        position = positions[instance]
        instances[instance] = {
            "cursor": position.cursor,
            "pending": position.pending,
            "lag_seconds": position.lag_seconds,
            "state": applier.state,
            "up": gateway.health.is_up(instance),
        }
    divergences = await store.divergences()
    return {
        "head": head,
        "oldest": await store.oldest_seq(),
        "pending": max((p.pending for p in positions.values()), default=0),
        "oldest_pending_age_seconds": max((p.lag_seconds for p in positions.values()), default=0.0),
        "state": "applying" if any(a.state == "applying" for a in gateway.appliers.values()) else "idle",
        "instances": instances,
        "divergence_count": len(divergences),
        "divergences": [
            {
                "seq": d.seq, "instance": d.instance, "status": d.status, "expected_status": d.expected_status,
                "created_at": d.created_at,
            }
            for d in divergences[:DIVERGENCES_SHOWN]
        ],
        "bootstrap": gateway.bootstrap.status_document(),  # per instance: state, source, start_seq, records
    }


def wal_stats_document(gateway: Gateway) -> dict[str, Any]:
    monitor = gateway.monitor
    monitor.update_rates(time.time())
    stats = {i: a.stats for i, a in gateway.appliers.items()}
    by_instance = {
        i: {
            "applied_entries": s.applied_entries,
            "applied_batches": s.applied_batches,
            "applied_bytes": s.applied_bytes,
            "applied_per_second": monitor.applied_by_instance[i].rates(),
            "batch_sizes": percentiles(s.batch_sizes),
            "last_batch_size": s.last_batch_size,
            "retries": s.retries,
            "rejections": s.rejections,
            "lag_seconds": {k: round(v, 4) for k, v in percentiles(s.lags).items()},
        }
        for i, s in stats.items()
    }
    return {
        "scope": "this gateway, since it started",
        "appended": {
            "entries": gateway.writes.appended,
            "bytes": gateway.metrics.appended_bytes,
            "per_second": monitor.appended.rates(),
        },
        "applied": {
            "entries": sum(s.applied_entries for s in stats.values()),
            "bytes": sum(s.applied_bytes for s in stats.values()),
            "per_second": monitor.applied.rates(),
        },
        "batch_sizes": percentiles([n for s in stats.values() for n in s.batch_sizes]),
        "batch_limits": {"max_records": gateway.limits.max_records, "max_bytes": gateway.limits.max_bytes},
        "deletes_converted": int(getattr(gateway.writes, "deletes_converted", 0)),
        "retries": sum(s.retries for s in stats.values()),
        "rejections": sum(s.rejections for s in stats.values()),
        "lag_seconds": {k: round(v, 4) for k, v in percentiles([x for s in stats.values() for x in s.lags]).items()},
        "instances": by_instance,
    }


def resources_document(sample: Sample) -> dict[str, Any]:
    r = sample.resources
    return {
        "at": sample.at,
        "process": {"cpu_percent": r.process_cpu_percent, "memory_bytes": r.process_memory_bytes},
        "host": {
            "cpu_percent": r.host_cpu_percent, "memory_percent": r.host_memory_percent,
            "memory_available_bytes": r.host_memory_available_bytes, "memory_total_bytes": r.host_memory_total_bytes,
        },
        "instances": {i: {"up": s.up, "heartbeat_seconds": s.heartbeat_seconds} for i, s in sample.instances.items()},
    }


async def recommendations_document(gateway: Gateway) -> dict[str, Any]:
    active = gateway.monitor.tracker.active
    stored = await gateway.store.recommendations()
    latest_of_kind: dict[str, int] = {}
    for r in stored:
        latest_of_kind.setdefault(r.kind, r.id)
    return {
        "current": [{"kind": p.kind, "reason": p.reason, "details": p.details} for p in active.values()],
        "recommendations": [
            {
                "id": r.id, "created_at": r.created_at, "kind": r.kind, "reason": r.reason, "details": r.details,
                "current": r.kind in active and latest_of_kind[r.kind] == r.id,
            }
            for r in stored
        ],
    }


def admin_routes(gateway: Gateway) -> dict[str, Endpoint]:
    """Path -> endpoint; every admin route is a GET."""
    token = gateway.settings.admin_token

    async def health(request: HttpRequest) -> HttpResponse:
        document, status = await health_document(gateway)
        return json_response(document, status)

    async def status(request: HttpRequest) -> HttpResponse:
        return json_response(await status_document(gateway))

    async def wal_status(request: HttpRequest) -> HttpResponse:
        return json_response(await wal_status_document(gateway))

    async def wal_stats(request: HttpRequest) -> HttpResponse:
        return json_response(wal_stats_document(gateway))

    async def metrics(request: HttpRequest) -> HttpResponse:
        sample, _, _ = await gateway.monitor.measure(time.time(), ping=False)
        if "application/json" in _header(request, b"accept"):
            return json_response(resources_document(sample))
        return HttpResponse(200, gateway.metrics.render(), [(b"content-type", PROMETHEUS_CONTENT_TYPE.encode())])

    async def recommendations(request: HttpRequest) -> HttpResponse:
        return json_response(await recommendations_document(gateway))

    async def openapi(request: HttpRequest) -> HttpResponse:
        return json_response(admin_openapi(__version__))

    return {
        "/health": health,
        "/metrics": metrics,
        "/status": guarded(status, token),
        "/wal/status": guarded(wal_status, token),
        "/wal/stats": guarded(wal_stats, token),
        "/recommendations": guarded(recommendations, token),
        "/admin/openapi.json": guarded(openapi, token),
        **{path: guarded(endpoint, token, browser=True) for path, endpoint in dashboard_routes(gateway)},
    }
