"""The dashboard: one self-contained page (ops/static/dashboard.html: inline script and SVG charts, no external
assets), served at GET /dashboard; the page polls GET /dashboard/data, built here from the monitor's hour of
samples, the live positions of the log, the recent alerts and the stored recommendations.

The page is served under a Content-Security-Policy that allows its own inline script and style by their hashes
(computed from the page as shipped, so an edit of the page cannot break it), data from this origin only, and no
framing: an injected script or a page that frames the dashboard gets nothing.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import re
import time
from typing import Any

from .. import __version__
from ..errors import StoreError
from .alerts import Alerts
from .monitor import ResourceMonitor, log_positions
from .view import ClusterView

RECENT_SHOWN = 20
MAX_POINTS = 720  # an hour at the default 5 s monitor interval; longer histories are thinned to this


_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.S)
# Headers of every admin answer read by a browser: its type is the one sent, never sniffed.
NOSNIFF = (b"x-content-type-options", b"nosniff")


def dashboard_page() -> bytes:
    return (importlib.resources.files("chroma_ha.ops") / "static" / "dashboard.html").read_bytes()


def content_security_policy(page: bytes) -> bytes:
    """The page's policy: its own inline scripts and styles (by hash), its data from this origin, nothing else."""
    hashes: dict[bytes, list[str]] = {b"script": [], b"style": []}
    for kind, body in _INLINE.findall(page):
        hashes[kind].append("'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'")
    directives = [
        "default-src 'none'",
        "script-src " + (" ".join(hashes[b"script"]) or "'none'"),
        "style-src " + (" ".join(hashes[b"style"]) or "'none'"),
        "img-src data:",  # the page's empty icon
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
    return "; ".join(directives).encode()


def page_headers(page: bytes) -> list[tuple[bytes, bytes]]:
    """What the dashboard page is served with, besides its type."""
    return [(b"content-security-policy", content_security_policy(page)), NOSNIFF, (b"x-frame-options", b"DENY")]


def _thin(items: list[Any], limit: int = MAX_POINTS) -> list[Any]:
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(n * step)] for n in range(limit - 1)] + [items[-1]]


async def dashboard_data(view: ClusterView, monitor: ResourceMonitor, alerts: Alerts) -> dict[str, Any]:
    now = time.time()
    instances = view.members.urls
    samples = _thin(list(monitor.tracker.samples))
    latest = monitor.latest
    store_ok = True
    try:
        head, positions = await log_positions(view.store, view.progress.cursors, now)
        recommendations = await view.store.recommendations(RECENT_SHOWN)
    except StoreError:
        head, positions, recommendations, store_ok = 0, {}, [], False
    up = [i for i in view.health.up_instances() if i in view.members.serving]
    rows = []
    for instance in instances:
        state, applier = view.health.state_of(instance), view.appliers.get(instance)
        position = positions.get(instance)
        heartbeat = latest.instances[instance].heartbeat_seconds if latest and instance in latest.instances else None
        rows.append(
            {
                "url": instance,
                "up": state.up,
                "state": applier.state if applier is not None else "stopped",
                "member": view.members.state(instance),
                "cursor": view.progress.cursors.get(instance, 0),
                "pending": position.pending if position else None,
                "lag_seconds": position.lag_seconds if position else None,
                "heartbeat_ms": round(heartbeat * 1000, 2) if heartbeat is not None else None,
                "success_rate": round(state.success_rate, 4),
                "requests": state.requests,
            }
        )
    lagging = any(p.pending for i, p in positions.items() if i in up)
    status = "unhealthy" if not up or not store_ok else "degraded" if len(up) < len(instances) or lagging else "healthy"
    return {
        "now": now,
        "version": __version__,
        "status": status,
        "healthy_instances": f"{len(up)}/{len(instances)}",
        "head": head,
        "instances": rows,
        "throughput": {"appended": monitor.appended.rates(), "applied": monitor.applied.rates()},
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
        "alerts": list(alerts.recent)[:RECENT_SHOWN],
        "firing": alerts.firing_titles(),
        "recommendations": [{"created_at": r.created_at, "kind": r.kind, "reason": r.reason} for r in recommendations],
    }
