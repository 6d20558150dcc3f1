"""The admin API: health and the state of the log."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import StoreError

if TYPE_CHECKING:
    from ..app import Gateway


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


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
    if reasons:
        status = "unhealthy"
    elif len(up) < len(instances) or lagging:
        status = "degraded"
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


async def wal_status_document(gateway: Gateway) -> dict[str, Any]:
    store = gateway.store
    head = await store.head()
    now = time.time()
    instances = {}
    for instance, applier in gateway.appliers.items():
        cursor = gateway.progress.cursors.get(instance, 0)
        pending = max(0, head - cursor)
        lag = 0.0
        if pending:
            oldest = await store.read(cursor, 1)
            lag = max(0.0, now - oldest[0].created_at) if oldest else 0.0
        instances[instance] = {
            "cursor": cursor,
            "pending": pending,
            "lag_seconds": round(lag, 3),
            "state": applier.state,
            "up": gateway.health.is_up(instance),
        }
    divergences = await store.divergences()
    return {
        "head": head,
        "oldest": await store.oldest_seq(),
        "instances": instances,
        "divergences": [
            {"seq": d.seq, "instance": d.instance, "status": d.status, "expected_status": d.expected_status}
            for d in divergences
        ],
    }


def admin_routes(gateway: Gateway) -> list[Route]:
    async def health(request: Request) -> Response:
        document, status = await health_document(gateway)
        return json_response(document, status)

    async def wal_status(request: Request) -> Response:
        return json_response(await wal_status_document(gateway))

    return [Route("/health", health), Route("/wal/status", wal_status)]
