"""Which incarnation of an instance are we talking to?

Each instance holds a marker collection in a tenant of its own (not visible in any client's tenant). Its id is
the instance's incarnation: when the marker is gone or has another id, the instance was wiped or replaced, and
everything the gateway knew about it (cursor, collection ids) must be rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from ..errors import InstanceError
from .paths import API
from .transport import Transport

MARKER_TENANT = "chroma_ha_system"
MARKER_DATABASE = "system"
MARKER_COLLECTION = "incarnation"
_JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Incarnation:
    id: str


async def ensure_marker(client: Transport, instance: str, create: bool = True) -> Incarnation | None:
    path = f"{API}/tenants/{MARKER_TENANT}/databases/{MARKER_DATABASE}/collections"
    found = await client.request(instance, "GET", f"{path}/{MARKER_COLLECTION}")
    if found.ok:
        return Incarnation(orjson.loads(found.body)["id"])
    if not create:
        return None
    steps = [
        (f"{API}/tenants", {"name": MARKER_TENANT}),
        (f"{API}/tenants/{MARKER_TENANT}/databases", {"name": MARKER_DATABASE}),
        (path, {"name": MARKER_COLLECTION, "get_or_create": True}),
    ]
    response = None
    for step_path, payload in steps:
        response = await client.request(
            instance,
            "POST",
            step_path,
            headers=_JSON,
            body=orjson.dumps(payload),
            idempotent=True,  # 409: done
        )
        if not response.ok and response.status != 409:
            raise InstanceError(instance, f"cannot create the incarnation marker: {response.status}")
    assert response is not None
    return Incarnation(orjson.loads(response.body)["id"])
