"""The acceptance check of a live deployment (`chroma-ha check`): its results and the pure judgements behind them.

Invariant: a check passes only on evidence seen from the outside (an answer that parses and says what it must); a
check that could not run is a failure, never a pass, and a check that does not apply to this deployment (document
deletion not configured, say) is `skipped` with the reason. The report passes when no check failed. The I/O lives in
`acceptance_run.py`; everything here is decided from documents already fetched, so it is unit-tested without servers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

PASS, FAIL, SKIP = "pass", "fail", "skipped"
SCRATCH_PREFIX = "chroma-ha-check-"
# The fields each admin document must carry: enough to know it is the gateway's document, not any JSON.
ADMIN_DOCUMENTS: dict[str, tuple[str, ...]] = {
    "/status": ("version", "gateway_id", "status", "instances", "log", "settings"),
    "/wal/status": ("head", "oldest", "instances", "divergence_count", "divergences"),
    "/wal/stats": ("appended", "applied", "instances"),
    "/wal/divergences": ("divergences",),
    "/wal/entries": ("seq", "head", "oldest", "entries"),
    "/recommendations": ("current", "recommendations"),
    "/admin/openapi.json": ("openapi", "paths"),
    "/dashboard/data": ("instances", "status"),
}
REQUIRED_SERIES = ("chroma_ha_log_head_seq", "chroma_ha_instance_up", "chroma_ha_requests")


@dataclass
class CheckResult:
    name: str
    status: str
    seconds: float
    detail: str = ""
    instances: list[str] = field(default_factory=list)  # the instances this check found at fault

    @property
    def failed(self) -> bool:
        return self.status == FAIL


@dataclass
class CheckReport:
    url: str
    results: list[CheckResult] = field(default_factory=list)
    scratch: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.results) and not any(r.failed for r in self.results)

    @property
    def instances_at_fault(self) -> list[str]:
        return sorted({i for r in self.results for i in r.instances})

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "scratch_collection": self.scratch,
            "instances_at_fault": self.instances_at_fault,
            "checks": [asdict(r) for r in self.results],
        }


class CheckFailed(Exception):
    """A check saw something wrong: its message is the line's detail; `instances` the ones at fault."""

    def __init__(self, detail: str, instances: Sequence[str] = ()) -> None:
        super().__init__(detail)
        self.instances = list(instances)


class NotApplicable(Exception):
    """The check does not apply to this deployment; the message says why."""


def judge_health(document: Mapping[str, Any], status: int) -> str:
    """The health line: passes while every instance is up and the store answers; names what is down."""
    instances = document.get("instances")
    if not isinstance(instances, dict) or "status" not in document:
        raise CheckFailed(f"/health answered {status} without a health document")
    down = sorted(url for url, i in instances.items() if not (isinstance(i, dict) and i.get("up")))
    problems = []
    if down:
        problems.append(f"instance {', '.join(down)} down")
    if document.get("store") not in (None, "ok"):
        problems.append(f"store {document.get('store')}")
    if status != 200:
        problems.append(f"HTTP {status}")
    if problems:
        raise CheckFailed(f"{document['status']}: {'; '.join(problems)}", down)
    return f"{document['status']}, {document.get('healthy_instances', '?')} instances up"


def judge_document(path: str, document: Any) -> str:
    """An admin document has the fields it must have."""
    if not isinstance(document, dict):
        raise CheckFailed(f"{path} answered {type(document).__name__}, not a JSON object")
    missing = [k for k in ADMIN_DOCUMENTS.get(path, ()) if k not in document]
    if missing:
        raise CheckFailed(f"{path} lacks {', '.join(missing)}")
    return f"{len(document)} fields"


def judge_metrics(text: str) -> str:
    """Prometheus text that parses, with the gateway's own series in it."""
    try:
        families = {f.name: f for f in text_string_to_metric_families(text)}
    except (ValueError, TypeError, IndexError) as exc:
        raise CheckFailed(f"/metrics does not parse as Prometheus text: {exc}") from None
    missing = [name for name in REQUIRED_SERIES if name not in families]
    if missing:
        raise CheckFailed(f"/metrics lacks {', '.join(missing)}")
    samples = sum(len(f.samples) for f in families.values())
    return f"{len(families)} families, {samples} samples"


def lagging(wal_status: Mapping[str, Any], seq: int) -> dict[str, tuple[int, bool]]:
    """Instances whose cursor is below `seq`: url -> (cursor, up)."""
    instances = wal_status.get("instances") or {}
    return {
        url: (int(i.get("cursor", 0)), bool(i.get("up")))
        for url, i in instances.items()
        if int(i.get("cursor", 0)) < seq
    }


def describe_lag(behind: Mapping[str, tuple[int, bool]], seq: int) -> str:
    return "; ".join(
        f"instance {url} {'is down, ' if not up else ''}at seq {cursor} of {seq}"
        for url, (cursor, up) in sorted(behind.items())
    )


def setting(status: Mapping[str, Any], name: str) -> Any:
    settings = status.get("settings")
    return settings.get(name) if isinstance(settings, dict) else None


def document_deletion(status: Mapping[str, Any], collection: str) -> str:
    """The metadata key of document-level deletion for `collection`, or NotApplicable saying why not."""
    key = setting(status, "delete_expand_key")
    if not key:
        raise NotApplicable("document-level deletion is not configured (delete_expand_key)")
    limited = setting(status, "delete_expand_collections") or []
    if isinstance(limited, str):
        limited = [c for c in limited.split(",") if c]
    if limited and collection not in limited:
        raise NotApplicable(f"document-level deletion is limited to {', '.join(limited)}")
    return str(key)


def data_auth_on(status: Mapping[str, Any]) -> bool:
    """Whether the gateway says it asks data requests for a token: an `auth` section of /status that is on, or a
    token setting other than the admin token that is set."""
    auth = status.get("auth")
    if isinstance(auth, dict):
        return bool(auth.get("enabled", auth.get("on", bool(auth))))
    if isinstance(auth, bool | str):
        return auth not in (False, "", "off", "none")
    settings = status.get("settings")
    if not isinstance(settings, dict):
        return False
    return any(
        v not in (None, "", (), [], False, "off", "none")
        for k, v in settings.items()
        if ("token" in k or k.startswith("auth")) and k != "admin_token"
    )


def missing_ids(got: Mapping[str, Any], expected: Iterable[str]) -> list[str]:
    ids = set(got.get("ids") or [])
    return sorted(set(expected) - ids)
