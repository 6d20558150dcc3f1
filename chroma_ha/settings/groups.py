"""The one settings object, built once from flags, environment (`CHROMA_HA_*`) and defaults.

Settings come in groups, frozen value objects with named defaults: `settings.health.interval`,
`settings.consistency.ack`, ... Each setting is defined once, on its field (`setting(...)`): its flat public name
(`health_interval`, which is also the variable `CHROMA_HA_HEALTH_INTERVAL`, the flag `--health-interval`, the name in
errors and the key in /status), its default, its rule and its help. Its type is the field's annotation.
`DEFINITIONS` walks them all, and everything else is generated from it: reading the variables, coercing text to the
annotated type, the command-line flags (`cli/options.py`), redaction for /status.

Nothing else in the package reads `os.environ`. Every value is checked when its group is built, and a bad value
raises `SettingsError` naming the flat setting, so the gateway refuses to start rather than misbehave later.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import SettingsError
from ..redaction import DSN, HEADERS, WEBHOOK, Redaction, Scrubber
from .credentials import InstanceHeaders, header_items_problem, instance_headers, known_secrets, without_userinfo
from .fields import Definition, _Checked, setting, walk
from .rules import (
    OneOf,
    at_least_one,
    fraction,
    hidden,
    instance_urls,
    not_empty,
    not_negative,
    percentage,
    port_number,
    positive,
    positive_weights,
    store_url,
    webhook_url,
)

DEFAULT_STORE = "sqlite:///chroma_ha.db"
DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_IDLE_TIMEOUT_S = 75.0
DEFAULT_HEAD_TIMEOUT_S = 10.0
DEFAULT_SEND_TIMEOUT_S = 30.0
DEFAULT_MAX_ANSWER_BYTES = 256 * 1024 * 1024  # on the wire: a get or query of big records stays far below it
ACK_POLICIES = ("one", "all", "log")
STALE_READ_POLICIES = ("serve", "refuse")
DEFAULT_ACK = "one"
DEFAULT_STALE_READS = "serve"
DEFAULT_WRITE_TIMEOUT_S = 10.0
DEFAULT_READ_WAIT_S = 1.0
DEFAULT_HEALTH_INTERVAL_S = 1.0
DEFAULT_HEALTH_TIMEOUT_S = 0.5
DEFAULT_HEALTH_RISE = 2
DEFAULT_HEALTH_FALL = 3
DEFAULT_POLL_INTERVAL_S = 0.2
DEFAULT_BATCH_MAX_RECORDS = 2000
DEFAULT_BATCH_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_BACKOFF_BASE_S = 0.05
DEFAULT_BACKOFF_CAP_S = 2.0
DEFAULT_RETENTION_S = 24 * 3600.0
DEFAULT_BOOTSTRAP_PAGE_SIZE = 500
DEFAULT_REBUILD_AFTER_S = 6 * 3600.0
DEFAULT_RETENTION_MAX_ENTRIES = 0  # no cap
DEFAULT_LEASE_TTL_S = 10.0
DEFAULT_MEMBERSHIP_POLL_S = 1.0
DEFAULT_ARCHIVE_DIR = ""  # no continuous archiving
DEFAULT_ARCHIVE_INTERVAL_S = 10.0
# operations: the resource monitor and alerts
DEFAULT_MONITOR_INTERVAL_S = 5.0
DEFAULT_PRESSURE_WINDOW_S = 300.0
DEFAULT_CPU_THRESHOLD_PERCENT = 85.0
DEFAULT_MEMORY_THRESHOLD_PERCENT = 85.0
DEFAULT_LAG_THRESHOLD_S = 60.0
DEFAULT_BACKLOG_THRESHOLD = 10_000
DEFAULT_DOWN_RATIO_THRESHOLD = 0.5
DEFAULT_ALERT_DEDUP_WINDOW_S = 3600.0
DEFAULT_ALERT_MIN_INTERVAL_S = 30.0
DEFAULT_ALERT_RATE_PER_MINUTE = 20

# --- the groups -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpSettings(_Checked):
    """Where the gateway listens, and the limits its HTTP server keeps to."""

    host: str = setting("host", DEFAULT_HOST, None, "Address to listen on")
    port: int = setting("port", DEFAULT_PORT, port_number, "Port to listen on")
    max_body_bytes: int = setting("max_body_bytes", DEFAULT_MAX_BODY_BYTES, at_least_one, "Larger requests get 413")
    max_connections: int = setting(
        "max_connections", DEFAULT_MAX_CONNECTIONS, at_least_one, "Client connections at most; past them 503 and close"
    )
    idle_timeout: float = setting(
        "idle_timeout",
        DEFAULT_IDLE_TIMEOUT_S,
        positive,
        "Seconds a kept-alive connection may stay idle, and a request body may stop arriving (408)",
    )
    head_timeout: float = setting(
        "head_timeout", DEFAULT_HEAD_TIMEOUT_S, positive, "Seconds a request line and headers may take to arrive (408)"
    )
    send_timeout: float = setting(
        "send_timeout",
        DEFAULT_SEND_TIMEOUT_S,
        positive,
        "Seconds a client may read none of its answers before it is disconnected",
    )


@dataclass(frozen=True)
class ConsistencySettings(_Checked):
    """What a write waits for before it is acknowledged, and what a read may serve."""

    ack: str = setting(
        "ack",
        DEFAULT_ACK,
        OneOf(ACK_POLICIES),
        "Ack policy: one (durable and applied on one instance), all (applied on every instance that is up), "
        "log (durable only)",
    )
    write_timeout: float = setting(
        "write_timeout",
        DEFAULT_WRITE_TIMEOUT_S,
        positive,
        "Seconds a write waits for its ack policy; then 503, saying the write is logged and will be applied",
    )
    read_wait: float = setting(
        "read_wait",
        DEFAULT_READ_WAIT_S,
        not_negative,
        "Seconds a read waits for an instance that holds the client's writes",
    )
    stale_reads: str = setting(
        "stale_reads",
        DEFAULT_STALE_READS,
        OneOf(STALE_READ_POLICIES),
        "Past read_wait: serve the most caught-up instance (marked stale), or refuse (503)",
    )
    unsafe_reads_ignore_freshness: bool = setting(
        "unsafe_reads_ignore_freshness",
        False,
        None,
        "For the history checker's own test: never in production. Reads go to any healthy instance, whether or not "
        "it holds the writes acknowledged before them, unmarked",
    )


@dataclass(frozen=True)
class HealthSettings(_Checked):
    """Active probes of every instance, with a load balancer's rise and fall counts."""

    interval: float = setting("health_interval", DEFAULT_HEALTH_INTERVAL_S, positive, "Seconds between probes")
    timeout: float = setting("health_timeout", DEFAULT_HEALTH_TIMEOUT_S, positive, "Seconds a probe may take")
    rise: int = setting(
        "health_rise", DEFAULT_HEALTH_RISE, at_least_one, "Good probes in a row that mark an instance up"
    )
    fall: int = setting(
        "health_fall", DEFAULT_HEALTH_FALL, at_least_one, "Failures in a row that mark an instance down"
    )


@dataclass(frozen=True)
class ReplicationSettings(_Checked):
    """The appliers: how they wake, batch and retry, how long the log keeps entries, and their leases."""

    poll_interval: float = setting(
        "poll_interval", DEFAULT_POLL_INTERVAL_S, positive, "Seconds of the fallback poll when no wake-up arrives"
    )
    batch_max_records: int = setting(
        "batch_max_records", DEFAULT_BATCH_MAX_RECORDS, at_least_one, "Upper bound of an applier batch, in records"
    )
    batch_max_bytes: int = setting(
        "batch_max_bytes", DEFAULT_BATCH_MAX_BYTES, at_least_one, "Upper bound of an applier batch, in bytes"
    )
    backoff_base: float = setting(
        "backoff_base", DEFAULT_BACKOFF_BASE_S, positive, "Seconds of the first retry after a transient failure"
    )
    backoff_cap: float = setting(
        "backoff_cap", DEFAULT_BACKOFF_CAP_S, positive, "Longest wait between retries, seconds"
    )
    retention: float = setting(
        "retention", DEFAULT_RETENTION_S, positive, "Seconds an entry applied everywhere is kept before pruning"
    )
    rebuild_after: float = setting(
        "rebuild_after",
        DEFAULT_REBUILD_AFTER_S,
        positive,
        "Seconds an instance behind the log may hold back pruning; then it is rebuilt when it returns",
    )
    retention_max_entries: int = setting(
        "retention_max_entries",
        DEFAULT_RETENTION_MAX_ENTRIES,
        not_negative,
        "Most entries the log keeps: older ones every instance holding pruning back applied are pruned early",
        shown_default="no cap",
    )
    bootstrap_page_size: int = setting(
        "bootstrap_page_size",
        DEFAULT_BOOTSTRAP_PAGE_SIZE,
        at_least_one,
        "Records a bootstrap copies per request; a resumed bootstrap starts after the last page copied",
    )
    lease_ttl: float = setting(
        "lease_ttl",
        DEFAULT_LEASE_TTL_S,
        positive,
        "With PostgreSQL, seconds an applier's lease lasts before another gateway takes over",
    )
    membership_poll: float = setting(
        "membership_poll",
        DEFAULT_MEMBERSHIP_POLL_S,
        positive,
        "Seconds between two looks at the store's list of instances (added, drained, removed by any gateway)",
    )
    archive_dir: str = setting(
        "archive_dir",
        DEFAULT_ARCHIVE_DIR,
        None,
        "A folder into which every log entry is archived in checksummed segments, for point-in-time restore "
        "(shared by every gateway of one store)",
        shown_default="none",
    )
    archive_interval: float = setting(
        "archive_interval",
        DEFAULT_ARCHIVE_INTERVAL_S,
        positive,
        "Seconds after which the entries not archived yet are closed into a segment: the archive lags by that",
    )


@dataclass(frozen=True)
class DeleteSettings(_Checked):
    """Document-level deletion: off while `expand_key` is empty."""

    expand_key: str = setting(
        "delete_expand_key",
        "",
        None,
        "The metadata key naming a record's document (e.g. document_id)",
        shown_default="off",
    )
    expand_collections: tuple[str, ...] = setting(
        "delete_expand_collections",
        (),
        None,
        "Limit document-level deletion to these collections, comma-separated",
        shown_default="all",
    )


@dataclass(frozen=True)
class AdminSettings(_Checked):
    """Who may use the admin API, and whether a client may reset everything."""

    token: str = setting(
        "admin_token",
        "",
        None,
        "When set, admin routes other than /health and /metrics need this bearer token",
        redact=hidden,
    )
    allow_reset: bool = setting(
        "allow_reset", False, None, "Allow POST /api/v2/reset (resets every instance, the catalog and the log)"
    )


def _token_names(entries: tuple[str, ...]) -> list[str]:
    """The `auth_tokens` setting as /status shows it: the names, never the hashes."""
    return [entry.partition(":")[0] for entry in entries]


@dataclass(frozen=True)
class AuthSettings(_Checked):
    """Tokens on the data path: none configured means no authentication, as a Chroma server without auth."""

    tokens_file: str = setting(
        "auth_tokens_file",
        "",
        None,
        "A TOML file of [[token]] tables (name, sha256, tenants, databases, access, admin), reloaded on SIGHUP",
        shown_default="none",
    )
    tokens: tuple[str, ...] = setting(
        "auth_tokens",
        (),
        None,
        "Tokens as name:sha256 (hex of the token's SHA-256), comma-separated; each reads and writes everywhere",
        redact=_token_names,
        shown_default="none",
    )


@dataclass(frozen=True)
class AlertSettings(_Checked):
    """Where alerts go, and how often: deduplicated and rate-limited."""

    slack_webhook: str = setting(
        "slack_webhook", "", webhook_url, "A Slack incoming webhook URL for alerts (a secret)", redact=WEBHOOK
    )
    webhook: str = setting(
        "alert_webhook", "", webhook_url, "A generic webhook URL that takes alerts as JSON (a secret)", redact=WEBHOOK
    )
    dedup_window: float = setting(
        "alert_dedup_window",
        DEFAULT_ALERT_DEDUP_WINDOW_S,
        positive,
        "Seconds: a firing alert is repeated, an event sent, at most once per window",
    )
    min_interval: float = setting(
        "alert_min_interval",
        DEFAULT_ALERT_MIN_INTERVAL_S,
        not_negative,
        "Least seconds between two messages for the same alert",
    )
    rate_per_minute: int = setting(
        "alert_rate_per_minute", DEFAULT_ALERT_RATE_PER_MINUTE, at_least_one, "Most alert messages sent per minute"
    )


@dataclass(frozen=True)
class MonitorSettings(_Checked):
    """The resource monitor: how often it samples, and the thresholds of its recommendations and alerts."""

    interval: float = setting("monitor_interval", DEFAULT_MONITOR_INTERVAL_S, positive, "Seconds between samples")
    pressure_window: float = setting(
        "pressure_window",
        DEFAULT_PRESSURE_WINDOW_S,
        positive,
        "Seconds pressure must last to become an upgrade recommendation",
    )
    cpu_threshold: float = setting(
        "cpu_threshold", DEFAULT_CPU_THRESHOLD_PERCENT, percentage, "CPU pressure, percent (host or gateway process)"
    )
    memory_threshold: float = setting(
        "memory_threshold", DEFAULT_MEMORY_THRESHOLD_PERCENT, percentage, "Host memory pressure, percent"
    )
    lag_threshold: float = setting(
        "lag_threshold", DEFAULT_LAG_THRESHOLD_S, positive, "Seconds of lag of an up instance that alert"
    )
    backlog_threshold: int = setting(
        "backlog_threshold", DEFAULT_BACKLOG_THRESHOLD, at_least_one, "Entries waiting to be applied that alert"
    )
    down_ratio_threshold: float = setting(
        "down_ratio_threshold",
        DEFAULT_DOWN_RATIO_THRESHOLD,
        fraction,
        "Share of the window an instance must be down to be recommended for replacement",
    )


def _this_host_and_process() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class Settings(_Checked):
    """The deployment (instances, store, this gateway) and one group per part that is configured."""

    instances: tuple[str, ...] = setting(
        "instances",
        (),
        instance_urls,
        "A Chroma server URL; repeat for each instance (the variable: comma-separated)",
        flag="--instance",
        repeatable=True,
    )
    instance_weights: tuple[float, ...] = setting(
        "instance_weights",
        (),
        positive_weights,
        "Read weights, one per instance, comma-separated",
        shown_default="equal",
    )
    instance_headers: tuple[str, ...] = setting(
        "instance_headers",
        (),
        header_items_problem,
        "A header the gateway sends to every instance, 'Name: value', or to one, '<URL or index from 0>=Name: value';"
        " repeat for each (the variable: comma-separated). Values are secrets",
        redact=HEADERS,
        flag="--instance-header",
        repeatable=True,
    )
    store: str = setting(
        "store",
        DEFAULT_STORE,
        store_url,
        "sqlite:///relative.db, sqlite:////absolute.db or a postgresql:// DSN",
        redact=DSN,
    )
    request_timeout: float = setting(
        "request_timeout", DEFAULT_REQUEST_TIMEOUT_S, positive, "Seconds a request to an instance may take"
    )
    max_answer_bytes: int = setting(
        "max_answer_bytes",
        DEFAULT_MAX_ANSWER_BYTES,
        at_least_one,
        "Largest answer taken from an instance; a larger one fails that request with a message naming this setting",
    )
    gateway_id: str = setting(
        "gateway_id",
        None,
        not_empty,
        "This gateway's name, in leases and alerts",
        factory=_this_host_and_process,
        shown_default="<hostname>-<pid>",
    )
    http: HttpSettings = dataclasses.field(default_factory=HttpSettings)
    consistency: ConsistencySettings = dataclasses.field(default_factory=ConsistencySettings)
    health: HealthSettings = dataclasses.field(default_factory=HealthSettings)
    replication: ReplicationSettings = dataclasses.field(default_factory=ReplicationSettings)
    deletes: DeleteSettings = dataclasses.field(default_factory=DeleteSettings)
    admin: AdminSettings = dataclasses.field(default_factory=AdminSettings)
    auth: AuthSettings = dataclasses.field(default_factory=AuthSettings)
    alerts: AlertSettings = dataclasses.field(default_factory=AlertSettings)
    monitor: MonitorSettings = dataclasses.field(default_factory=MonitorSettings)
    # derived in __post_init__ from instances and instance_headers: not settings of their own
    _userinfo: ClassVar[Mapping[str, tuple[str, str]]]
    _instance_headers: ClassVar[InstanceHeaders]

    def __post_init__(self) -> None:
        super().__post_init__()
        # an instance is known without its userinfo everywhere; what it carried becomes its credentials
        bare, carried = without_userinfo(self.instances)
        object.__setattr__(self, "instances", bare)
        object.__setattr__(self, "_userinfo", carried)
        object.__setattr__(self, "_instance_headers", instance_headers(bare, self.instance_headers, carried))
        if self.instance_weights and len(self.instance_weights) != len(self.instances):
            raise SettingsError("instance_weights", "give one weight per instance")

    @property
    def is_postgres(self) -> bool:
        return self.store.startswith(("postgresql://", "postgres://"))

    @property
    def sqlite_path(self) -> str:
        """The file of a `sqlite:///relative.db` or `sqlite:////absolute.db` store, as SQLAlchemy reads them."""
        return self.store[len("sqlite:///") :]

    def headers_for_instances(self) -> InstanceHeaders:
        """The headers the gateway sends to each instance: its own credentials, never a client's."""
        return dict(self._instance_headers)

    def secrets(self, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
        """Every secret value in force (the store's password, tokens, webhooks, instance credentials, a PGPASSWORD
        of the environment), for scrubbing text that leaves the process."""
        values = [(d.redact if isinstance(d.redact, Redaction) else None, d.value_in(self)) for d in DEFINITIONS]
        return known_secrets(values, self._userinfo, self.headers_for_instances(), os.environ if env is None else env)

    def scrubber(self, env: Mapping[str, str] | None = None) -> Scrubber:
        """What takes every secret in force out of a text (a log line, an error, a traceback)."""
        return Scrubber(self.secrets(env))

    def weight(self, instance: str) -> float:
        if not self.instance_weights:
            return 1.0
        return self.instance_weights[self.instances.index(instance)]

    def redacted(self) -> dict[str, Any]:
        """The settings in force by flat name (the keys /status has always shown), secrets hidden."""
        shown = {}
        for d in DEFINITIONS:
            value = d.value_in(self)
            shown[d.name] = d.redact(value) if d.redact is not None else value
        return shown

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Defaults, then `CHROMA_HA_*` variables, then `overrides` by flat name (command-line flags): an override of
        None or () is not given, one given as text is read as its variable would be, and an int is a float where a
        float is expected."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for d in DEFINITIONS:
            raw = env.get(d.variable)
            if raw is not None:
                values[d.name] = d.parse(raw)
        for name, value in (overrides or {}).items():
            if value is None or value == ():
                continue
            d = definition(name)
            if isinstance(value, str) and d.kind is not str:
                value = d.parse(value)
            elif d.kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            values[name] = value
        return cls._of(values)

    @classmethod
    def _of(cls, values: Mapping[str, Any]) -> Settings:
        top: dict[str, Any] = {}
        grouped: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            d = definition(name)
            if d.group is None:
                top[d.field] = value
            else:
                grouped.setdefault(d.group, {})[d.field] = value
        return cls(**top, **{group: _GROUPS[group](**fields) for group, fields in grouped.items()})


DEFINITIONS, _GROUPS = walk(Settings)

_BY_NAME = {d.name: d for d in DEFINITIONS}


def definition(name: str) -> Definition:
    """The setting of this flat name (`health_interval`)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise SettingsError(name, "no such setting") from None
