"""Exceptions raised by chroma-ha.

    ChromaHAError                 base of everything raised on purpose
    ├── SettingsError             a setting is missing or malformed (names the setting)
    ├── StoreError                the log store failed (retryable: the store may come back)
    ├── RequestRejected           the gateway answers a client request itself (status, message, when to retry)
    ├── BackupError               a backup that cannot be taken or used as it is (names the file or the reason)
    ├── MembershipRefused         a change of the instances that cannot be made (reason: invalid, duplicate, ...)
    └── InstanceError             one instance failed to answer (instance, retryable)
        ├── StaleConnection       a kept-alive connection the instance had closed (the instance may be fine)
        └── NoSource              no instance this gateway applies to is in step to copy the instance from

Errors carry structured fields so that callers decide on them without parsing messages.
"""

from __future__ import annotations


class ChromaHAError(Exception):
    retryable: bool = False


class SettingsError(ChromaHAError):
    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class StoreError(ChromaHAError):
    retryable = True


class RequestRejected(ChromaHAError):
    """A request the gateway answers itself with a Chroma-shaped error body. `retry_after`: seconds after which
    the same request may succeed (the refusal is temporary: the log or the instances are expected back)."""

    def __init__(
        self, status: int, message: str, error: str = "InvalidArgumentError", *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.retry_after = retry_after


class BackupError(ChromaHAError):
    pass


class MembershipRefused(ChromaHAError):
    """An instance cannot be added or removed; `reason` is one of `MembershipRefused.REASONS`."""

    REASONS = ("invalid", "unreachable", "duplicate", "unknown", "last_active", "changed")

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class InstanceError(ChromaHAError):
    def __init__(self, instance: str, message: str, retryable: bool = True) -> None:
        super().__init__(f"{instance}: {message}")
        self.instance = instance
        self.retryable = retryable


class StaleConnection(InstanceError):
    pass


class NoSource(InstanceError):
    """A bootstrap found no source here: another gateway on the store may hold one (its applier is paused)."""

    def __init__(self, instance: str) -> None:
        super().__init__(instance, "bootstrap: no up, in-sync instance to copy from yet", retryable=True)
