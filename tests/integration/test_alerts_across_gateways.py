"""Several gateways, one voice: two gateway processes on one real PostgreSQL, in front of real Chroma servers, send
one message per event to a local webhook receiver, not one per gateway; and either gateway's `/wal/stats` shows the
whole cluster with each gateway's share."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import chromadb
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, WebhookReceiver, on_postgres, wait_for, webhook_receiver

QUIET_S = 2.0  # a duplicate from the other gateway would arrive well within this


def about(receiver: WebhookReceiver, key: str) -> list[tuple[str, str]]:
    return [(p["status"], p["gateway"]) for p in receiver.bodies("/hook") if p["key"] == key]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as r:
        yield r


def two_gateways(gateway_with: Callable[..., GatewayProcess], receiver: WebhookReceiver) -> list[GatewayProcess]:
    common = {
        "CHROMA_HA_ALERT_WEBHOOK": f"{receiver.url}/hook",
        "CHROMA_HA_ALERT_MIN_INTERVAL": "0.5",
        "CHROMA_HA_MONITOR_INTERVAL": "0.25",
    }
    return [gateway_with({**common, "CHROMA_HA_GATEWAY_ID": name}) for name in ("gw-a", "gw-b")]


def suppressed(gateway: GatewayProcess) -> float:
    families = text_string_to_metric_families(httpx.get(f"{gateway.url}/metrics", timeout=5).text)
    (family,) = [f for f in families if f.name == "chroma_ha_alerts_suppressed"]
    return float(family.samples[0].value)


def sees(gateway: GatewayProcess, instance: str, up: bool) -> bool:
    return bool(httpx.get(f"{gateway.url}/health", timeout=5).json()["instances"][instance]["up"] is up)


@on_postgres
def test_an_instance_down_and_up_again_is_announced_once_across_two_gateways(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer], receiver: WebhookReceiver
) -> None:
    gateways = two_gateways(gateway_with, receiver)
    b = chroma_pair[1]
    key = f"instance_down:{b.url}"
    b.kill()
    wait_for("both gateways to see b down", lambda: all(sees(g, b.url, False) for g in gateways))
    wait_for("the down message", lambda: about(receiver, key))
    time.sleep(QUIET_S)
    assert [status for status, _ in about(receiver, key)] == ["firing"], about(receiver, key)

    b.start()
    wait_for("both gateways to see b up", lambda: all(sees(g, b.url, True) for g in gateways))
    wait_for("the resolved message", lambda: len(about(receiver, key)) >= 2)
    time.sleep(QUIET_S)
    assert [status for status, _ in about(receiver, key)] == ["firing", "resolved"], about(receiver, key)
    # the other gateway decided to send both too, and found them claimed
    assert sum(suppressed(g) for g in gateways) >= 2

    b.kill()  # a second outage is a new event: announced again, once
    wait_for("the second down message", lambda: len(about(receiver, key)) >= 3)
    time.sleep(QUIET_S)
    assert [status for status, _ in about(receiver, key)] == ["firing", "resolved", "firing"]


@on_postgres
def test_wal_stats_on_either_gateway_shows_both_gateways_shares(
    gateway_with: Callable[..., GatewayProcess], receiver: WebhookReceiver
) -> None:
    gw_a, gw_b = two_gateways(gateway_with, receiver)
    col_a = chromadb.HttpClient(host="127.0.0.1", port=gw_a.port).create_collection("shares", embedding_function=None)
    col_b = chromadb.HttpClient(host="127.0.0.1", port=gw_b.port).get_collection("shares", embedding_function=None)
    for n in range(3):
        col_a.add(ids=[f"a{n}"], embeddings=[[float(n), 0.0]])
    col_b.add(ids=["b0"], embeddings=[[0.0, 1.0]])
    # gw-a appended the create and three adds, gw-b one add
    expected = {"gw-a": 4, "gw-b": 1}

    def cluster(gateway: GatewayProcess) -> dict[str, Any]:
        document: dict[str, Any] = httpx.get(f"{gateway.url}/wal/stats", timeout=5).json()["cluster"]
        return document

    for gateway in (gw_a, gw_b):
        shown = wait_for(
            f"{gateway.url} to show both gateways' appends",
            lambda gateway=gateway: cluster(gateway),  # type: ignore[misc]
            until=lambda c: {n: g["appended_entries"] for n, g in c["gateways"].items()} == expected,
        )
        assert shown["scope"] == "every gateway of the store" and shown["gateway_count"] == 2
        assert shown["totals"]["appended_entries"] == 5
        assert shown["gateways"]["gw-a"]["share"]["appended"] == 0.8
        assert shown["gateways"]["gw-b"]["share"]["appended"] == 0.2
        assert [n for n, g in shown["gateways"].items() if g["this_gateway"]] == ["gw-a" if gateway is gw_a else "gw-b"]
    # every entry is applied to each of the two instances, by whichever gateway holds its lease
    wait_for(
        "the applies of both gateways to add up",
        lambda: cluster(gw_b)["totals"]["applied_entries"],
        until=lambda applied: applied == 10,
    )
    data = httpx.get(f"{gw_a.url}/dashboard/data", timeout=5).json()
    assert set(data["cluster"]["gateways"]) == {"gw-a", "gw-b"}
