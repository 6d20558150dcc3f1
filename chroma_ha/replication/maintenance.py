"""The operators' actions on the log and the instances, behind the admin API: a manual prune and a forced rebuild.

Invariant: neither can lose a write. The prune removes only entries every configured instance has applied (the
retention's floor), whatever `upto` asks; a rebuild copies from an instance that is up and in step, and is refused
(409) when none is, or when the instance's applier runs in another gateway (ask that one: it holds the lease).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..cluster.health import HealthMonitor
from ..errors import StoreError
from ..store import LogStore
from .applier import Applier
from .retention import Retention

_IN_STEP = frozenset({"idle", "applying", "retrying"})


class Maintenance:
    def __init__(
        self, store: LogStore, retention: Retention, appliers: Mapping[str, Applier], health: HealthMonitor
    ) -> None:
        self._store = store
        self._retention = retention
        self._appliers = appliers
        self._health = health

    async def prune(self, upto: int | None, older_than: float) -> tuple[dict[str, Any], int]:
        try:
            before = await self._store.oldest_seq()
            floor = await self._retention.floor()
            pruned = await self._retention.prune_once(time.time(), upto=upto, window=older_than)
            oldest, head = await self._store.oldest_seq(), await self._store.head()
        except StoreError as exc:
            return {"error": "ServiceUnavailable", "message": f"the log store failed: {exc}"}, 503
        return {
            "pruned": pruned,
            "oldest_before": before,
            "oldest": oldest,
            "head": head,
            "applied_everywhere_upto": floor,
            "upto": upto,
            "older_than": older_than,
        }, 200

    async def rebuild(self, instance: str) -> tuple[dict[str, Any], int]:
        applier = self._appliers.get(instance)
        if applier is None:
            known = ", ".join(self._appliers)
            return {"error": "NotFoundError", "message": f"{instance} is not one of the instances: {known}"}, 404
        if applier.state == "standby":
            message = f"the applier of {instance} runs in another gateway on this store: ask that gateway"
            return {"error": "Conflict", "message": message}, 409
        sources = [
            i for i, a in self._appliers.items() if i != instance and self._health.is_up(i) and a.state in _IN_STEP
        ]
        if not sources:
            message = f"no other instance is up and in step to copy {instance} from"
            return {"error": "Conflict", "message": message}, 409
        applier.request_rebuild()
        return {"instance": instance, "state": "requested", "sources": sources, "requested_at": time.time()}, 202
