"""The admin endpoints against real Chroma servers: what they say while an instance is killed, lags, and returns;
/metrics parsed with Prometheus' parser; the admin token; recommendations from real (lowered) thresholds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import chromadb
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import chroma_ha
from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, wait_for

FAST_MONITOR = {"CHROMA_HA_MONITOR_INTERVAL": "0.25"}


def get(gateway: GatewayProcess, path: str, **headers: str) -> dict[str, Any]:
    response = httpx.get(f"{gateway.url}{path}", headers=headers, timeout=10)
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def scrape(gateway: GatewayProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{gateway.url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def add(gateway: GatewayProcess, start: int, count: int) -> None:
    client = chromadb.HttpClient(host="127.0.0.1", port=gateway.port)
    col = client.get_or_create_collection("ops", embedding_function=None)
    col.add(
        ids=[f"r{n}" for n in range(start, start + count)],
        embeddings=[[float(n), 1.0, 0.5] for n in range(start, start + count)],
    )


@pytest.fixture
def monitored(gateway_with: Callable[..., GatewayProcess]) -> GatewayProcess:
    return gateway_with(FAST_MONITOR)


def test_endpoints_follow_an_instance_killed_lagging_and_back(
    monitored: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    gateway, (a, b) = monitored, chroma_pair
    add(gateway, 0, 50)
    gateway.wait_drained()
    health = get(gateway, "/health")
    assert health == {**health, "status": "healthy", "healthy_instances": "2/2", "reasons": []}
    status = get(gateway, "/status")
    assert status["version"] == chroma_ha.__version__
    assert status["settings"]["instances"] == [a.url, b.url]
    head = status["log"]["head"]
    for instance in (a.url, b.url):
        shown = status["instances"][instance]
        assert shown["up"] and shown["state"] == "idle" and shown["consecutive_failures"] == 0
        assert shown["requests"] > 0 and shown["cursor"] == head and shown["lag_seconds"] == 0
    wal = get(gateway, "/wal/status")
    assert (wal["pending"], wal["oldest_pending_age_seconds"], wal["state"]) == (0, 0.0, "idle")
    stats_before = get(gateway, "/wal/stats")

    b.kill()
    wait_for("b seen down", lambda: get(gateway, "/health"), until=lambda h: h["healthy_instances"] == "1/2")
    degraded = httpx.get(f"{gateway.url}/health", timeout=10)
    assert degraded.status_code == 200 and degraded.json()["status"] == "degraded"
    assert any(b.url in reason for reason in degraded.json()["reasons"])
    down = get(gateway, "/status")["instances"][b.url]
    assert not down["up"] and down["consecutive_failures"] >= 2 and down["last_error"]
    assert down["success_rate"] < 1
    later = wait_for(
        "another health check",
        lambda: get(gateway, "/status")["instances"][b.url],
        until=lambda shown: shown["last_check"] > down["last_check"],
    )
    assert later["consecutive_failures"] > down["consecutive_failures"]

    add(gateway, 50, 50)  # acknowledged by a; b lags behind the log
    lagging = wait_for(
        "b behind the log",
        lambda: get(gateway, "/wal/status"),
        until=lambda wal: wal["instances"][b.url]["pending"] > 0,
    )
    assert lagging["instances"][a.url]["pending"] == 0
    assert lagging["instances"][b.url]["state"] in ("down", "retrying")
    time.sleep(0.5)
    wal = get(gateway, "/wal/status")
    assert wal["pending"] == wal["head"] - wal["instances"][b.url]["cursor"] > 0
    assert wal["oldest_pending_age_seconds"] > lagging["oldest_pending_age_seconds"] > 0
    assert get(gateway, "/status")["instances"][b.url]["lag_seconds"] > 0
    stats = get(gateway, "/wal/stats")
    assert stats["appended"]["entries"] > stats_before["appended"]["entries"]
    assert stats["appended"]["bytes"] > stats_before["appended"]["bytes"]
    assert stats["appended"]["per_second"]["1m"] > 0
    assert stats["instances"][a.url]["applied_entries"] > stats["instances"][b.url]["applied_entries"]
    assert stats["instances"][b.url]["retries"] > 0
    assert stats["instances"][a.url]["lag_seconds"]["max"] >= stats["instances"][a.url]["lag_seconds"]["p50"]
    metrics = scrape(gateway)
    assert metrics[("chroma_ha_instance_up", (("instance", b.url),))] == 0
    assert metrics[("chroma_ha_instance_backlog_entries", (("instance", b.url),))] > 0
    assert metrics[("chroma_ha_instance_lag_seconds", (("instance", b.url),))] > 0

    b.start()
    gateway.wait_drained()
    wait_for("healthy again", lambda: get(gateway, "/health"), until=lambda h: h["status"] == "healthy")
    back = get(gateway, "/status")
    assert back["healthy_instances"] == "2/2" and back["reasons"] == []
    assert back["instances"][b.url]["up"] and back["instances"][b.url]["consecutive_failures"] == 0
    assert back["instances"][b.url]["cursor"] == back["log"]["head"]
    wal = get(gateway, "/wal/status")
    assert (wal["pending"], wal["oldest_pending_age_seconds"], wal["divergences"]) == (0, 0.0, [])
    stats = get(gateway, "/wal/stats")
    assert stats["instances"][b.url]["applied_entries"] == stats["instances"][a.url]["applied_entries"]
    metrics = scrape(gateway)
    assert metrics[("chroma_ha_instance_up", (("instance", b.url),))] == 1
    assert metrics[("chroma_ha_instance_backlog_entries", (("instance", b.url),))] == 0
    assert metrics[("chroma_ha_instance_cursor_seq", (("instance", b.url),))] == wal["head"]


def test_metrics_parse_and_counters_move_with_traffic(monitored: GatewayProcess) -> None:
    gateway = monitored
    add(gateway, 0, 10)
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).get_collection("ops", embedding_function=None)
    before = scrape(gateway)

    def reads(m: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
        return sum(
            v
            for (name, labels), v in m.items()
            if name == "chroma_ha_requests_total" and ("route_class", "read") in labels
        )

    def writes(m: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
        key = ("chroma_ha_request_duration_seconds_count", (("instance", "log"), ("route_class", "write")))
        return m.get(key, 0.0)

    def by_labels(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], **labels: str) -> float:
        return m.get(("chroma_ha_requests_total", tuple(sorted(labels.items()))), 0.0)

    for _ in range(5):
        col.get(ids=["r1"])
    col.add(ids=["x1"], embeddings=[[0.0, 0.0, 1.0]])
    httpx.get(f"{gateway.url}/api/v2/heartbeat")
    httpx.post(
        f"{gateway.url}/api/v2/tenants/default_tenant/databases/default_database/collections/{col.id}/add",
        content=b"{not json",
    )
    after = scrape(gateway)
    assert reads(after) >= reads(before) + 5
    answered = sum(by_labels(after, route_class="read", instance=i, status="200") for i in gateway.instances)
    assert answered == reads(after)  # every read was answered by an instance and labelled with it
    for labels in (
        {"route_class": "local", "instance": "gateway", "status": "200"},
        {"route_class": "write", "instance": "gateway", "status": "400"},
        {"route_class": "write", "instance": "log", "status": "201"},
    ):
        assert by_labels(after, **labels) == by_labels(before, **labels) + 1, labels
    assert writes(after) == writes(before) + 1
    assert after[("chroma_ha_log_head_seq", ())] == before[("chroma_ha_log_head_seq", ())] + 1
    appended = ("chroma_ha_log_appended_entries_total", ())
    assert after[appended] == before[appended] + 1
    assert after[("chroma_ha_log_appended_bytes_total", ())] > before[("chroma_ha_log_appended_bytes_total", ())]
    assert after[("chroma_ha_process_memory_bytes", ())] > 0 and after[("chroma_ha_host_memory_total_bytes", ())] > 0
    assert ("chroma_ha_applier_batch_entries_bucket", (("instance", gateway.instances[0]), ("le", "+Inf"))) in after
    figures = httpx.get(f"{gateway.url}/metrics", headers={"accept": "application/json"}, timeout=10).json()
    assert figures["process"]["memory_bytes"] > 0 and 0 < figures["host"]["memory_percent"] <= 100
    assert set(figures["instances"]) == set(gateway.instances)


def test_admin_routes_need_the_token_when_one_is_set(gateway_with: Callable[..., GatewayProcess]) -> None:
    token = "t0ken-for-tests"
    gateway = gateway_with({"CHROMA_HA_ADMIN_TOKEN": token})
    for path in ("/status", "/wal/status", "/wal/stats", "/recommendations", "/admin/openapi.json", "/dashboard/data"):
        refused = httpx.get(f"{gateway.url}{path}", headers={"authorization": "Bearer wrong"}, timeout=10)
        assert refused.status_code == 401, path
        assert refused.json()["error"] == "Unauthorized"
        assert httpx.get(f"{gateway.url}{path}", headers={"authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.get(f"{gateway.url}{path}", headers={"x-chroma-ha-token": token}).status_code == 200
    page = httpx.get(f"{gateway.url}/dashboard", timeout=10)
    assert page.status_code == 401 and page.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(f"{gateway.url}/dashboard", auth=("admin", token), timeout=10).status_code == 200
    assert httpx.get(f"{gateway.url}/health", timeout=10).status_code == 200
    assert httpx.get(f"{gateway.url}/metrics", timeout=10).status_code == 200
    status = get(gateway, "/status", authorization=f"Bearer {token}")
    assert status["settings"]["admin_token"] == "***" and token not in str(status)
    spec = get(gateway, "/admin/openapi.json", authorization=f"Bearer {token}")
    assert spec["openapi"].startswith("3.") and {
        "/health",
        "/status",
        "/wal/status",
        "/wal/stats",
        "/metrics",
        "/recommendations",
        "/dashboard",
    } <= set(spec["paths"])


def test_sustained_pressure_over_a_lowered_threshold_is_recommended(
    gateway_with: Callable[..., GatewayProcess],
) -> None:
    gateway = gateway_with({**FAST_MONITOR, "CHROMA_HA_MEMORY_THRESHOLD": "0.001", "CHROMA_HA_PRESSURE_WINDOW": "1"})

    # (a busy test machine may add a cpu recommendation of its own: look at the memory ones)
    def memory() -> list[dict[str, Any]]:
        return [r for r in get(gateway, "/recommendations")["recommendations"] if r["kind"] == "memory"]

    [found] = wait_for("a memory recommendation", memory)
    assert found["current"] and "memory" in found["reason"] and found["details"]["host_memory_percent"] > 0
    time.sleep(1.0)  # more samples, still over the threshold
    document = get(gateway, "/recommendations")
    assert "memory" in [c["kind"] for c in document["current"]]
    assert len(memory()) == 1  # one per episode, not one per sample
    board = get(gateway, "/dashboard/data")
    assert "memory" in [r["kind"] for r in board["recommendations"]]
    assert any(a["key"] == "recommendation:memory" for a in board["alerts"])
    limits = get(gateway, "/status")["batch_limits"]
    assert limits["max_records"] < get(gateway, "/status")["settings"]["batch_max_records"] // 2
