"""The alert decisions (dedup, flap damping, reminders, rate limit) and payloads, without network; then the shell
against a local receiver."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

import pytest
from aiohttp import web

from chroma_ha.errors import StoreError
from chroma_ha.ops.alerts import (
    AlertBook,
    Alerts,
    TokenBucket,
    instance_down_alert,
    recommendation_alert,
    slack_payload,
    webhook_payload,
)
from chroma_ha.store import MemoryDatabase, MemoryStore
from tests.harness import serving

DOWN = instance_down_alert("http://a:1")


def book(dedup: float = 3600.0, min_interval: float = 10.0, rate: int = 100) -> AlertBook:
    return AlertBook(dedup_window=dedup, min_interval=min_interval, rate_per_minute=rate)


def test_one_message_when_a_condition_starts_and_one_when_it_clears() -> None:
    b = book()
    [fired] = b.report(DOWN, True, 100.0)
    assert fired.status == "firing" and "down" in fired.headline
    assert [b.report(DOWN, True, t) for t in (101.0, 150.0, 900.0)] == [[], [], []]
    [resolved] = b.report(DOWN, False, 1000.0)
    assert resolved.status == "resolved" and resolved.headline.startswith("Resolved:")
    assert b.report(DOWN, False, 1001.0) == []
    assert b.tick(5000.0) == []


def test_a_condition_that_never_fired_sends_nothing_when_clear() -> None:
    b = book()
    assert b.report(DOWN, False, 1.0) == []
    assert b.tick(100.0) == []
    assert b.firing() == []


def test_a_resolution_inside_the_min_interval_waits_for_the_tick() -> None:
    b = book(min_interval=10.0)
    assert len(b.report(DOWN, True, 100.0)) == 1
    assert b.report(DOWN, False, 103.0) == []  # held back: too soon after the last message for this key
    assert b.tick(105.0) == []
    [resolved] = b.tick(110.0)
    assert resolved.status == "resolved"


def test_a_flap_inside_the_min_interval_collapses_into_the_state_in_force() -> None:
    b = book(min_interval=10.0)
    assert len(b.report(DOWN, True, 100.0)) == 1
    assert b.report(DOWN, False, 102.0) == []
    assert b.report(DOWN, True, 104.0) == []
    assert b.tick(120.0) == []  # still down, as the last message said: nothing to add
    assert [a.key for a in b.firing()] == [DOWN.key]


def test_a_firing_condition_is_repeated_once_per_dedup_window() -> None:
    b = book(dedup=600.0)
    assert len(b.report(DOWN, True, 0.0)) == 1
    assert b.tick(599.0) == []
    [reminder] = b.tick(600.0)
    assert reminder.reminder and reminder.headline.startswith("Still:")
    assert b.tick(601.0) == []


def test_the_rate_limit_holds_messages_back_until_tokens_return() -> None:
    b = book(rate=2, min_interval=0.0)
    alerts = [instance_down_alert(f"http://i{n}:1") for n in range(4)]
    sent = [m for a in alerts for m in b.report(a, True, 0.0)]
    assert len(sent) == 2
    later = b.tick(30.0)  # 2 per minute: one token back after 30 s
    assert len(later) == 1
    assert len(b.tick(60.0)) == 1
    assert b.tick(61.0) == []


def test_token_bucket_refills_up_to_its_capacity() -> None:
    bucket = TokenBucket(capacity=2, per_second=1.0)
    assert bucket.take(0.0) and bucket.take(0.0) and not bucket.take(0.0)
    assert bucket.take(1.0)
    assert bucket.take(100.0) and bucket.take(100.0) and not bucket.take(100.0)


def test_events_are_sent_once_per_dedup_window() -> None:
    b = book(dedup=100.0)
    event = recommendation_alert("memory", "Host memory stayed high", {})
    assert [m.status for m in b.event(event, 0.0)] == ["event"]
    assert b.event(event, 50.0) == []
    assert len(b.event(event, 100.0)) == 1


def test_slack_payload_has_text_and_blocks() -> None:
    [message] = book().report(DOWN, True, 1.0)
    payload = slack_payload(message, "gw-1")
    assert isinstance(payload["text"], str) and "http://a:1 is down" in payload["text"]
    assert payload["blocks"][0]["type"] == "section"
    assert payload["blocks"][0]["text"]["type"] == "mrkdwn"
    generic = webhook_payload(message, "gw-1")
    assert generic["status"] == "firing" and generic["key"] == DOWN.key and generic["gateway"] == "gw-1"


async def test_the_shell_posts_in_the_background_and_never_shows_the_url(caplog: pytest.LogCaptureFixture) -> None:
    received: list[tuple[str, dict[str, object]]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((request.path, await request.json()))
        return web.Response(status=500 if request.path.endswith("broken") else 200)

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    secret = "T0SECRET/B0SECRET/xoxsecret"
    async with serving(app) as url:
        alerts = Alerts(
            slack_webhook=f"{url}/services/{secret}",
            alert_webhook=f"{url}/broken",
            gateway_id="gw",
            dedup_window=3600,
            min_interval=0,
            rate_per_minute=60,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(alerts.run(stop))
        try:
            with caplog.at_level(logging.DEBUG):
                alerts.instance_changed("http://a:1", False)  # synchronous: only enqueues
                alerts.instance_changed("http://a:1", False)
                alerts.instance_changed("http://a:1", True)
                for _ in range(100):
                    if alerts.sent >= 2 and alerts.failed >= 2:
                        break
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await task
    slack = [body for path, body in received if path.startswith("/services/")]
    assert [("down" in str(b["text"]), "Resolved" in str(b["text"])) for b in slack] == [(True, False), (False, True)]
    assert alerts.failed == 2  # the generic webhook answered 500 twice per message, and was given up on
    assert [a["status"] for a in alerts.recent] == ["resolved", "firing"]
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("chroma_ha")]
    assert ours and not any("SECRET" in m or "/services/" in m for m in ours)
    assert "SECRET" not in json.dumps([body for _, body in received])


class FailingClaims:
    async def claim_alert(self, key: str, status: str, owner: str, *, window: float, stale: float) -> bool:
        raise StoreError("the store is down")

    async def touch_alerts(self, keys: Sequence[str]) -> None:
        raise StoreError("the store is down")


async def test_gateways_of_one_store_send_each_message_once_and_a_failing_store_silences_nothing() -> None:
    received: list[dict[str, object]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    database = MemoryDatabase()
    async with serving(app) as url:

        def shell(name: str, claims: object) -> Alerts:
            return Alerts(
                slack_webhook="",
                alert_webhook=f"{url}/hook",
                gateway_id=name,
                dedup_window=3600,
                min_interval=0,
                rate_per_minute=60,
                claims=claims,  # type: ignore[arg-type]
            )

        gateways = [shell(f"gw-{n}", MemoryStore(database)) for n in range(3)]
        cut_off = shell("gw-cut-off", FailingClaims())
        stop = asyncio.Event()
        tasks = [asyncio.create_task(a.run(stop)) for a in [*gateways, cut_off]]
        try:
            for alerts in gateways:
                alerts.instance_changed("http://b:1", False)
            for _ in range(100):
                if sum(a.sent + a.suppressed for a in gateways) >= 3:
                    break
                await asyncio.sleep(0.05)
            for alerts in gateways:
                alerts.instance_changed("http://b:1", True)
            cut_off.instance_changed("http://b:1", False)
            for _ in range(100):
                if sum(a.sent + a.suppressed for a in gateways) >= 6 and cut_off.sent:
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    ours = sorted((m["status"], m["gateway"] == "gw-cut-off") for m in received)
    assert ours == [("firing", False), ("firing", True), ("resolved", False)], received
    assert sum(a.suppressed for a in gateways) == 4 and cut_off.suppressed == 0
