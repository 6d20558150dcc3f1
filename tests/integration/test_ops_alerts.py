"""Alerts from a real gateway process to a local HTTP receiver standing in for Slack and a generic webhook."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import chromadb
import pytest

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess
from tests.integration.test_ops_endpoints import wait_until

SECRET = "T0ALERTS/B0ALERTS/verysecretpart"


class Receiver:
    """Records every POST: (path, raw body)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, bytes]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                received.append((self.path, self.rfile.read(length)))
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def bodies(self, prefix: str) -> list[dict[str, Any]]:
        return [json.loads(body) for path, body in list(self.posts) if path.startswith(prefix)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_one_down_and_one_resolved_message_for_a_killed_and_restarted_instance(
    tmp_path: Path, chroma_pair: list[ChromaServer], receiver: Receiver
) -> None:
    slack_url = f"{receiver.url}/services/{SECRET}"
    gateway = GatewayProcess(
        [s.url for s in chroma_pair], f"sqlite:///{tmp_path / 'wal.db'}", tmp_path / "gateway", env={
            "CHROMA_HA_SLACK_WEBHOOK": slack_url, "CHROMA_HA_ALERT_WEBHOOK": f"{receiver.url}/generic",
            "CHROMA_HA_ALERT_MIN_INTERVAL": "0.5", "CHROMA_HA_MONITOR_INTERVAL": "0.25",
        },
    ).start()
    b = chroma_pair[1]
    try:
        col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection(
            "alerts", embedding_function=None
        )
        b.kill()
        wait_until(lambda: receiver.bodies("/services/"), what="the down message")
        for n in range(20):  # repeated failures: the applier retries b, reads may try it, probes keep failing
            col.add(ids=[f"x{n}"], embeddings=[[float(n), 0.0]])
            col.get(ids=[f"x{n}"])
            time.sleep(0.1)
        time.sleep(1.0)
        assert len(receiver.bodies("/services/")) == 1
        b.start()
        wait_until(lambda: len(receiver.bodies("/services/")) >= 2, what="the resolved message")
        time.sleep(1.5)  # anything else would arrive now
        slack = receiver.bodies("/services/")
        generic = receiver.bodies("/generic")
    finally:
        gateway.stop()
    assert len(slack) == 2, slack
    down, resolved = slack
    for message in slack:
        assert isinstance(message["text"], str) and b.url in message["text"]
        assert all(block["type"] in ("section", "context") for block in message["blocks"])
    assert "is down" in down["text"] and "Resolved" not in down["text"]
    assert "Resolved" in resolved["text"] and "up again" in resolved["text"]
    assert [(m["status"], m["key"]) for m in generic] == [
        ("firing", f"instance_down:{b.url}"), ("resolved", f"instance_down:{b.url}")
    ]
    everything = json.dumps(slack + generic) + gateway.log_text()
    assert SECRET not in everything and slack_url not in everything
