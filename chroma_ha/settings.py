"""The one settings object, built once from flags, environment (`CHROMA_HA_*`) and defaults.

Nothing else in the package reads `os.environ`. Every value is validated at start, and a bad value raises
`SettingsError` naming the setting, so the gateway refuses to start rather than misbehave later.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import SettingsError

ENV_PREFIX = "CHROMA_HA_"

DEFAULT_STORE = "sqlite:///chroma_ha.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_ACK = "one"
ACK_POLICIES = ("one", "all", "log")
STALE_READ_POLICIES = ("serve", "refuse")
DEFAULT_WRITE_TIMEOUT_S = 10.0
DEFAULT_READ_WAIT_S = 1.0
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_POLL_INTERVAL_S = 0.2
DEFAULT_HEALTH_INTERVAL_S = 1.0
DEFAULT_HEALTH_TIMEOUT_S = 0.5
DEFAULT_HEALTH_RISE = 2
DEFAULT_HEALTH_FALL = 3
DEFAULT_REQUEST_TIMEOUT_S = 30.0
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


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(name, f"expected true or false, got {value!r}")


@dataclass(frozen=True)
class Settings:
    instances: tuple[str, ...] = ()
    store: str = DEFAULT_STORE
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    ack: str = DEFAULT_ACK
    write_timeout: float = DEFAULT_WRITE_TIMEOUT_S
    read_wait: float = DEFAULT_READ_WAIT_S
    stale_reads: str = "serve"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    allow_reset: bool = False
    poll_interval: float = DEFAULT_POLL_INTERVAL_S
    health_interval: float = DEFAULT_HEALTH_INTERVAL_S
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT_S
    health_rise: int = DEFAULT_HEALTH_RISE
    health_fall: int = DEFAULT_HEALTH_FALL
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S
    batch_max_records: int = DEFAULT_BATCH_MAX_RECORDS
    batch_max_bytes: int = DEFAULT_BATCH_MAX_BYTES
    backoff_base: float = DEFAULT_BACKOFF_BASE_S
    backoff_cap: float = DEFAULT_BACKOFF_CAP_S
    retention: float = DEFAULT_RETENTION_S
    lease_ttl: float = DEFAULT_LEASE_TTL_S
    gateway_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    instance_weights: tuple[float, ...] = ()
    delete_expand_key: str = ""
    delete_expand_collections: tuple[str, ...] = ()
    admin_token: str = ""
    slack_webhook: str = ""
    alert_webhook: str = ""
    monitor_interval: float = DEFAULT_MONITOR_INTERVAL_S
    pressure_window: float = DEFAULT_PRESSURE_WINDOW_S
    cpu_threshold: float = DEFAULT_CPU_THRESHOLD_PERCENT
    memory_threshold: float = DEFAULT_MEMORY_THRESHOLD_PERCENT
    lag_threshold: float = DEFAULT_LAG_THRESHOLD_S
    backlog_threshold: int = DEFAULT_BACKLOG_THRESHOLD
    down_ratio_threshold: float = DEFAULT_DOWN_RATIO_THRESHOLD
    alert_dedup_window: float = DEFAULT_ALERT_DEDUP_WINDOW_S
    alert_min_interval: float = DEFAULT_ALERT_MIN_INTERVAL_S
    alert_rate_per_minute: int = DEFAULT_ALERT_RATE_PER_MINUTE

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for url in self.instances:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise SettingsError("instances", f"not an http(s) URL: {url!r}")
        if len(set(self.instances)) != len(self.instances):
            raise SettingsError("instances", "the same instance is listed twice")
        if not (self.store.startswith("sqlite:///") or self.store.startswith(("postgresql://", "postgres://"))):
            raise SettingsError(
                "store", f"expected sqlite:///path.db or postgresql://..., got {self.store!r}"
            )
        if self.ack not in ACK_POLICIES:
            raise SettingsError("ack", f"expected one of {', '.join(ACK_POLICIES)}, got {self.ack!r}")
        if self.stale_reads not in STALE_READ_POLICIES:
            raise SettingsError("stale_reads", f"expected serve or refuse, got {self.stale_reads!r}")
        if not 0 < self.port < 65536:
            raise SettingsError("port", f"expected 1-65535, got {self.port}")
        for name in (
            "write_timeout", "poll_interval", "health_interval", "health_timeout", "request_timeout",
            "backoff_base", "backoff_cap", "retention", "lease_ttl",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(name, f"must be positive, got {getattr(self, name)}")
        if self.read_wait < 0:
            raise SettingsError("read_wait", "must not be negative")
        for name in ("max_body_bytes", "batch_max_records", "batch_max_bytes", "health_rise", "health_fall"):
            if getattr(self, name) < 1:
                raise SettingsError(name, f"must be at least 1, got {getattr(self, name)}")
        if self.instance_weights and len(self.instance_weights) != len(self.instances):
            raise SettingsError("instance_weights", "give one weight per instance")
        if any(w <= 0 for w in self.instance_weights):
            raise SettingsError("instance_weights", "weights must be positive")
        for name in ("slack_webhook", "alert_webhook"):
            url = getattr(self, name)
            if url and urlsplit(url).scheme not in ("http", "https"):
                raise SettingsError(name, "not an http(s) URL")
        self._validate_operations()

    def _validate_operations(self) -> None:
        for name in ("monitor_interval", "pressure_window", "lag_threshold", "alert_dedup_window"):
            if getattr(self, name) <= 0:
                raise SettingsError(name, f"must be positive, got {getattr(self, name)}")
        for name in ("cpu_threshold", "memory_threshold"):
            if not 0 < getattr(self, name) <= 100:
                raise SettingsError(name, f"expected a percentage in (0, 100], got {getattr(self, name)}")
        if not 0 < self.down_ratio_threshold <= 1:
            raise SettingsError(
                "down_ratio_threshold", f"expected a fraction in (0, 1], got {self.down_ratio_threshold}"
            )
        if self.alert_min_interval < 0:
            raise SettingsError("alert_min_interval", "must not be negative")
        for name in ("backlog_threshold", "alert_rate_per_minute"):
            if getattr(self, name) < 1:
                raise SettingsError(name, f"must be at least 1, got {getattr(self, name)}")

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
        """The settings in force, secrets hidden, for /status."""
        shown = dataclasses.asdict(self)
        for secret in ("admin_token", "slack_webhook", "alert_webhook"):
            if shown[secret]:
                shown[secret] = "***"
        parts = urlsplit(self.store)
        if parts.password:
            shown["store"] = self.store.replace(f":{parts.password}@", ":***@")
        return shown

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Defaults, then `CHROMA_HA_*` variables, then explicit overrides (command-line flags)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _coerce(f.name, f.type, raw)
        for name, value in (overrides or {}).items():
            if value is None or value == ():
                continue
            values[name] = value
        return cls(**values)


def _coerce(name: str, type_name: Any, raw: str) -> Any:
    type_text = str(type_name)
    try:
        if type_text == "bool":
            return _parse_bool(name, raw)
        if type_text == "int":
            return int(raw)
        if type_text == "float":
            return float(raw)
        if type_text == "tuple[float, ...]":
            return tuple(float(p) for p in _split_list(raw))
        if type_text.startswith("tuple"):
            return tuple(_split_list(raw))
    except ValueError as exc:
        raise SettingsError(name, f"cannot read {raw!r}: {exc}") from None
    return raw
