"""The dashboard: GET /dashboard serves one self-contained page (ops/static/dashboard.html: inline script and SVG
charts, no external assets); the page polls GET /dashboard/data, built here from the monitor's hour of samples,
the live positions of the log, the recent alerts and the stored recommendations.
"""

from __future__ import annotations

import importlib.resources
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from .. import __version__
from ..errors import StoreError
from ..gateway.http_server import HttpRequest, HttpResponse
from .monitor import log_positions

if TYPE_CHECKING:
    from ..app import Gateway

RECENT_SHOWN = 20
_NO_STORE = (b"cache-control", b"no-store")
MAX_POINTS = 720  # an hour at the default 5 s monitor interval; longer histories are thinned to this


def _page() -> bytes:
    return (importlib.resources.files("chroma_ha.ops") / "static" / "dashboard.html").read_bytes()


def _thin(items: list[Any], limit: int = MAX_POINTS) -> list[Any]:
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(n * step)] for n in range(limit - 1)] + [items[-1]]


async def dashboard_data(gateway: Gateway) -> dict[str, Any]:
    now = time.time()
    instances = gateway.settings.instances
    samples = _thin(list(gateway.monitor.tracker.samples))
    latest = gateway.monitor.latest
    store_ok = True
    try:
        head, positions = await log_positions(gateway.store, gateway.progress.cursors, now)
        recommendations = await gateway.store.recommendations(RECENT_SHOWN)
    except StoreError:
        head, positions, recommendations, store_ok = 0, {}, [], False
    up = gateway.health.up_instances()
    rows = []
    for instance in instances:
        state = gateway.health.states[instance]
        position = positions.get(instance)
        heartbeat = latest.instances[instance].heartbeat_seconds if latest and instance in latest.instances else None
        rows.append({
            "url": instance,
            "up": state.up,
            "state": gateway.appliers[instance].state,
            "cursor": gateway.progress.cursors.get(instance, 0),
            "pending": position.pending if position else None,
            "lag_seconds": position.lag_seconds if position else None,
            "heartbeat_ms": round(heartbeat * 1000, 2) if heartbeat is not None else None,
            "success_rate": round(state.success_rate, 4),
            "requests": state.requests,
        })
    lagging = any(p.pending for i, p in positions.items() if i in up)
    status = "unhealthy" if not up or not store_ok else "degraded" if len(up) < len(instances) or lagging else "healthy"
    return {
        "now": now,
        "version": __version__,
        "status": status,
        "healthy_instances": f"{len(up)}/{len(instances)}",
        "head": head,
        "instances": rows,
        "throughput": {"appended": gateway.monitor.appended.rates(), "applied": gateway.monitor.applied.rates()},
        "series": {
            "t": [round(s.at, 1) for s in samples],
            "lag": {i: [s.instances[i].lag_seconds if i in s.instances else None for s in samples] for i in instances},
            "backlog": {i: [s.instances[i].pending if i in s.instances else None for s in samples] for i in instances},
            "appended": [round(s.appended_per_second, 2) for s in samples],
            "applied": [round(s.applied_per_second, 2) for s in samples],
            "host_cpu": [round(s.resources.host_cpu_percent, 1) for s in samples],
            "host_memory": [round(s.resources.host_memory_percent, 1) for s in samples],
            "process_cpu": [round(s.resources.process_cpu_percent, 1) for s in samples],
        },
        "alerts": list(gateway.alerts.recent)[:RECENT_SHOWN],
        "firing": [a.title for a in gateway.alerts.book.firing()],
        "recommendations": [
            {"created_at": r.created_at, "kind": r.kind, "reason": r.reason} for r in recommendations
        ],
    }


def dashboard_routes(gateway: Gateway) -> list[tuple[str, Callable[[HttpRequest], Awaitable[HttpResponse]]]]:
    page = _page()

    async def dashboard(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, page, [(b"content-type", b"text/html; charset=utf-8"), _NO_STORE])

    async def data(request: HttpRequest) -> HttpResponse:
        body = orjson.dumps(await dashboard_data(gateway))
        return HttpResponse(200, body, [(b"content-type", b"application/json"), _NO_STORE])

    return [("/dashboard", dashboard), ("/dashboard/data", data)]
