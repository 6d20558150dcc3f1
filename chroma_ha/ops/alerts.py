"""Alerts to a Slack incoming webhook and a generic JSON webhook.

`AlertBook` is the pure decision logic: per key, the condition as last reported and what the last message said.
A message goes out when they differ (firing, then resolved) or as a reminder once per dedup window; messages for
one key are at least `min_interval` apart (a flapping instance collapses into its current state), and a token
bucket caps the overall rate. A message held back is reconsidered on each `tick`, so only the state still in force
is sent. `Alerts` is the shell: callers only enqueue, and one background task posts, so a slow or failing webhook
never slows the request path. Webhook URLs are secrets: they are never logged or put in a message.

Several gateways, one voice: every gateway of a store decides on its own, then claims each message in the store
before sending it (`LogStore.claim_alert`), and only the first claim of a change succeeds; so an instance going
down is announced once, by whichever gateway saw it first, and its recovery once. A gateway keeps the alerts it
sees firing fresh in the store, so that when every gateway that saw one is gone, the next to see it firing says so.
A store that cannot answer the claim never silences an alert: the message is sent (a duplicate over silence).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from ..errors import StoreError
from ..store import Divergence

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0
SEND_ATTEMPTS = 2
TICK_S = 0.5
QUEUE_SIZE = 1000
TOUCH_S = 5.0  # how often a gateway tells the store which alerts it still sees firing
CLAIM_STALE_S = 30.0  # a firing claim nobody touched for this long no longer holds back a new message
RECENT_ALERTS = 100
_ICONS = {"critical": ":red_circle:", "warning": ":warning:", "info": ":information_source:"}


@dataclass(frozen=True)
class Alert:
    key: str
    title: str
    text: str = ""
    severity: str = "warning"
    resolved_title: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    alert: Alert
    status: str  # firing | resolved | event
    at: float
    reminder: bool = False

    @property
    def headline(self) -> str:
        if self.status == "resolved":
            return f"Resolved: {self.alert.resolved_title or self.alert.title}"
        return f"Still: {self.alert.title}" if self.reminder else self.alert.title


@dataclass
class TokenBucket:
    capacity: float
    per_second: float
    tokens: float = -1.0
    updated: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.updated = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class _KeyState:
    alert: Alert
    firing: bool = False
    notified: bool = False
    last_sent: float = float("-inf")


class AlertBook:
    def __init__(self, *, dedup_window: float, min_interval: float, rate_per_minute: int) -> None:
        self.dedup_window = dedup_window
        self.min_interval = min_interval
        self._bucket = TokenBucket(float(rate_per_minute), rate_per_minute / 60)
        self._keys: dict[str, _KeyState] = {}
        self._events: dict[str, float] = {}

    def report(self, alert: Alert, firing: bool, now: float) -> list[Message]:
        """The condition behind `alert.key` is (still) firing, or has cleared."""
        state = self._keys.get(alert.key)
        if state is None:
            if not firing:
                return []
            state = self._keys[alert.key] = _KeyState(alert)
        state.firing = firing
        if firing:
            state.alert = alert
        return self._due(state, now)

    def event(self, alert: Alert, now: float) -> list[Message]:
        """A one-off event (a new recommendation): sent once per dedup window for its key."""
        if now - self._events.get(alert.key, float("-inf")) < self.dedup_window or not self._bucket.take(now):
            return []
        self._events[alert.key] = now
        return [Message(alert, "event", now)]

    def tick(self, now: float) -> list[Message]:
        """Messages held back earlier that are due now."""
        return [m for state in list(self._keys.values()) for m in self._due(state, now)]

    def firing(self) -> list[Alert]:
        return [s.alert for s in self._keys.values() if s.firing]

    def forget_instance(self, instance: str) -> None:
        """The instance is no longer one: its alerts (down, lag, backlog, divergence) end without a message, as
        their conditions can no longer clear."""
        self._keys = {k: v for k, v in self._keys.items() if k.partition(":")[2] != instance}

    def _due(self, state: _KeyState, now: float) -> list[Message]:
        changed = state.firing != state.notified
        reminder = not changed and state.firing and now - state.last_sent >= self.dedup_window
        if not (changed or reminder) or now - state.last_sent < self.min_interval or not self._bucket.take(now):
            return []
        state.notified, state.last_sent = state.firing, now
        return [Message(state.alert, "firing" if state.firing else "resolved", now, reminder)]


def instance_down_alert(instance: str) -> Alert:
    return Alert(
        f"instance_down:{instance}",
        f"Instance {instance} is down",
        "Reads go to the other instances; its writes wait in the log and are applied when it returns.",
        "critical",
        f"Instance {instance} is up again",
        {"instance": instance},
    )


def divergence_alert(instance: str, detail: str = "") -> Alert:
    return Alert(
        f"divergence:{instance}",
        f"Divergence on {instance}",
        f"{detail} Repair the instance (`chroma-ha repair`).".strip(),
        "critical",
        f"No divergence left on {instance}",
        {"instance": instance},
    )


def lag_alert(instance: str, lag: float, threshold: float) -> Alert:
    return Alert(
        f"lag:{instance}",
        f"Instance {instance} lags {lag:.0f}s behind the log (threshold {threshold:g}s)",
        "Reads that need recent writes avoid it until it catches up.",
        "warning",
        f"Instance {instance} caught up (lag under {threshold:g}s)",
        {"instance": instance, "lag_seconds": lag},
    )


def backlog_alert(instance: str, pending: int, threshold: int) -> Alert:
    return Alert(
        f"backlog:{instance}",
        f"{pending} log entries wait for {instance} (threshold {threshold})",
        "The instance is down or slower than the write rate.",
        "warning",
        f"The backlog of {instance} is under {threshold} entries again",
        {"instance": instance, "pending": pending},
    )


def store_alert(error: str) -> Alert:
    return Alert(
        "store",
        "The log store is failing",
        f"Writes cannot be logged: {error}",
        "critical",
        "The log store answers again",
    )


def recommendation_alert(kind: str, reason: str, details: dict[str, Any]) -> Alert:
    return Alert(f"recommendation:{kind}", f"Upgrade recommended ({kind})", reason, "info", details=details)


def slack_payload(message: Message, gateway: str) -> dict[str, Any]:
    """Slack's incoming-webhook format: `text` (the notification) and blocks (the rendered message)."""
    icon = ":white_check_mark:" if message.status == "resolved" else _ICONS.get(message.alert.severity, "")
    text = f"{icon} [chroma-ha] {message.headline}".strip()
    body = message.alert.text if message.status != "resolved" else ""
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}}]
    if body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"gateway {gateway}"}]})
    return {"text": f"{text}\n{body}" if body else text, "blocks": blocks}


def webhook_payload(message: Message, gateway: str) -> dict[str, Any]:
    a = message.alert
    return {
        "source": "chroma-ha",
        "gateway": gateway,
        "key": a.key,
        "status": message.status,
        "reminder": message.reminder,
        "severity": a.severity,
        "title": message.headline,
        "text": a.text,
        "details": a.details,
        "at": message.at,
    }


class AlertClaims(Protocol):
    """The store's side of one voice across gateways (`LogStore` provides it)."""

    async def claim_alert(self, key: str, status: str, owner: str, *, window: float, stale: float) -> bool: ...
    async def touch_alerts(self, keys: Sequence[str]) -> None: ...


def claim_of(message: Message) -> str:
    """What a message claims in the store: firing, reminder, resolved or event."""
    return "reminder" if message.reminder else message.status


class Alerts:
    def __init__(
        self,
        *,
        slack_webhook: str,
        alert_webhook: str,
        gateway_id: str,
        dedup_window: float,
        min_interval: float,
        rate_per_minute: int,
        claims: AlertClaims | None = None,
    ) -> None:
        self._claims = claims
        self.book = AlertBook(dedup_window=dedup_window, min_interval=min_interval, rate_per_minute=rate_per_minute)
        self._targets = [(n, u) for n, u in (("slack", slack_webhook), ("webhook", alert_webhook)) if u]
        self._gateway = gateway_id
        self._queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_SIZE)
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_ALERTS)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.suppressed = 0  # messages another gateway of the store claimed first

    # --- what the gateway reports: cheap and synchronous, safe on the request path -------------------------

    def report(self, alert: Alert, firing: bool) -> None:
        self._enqueue(self.book.report(alert, firing, time.time()))

    def event(self, alert: Alert) -> None:
        self._enqueue(self.book.event(alert, time.time()))

    def firing_titles(self) -> list[str]:
        return [a.title for a in self.book.firing()]

    def instance_removed(self, instance: str) -> None:
        """MemberSync listener: a removed instance's alerts end here."""
        self.book.forget_instance(instance)

    def instance_changed(self, instance: str, up: bool) -> None:
        """HealthMonitor.on_change listener."""
        self.report(instance_down_alert(instance), not up)

    def divergence(self, divergence: Divergence) -> None:
        """Applier on_divergence callback."""
        self.report(
            divergence_alert(
                divergence.instance,
                f"Entry {divergence.seq} answered {divergence.status} there but "
                f"{divergence.expected_status} on the first instance that applied it.",
            ),
            True,
        )

    def _enqueue(self, messages: list[Message]) -> None:
        for message in messages:
            log.warning("alert %s: %s", message.status, message.headline)
            self.recent.appendleft(
                {
                    "at": message.at,
                    "key": message.alert.key,
                    "status": message.status,
                    "severity": message.alert.severity,
                    "title": message.headline,
                    "text": message.alert.text,
                }
            )
            if not self._targets:
                continue
            try:
                self._queue.put_nowait(message)
            except asyncio.QueueFull:
                self.dropped += 1

    # --- the background task ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        touched = float("-inf")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT_S)) as session:
            while not stop.is_set():
                self._enqueue(self.book.tick(time.time()))
                if self._claims is not None and self._targets and time.monotonic() - touched >= TOUCH_S:
                    touched = time.monotonic()
                    await self._touch(self._claims)
                try:
                    message = await asyncio.wait_for(self._queue.get(), TICK_S)
                except TimeoutError:
                    continue
                if not await self._claimed(message):
                    self.suppressed += 1
                    log.info("alert %s: %s sent by another gateway", message.status, message.headline)
                    continue
                for name, url in self._targets:
                    payload = slack_payload if name == "slack" else webhook_payload
                    await self._post(session, name, url, payload(message, self._gateway), stop)

    async def _claimed(self, message: Message) -> bool:
        if self._claims is None:
            return True
        try:
            return await self._claims.claim_alert(
                message.alert.key,
                claim_of(message),
                self._gateway,
                window=self.book.dedup_window,
                stale=CLAIM_STALE_S,
            )
        except StoreError as exc:
            log.warning("could not claim an alert in the store (%s): sending it anyway", exc)
            return True

    async def _touch(self, claims: AlertClaims) -> None:
        try:
            await claims.touch_alerts([a.key for a in self.book.firing()])
        except StoreError as exc:
            log.warning("could not refresh the firing alerts in the store: %s", exc)

    async def _post(
        self, session: aiohttp.ClientSession, name: str, url: str, payload: dict[str, Any], stop: asyncio.Event
    ) -> None:
        for attempt in range(1, SEND_ATTEMPTS + 1):
            problem = ""
            try:
                async with session.post(url, json=payload) as response:
                    await response.read()
                    if response.status < 300:
                        self.sent += 1
                        return
                    problem = f"answered {response.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = type(exc).__name__  # never the message: it can hold the URL
            log.warning("the %s alert webhook failed (attempt %d): %s", name, attempt, problem)
            if attempt < SEND_ATTEMPTS:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
        self.failed += 1
