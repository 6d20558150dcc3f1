"""Alerts from a real gateway process to a local HTTP receiver standing in for Slack and a generic webhook."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import chromadb
import pytest

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, WebhookReceiver, wait_for, webhook_receiver

SECRET = "T0ALERTS/B0ALERTS/verysecretpart"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as r:
        yield r


def test_one_down_and_one_resolved_message_for_a_killed_and_restarted_instance(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer], receiver: WebhookReceiver
) -> None:
    slack_url = f"{receiver.url}/services/{SECRET}"
    gateway = gateway_with(
        {
            "CHROMA_HA_SLACK_WEBHOOK": slack_url,
            "CHROMA_HA_ALERT_WEBHOOK": f"{receiver.url}/generic",
            "CHROMA_HA_ALERT_MIN_INTERVAL": "0.5",
            "CHROMA_HA_MONITOR_INTERVAL": "0.25",
        }
    )
    b = chroma_pair[1]
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("alerts", embedding_function=None)
    b.kill()
    wait_for("the down message", lambda: receiver.bodies("/services/"))
    for n in range(20):  # repeated failures: the applier retries b, reads may try it, probes keep failing
        col.add(ids=[f"x{n}"], embeddings=[[float(n), 0.0]])
        col.get(ids=[f"x{n}"])
        time.sleep(0.1)
    time.sleep(1.0)
    assert len(receiver.bodies("/services/")) == 1
    b.start()
    wait_for("the resolved message", lambda: receiver.bodies("/services/"), until=lambda slack: len(slack) >= 2)
    time.sleep(1.5)  # anything else would arrive now
    slack = receiver.bodies("/services/")
    generic = receiver.bodies("/generic")
    gateway.stop()  # its log is complete, shutdown included
    assert len(slack) == 2, slack
    down, resolved = slack
    for message in slack:
        assert isinstance(message["text"], str) and b.url in message["text"]
        assert all(block["type"] in ("section", "context") for block in message["blocks"])
    assert "is down" in down["text"] and "Resolved" not in down["text"]
    assert "Resolved" in resolved["text"] and "up again" in resolved["text"]
    assert [(m["status"], m["key"]) for m in generic] == [
        ("firing", f"instance_down:{b.url}"),
        ("resolved", f"instance_down:{b.url}"),
    ]
    everything = json.dumps(slack + generic) + gateway.log_text()
    assert SECRET not in everything and slack_url not in everything
