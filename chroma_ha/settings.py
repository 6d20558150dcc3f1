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
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from .errors import SettingsError

ENV_PREFIX = "CHROMA_HA_"

DEFAULT_STORE = "sqlite:///chroma_ha.db"
DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
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
DEFAULT_LEASE_TTL_S = 10.0
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

Rule = Callable[[Any], "str | None"]  # what is wrong with a value, or None when nothing is


# --- rules ------------------------------------------------------------------------------------------------------


def positive(value: float) -> str | None:
    return None if value > 0 else f"must be positive, got {value}"


def not_negative(value: float) -> str | None:
    return None if value >= 0 else "must not be negative"


def at_least_one(value: int) -> str | None:
    return None if value >= 1 else f"must be at least 1, got {value}"


def percentage(value: float) -> str | None:
    return None if 0 < value <= 100 else f"expected a percentage in (0, 100], got {value}"


def fraction(value: float) -> str | None:
    return None if 0 < value <= 1 else f"expected a fraction in (0, 1], got {value}"


def port_number(value: int) -> str | None:
    return None if 0 < value < 65536 else f"expected 1-65535, got {value}"


def not_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def store_url(value: str) -> str | None:
    if value.startswith(("sqlite:///", "postgresql://", "postgres://")):
        return None
    return f"expected sqlite:///path.db or postgresql://..., got {password_hidden(value)!r}"


def instance_urls(urls: tuple[str, ...]) -> str | None:
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return f"not an http(s) URL: {url!r}"
    return "the same instance is listed twice" if len(set(urls)) != len(urls) else None


def webhook_url(url: str) -> str | None:
    """Empty (no webhook) or an http(s) URL; a webhook is a secret, so the message never repeats it."""
    return None if not url or urlsplit(url).scheme in ("http", "https") else "not an http(s) URL"


def positive_weights(weights: tuple[float, ...]) -> str | None:
    return None if all(w > 0 for w in weights) else "weights must be positive"


@dataclass(frozen=True)
class OneOf:
    """A rule: the value is one of `choices` (the flags offer them as a choice)."""

    choices: tuple[str, ...]

    def __call__(self, value: str) -> str | None:
        return None if value in self.choices else f"expected one of {', '.join(self.choices)}, got {value!r}"


# --- redaction --------------------------------------------------------------------------------------------------


def hidden(value: str) -> str:
    return "***" if value else value


def password_hidden(dsn: str) -> str:
    try:
        password = urlsplit(dsn).password
    except ValueError:  # not even a URL: it may still hold a password
        return "***"
    return dsn.replace(f":{password}@", ":***@") if password else dsn


# --- how a setting is defined -----------------------------------------------------------------------------------

_ABOUT = "chroma_ha.setting"


@dataclass(frozen=True)
class _About:
    name: str
    rule: Rule | None
    help: str
    redact: Callable[[Any], Any] | None
    shown_default: str | None
    flag: str | None
    repeatable: bool


def setting(
    name: str,
    default: Any,
    rule: Rule | None,
    help: str,
    *,
    factory: Callable[[], Any] | None = None,
    redact: Callable[[Any], Any] | None = None,
    shown_default: str | None = None,
    flag: str | None = None,
    repeatable: bool = False,
) -> Any:
    """A field of a settings group, with what defines it as a setting: its flat public `name`, its `default` (or a
    `factory` of it), its `rule` and its `help`. A `redact`ed value is shown through that function in /status.
    `flag` replaces `--<name>`, and a `repeatable` flag is given once per item."""
    about = _About(name, rule, help, redact, shown_default, flag, repeatable)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={_ABOUT: about})
    return dataclasses.field(default=default, metadata={_ABOUT: about})


class _Checked:
    """Checks every setting of a group when the group is built, naming the flat setting when one is bad."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(cast(Any, self)):
            about = f.metadata.get(_ABOUT)
            if about is not None and about.rule is not None:
                problem = about.rule(getattr(self, f.name))
                if problem is not None:
                    raise SettingsError(about.name, problem)


# --- the groups -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpSettings(_Checked):
    """Where the gateway listens, and the largest request it accepts."""

    host: str = setting("host", DEFAULT_HOST, None, "Address to listen on")
    port: int = setting("port", DEFAULT_PORT, port_number, "Port to listen on")
    max_body_bytes: int = setting("max_body_bytes", DEFAULT_MAX_BODY_BYTES, at_least_one, "Larger requests get 413")


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
    lease_ttl: float = setting(
        "lease_ttl",
        DEFAULT_LEASE_TTL_S,
        positive,
        "With PostgreSQL, seconds an applier's lease lasts before another gateway takes over",
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


@dataclass(frozen=True)
class AlertSettings(_Checked):
    """Where alerts go, and how often: deduplicated and rate-limited."""

    slack_webhook: str = setting(
        "slack_webhook", "", webhook_url, "A Slack incoming webhook URL for alerts (a secret)", redact=hidden
    )
    webhook: str = setting(
        "alert_webhook", "", webhook_url, "A generic webhook URL that takes alerts as JSON (a secret)", redact=hidden
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
    store: str = setting(
        "store",
        DEFAULT_STORE,
        store_url,
        "sqlite:///relative.db, sqlite:////absolute.db or a postgresql:// DSN",
        redact=password_hidden,
    )
    request_timeout: float = setting(
        "request_timeout", DEFAULT_REQUEST_TIMEOUT_S, positive, "Seconds a request to an instance may take"
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
    alerts: AlertSettings = dataclasses.field(default_factory=AlertSettings)
    monitor: MonitorSettings = dataclasses.field(default_factory=MonitorSettings)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.instance_weights and len(self.instance_weights) != len(self.instances):
            raise SettingsError("instance_weights", "give one weight per instance")

    @property
    def is_postgres(self) -> bool:
        return self.store.startswith(("postgresql://", "postgres://"))

    @property
    def sqlite_path(self) -> str:
        """The file of a `sqlite:///relative.db` or `sqlite:////absolute.db` store, as SQLAlchemy reads them."""
        return self.store[len("sqlite:///") :]

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


# --- the definitions, walked from the fields --------------------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    """One setting: where it lives (`settings.<group>.<field>`, or `settings.<field>` when `group` is None), its flat
    public `name`, its type (`kind`, from the annotation), its rule, help, default as shown, and its flag."""

    name: str
    group: str | None
    field: str
    kind: Any
    read: Callable[[str], Any]
    rule: Rule | None
    help: str
    redact: Callable[[Any], Any] | None
    shown_default: str
    flag: str
    repeatable: bool

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def path(self) -> str:
        return self.field if self.group is None else f"{self.group}.{self.field}"

    def parse(self, text: str) -> Any:
        """The value of a variable (or a flag given as text), as the annotated type."""
        try:
            return self.read(text)
        except ValueError as exc:
            raise SettingsError(self.name, f"cannot read {text!r}: {exc}") from None

    def value_in(self, settings: Settings) -> Any:
        holder = settings if self.group is None else getattr(settings, self.group)
        return getattr(holder, self.field)


def _split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _read_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _reader(name: str, kind: Any) -> Callable[[str], Any]:
    """How text becomes a value of the annotated type: bool, int, float, str, or a tuple of str, int or float."""
    if kind is bool:
        return _read_bool
    if kind in (int, float, str):
        return cast(Callable[[str], Any], kind)
    args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in (str, int, float):
        item = args[0]
        return lambda text: tuple(item(part) for part in _split_list(text))
    raise TypeError(f"setting {name}: no way to read a {kind!r} from text")


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if value == "" or value == ():
        return "none"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _define(group: str | None, f: dataclasses.Field[Any], kind: Any) -> Definition:
    about = f.metadata.get(_ABOUT)
    if not isinstance(about, _About):
        raise TypeError(f"settings field {group}.{f.name} is not defined with setting()")
    shown = about.shown_default if about.shown_default is not None else _shown(f.default)
    return Definition(
        name=about.name,
        group=group,
        field=f.name,
        kind=kind,
        read=_reader(about.name, kind),
        rule=about.rule,
        help=about.help,
        redact=about.redact,
        shown_default=shown,
        flag=about.flag or "--" + about.name.replace("_", "-"),
        repeatable=about.repeatable,
    )


def _walk() -> tuple[tuple[Definition, ...], dict[str, type]]:
    definitions: list[Definition] = []
    groups: dict[str, type] = {}
    hints = typing.get_type_hints(Settings)
    for f in dataclasses.fields(Settings):
        if _ABOUT in f.metadata:
            definitions.append(_define(None, f, hints[f.name]))
            continue
        groups[f.name] = group = hints[f.name]
        group_hints = typing.get_type_hints(group)
        definitions.extend(_define(f.name, g, group_hints[g.name]) for g in dataclasses.fields(group))
    names = [d.name for d in definitions]
    if len(set(names)) != len(names):
        raise TypeError(f"two settings share a name: {sorted(n for n in names if names.count(n) > 1)}")
    return tuple(definitions), groups


DEFINITIONS, _GROUPS = _walk()
_BY_NAME = {d.name: d for d in DEFINITIONS}


def definition(name: str) -> Definition:
    """The setting of this flat name (`health_interval`)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise SettingsError(name, "no such setting") from None
