"""`chroma-ha check --url` as an operator runs it, against a real gateway process in front of real Chroma servers:
it passes on a healthy cluster, fails naming the instance that is stopped, and leaves no scratch collection behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx
import pytest

from chroma_ha.local_cluster import ChromaServer
from chroma_ha.ops.acceptance import SCRATCH_PREFIX
from tests.harness import GatewayProcess, wait_drained, wait_for

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"


def check(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_HA_")}
    return subprocess.run(
        [sys.executable, "-m", "chroma_ha", "check", "--url", url, *args],
        env={**clean, "COLUMNS": "200", **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )


def scratch_collections(url: str) -> list[str]:
    listed = httpx.get(f"{url}{COLLECTIONS}", params={"limit": 1000}, timeout=10).raise_for_status().json()
    return [c["name"] for c in listed if c["name"].startswith(SCRATCH_PREFIX)]


def results(completed: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    report = json.loads(completed.stdout)
    return {c["name"]: c for c in report["checks"]}


@pytest.fixture
def stopped() -> Iterator[Callable[[ChromaServer], None]]:
    """SIGSTOP a Chroma server for the rest of the test; it is continued at teardown, also when the test failed."""
    frozen: list[int] = []

    def stop(server: ChromaServer) -> None:
        assert server.process is not None
        os.killpg(server.process.pid, signal.SIGSTOP)
        frozen.append(server.process.pid)

    yield stop
    for pid in frozen:
        os.killpg(pid, signal.SIGCONT)


def test_check_passes_on_a_healthy_cluster_and_removes_its_collection(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    completed = check(gateway.url, "--json")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(completed.stdout)
    assert report["ok"] is True and report["instances_at_fault"] == []
    by_name = results(completed)
    assert {c["status"] for c in by_name.values()} <= {"pass", "skipped"}
    for name in (
        "health",
        "admin /status",
        "admin /wal/status",
        "admin /wal/divergences",
        "metrics",
        "write visible at once",
        "write applied on every instance",
        "admin /wal/entries",
        "query finds the nearest neighbour",
        "delete by id",
        "delete by where",
        "deletes applied on every instance",
        "scratch collection removed",
    ):
        assert by_name[name]["status"] == "pass", by_name[name]
    assert "applied on 2 instances within" in str(by_name["write applied on every instance"]["detail"])
    assert by_name["document-level delete"]["status"] == "skipped"  # not configured on this gateway
    assert "this run's add at seq" in str(by_name["admin /wal/entries"]["detail"])

    table = check(gateway.url)
    assert table.returncode == 0, table.stdout + table.stderr
    assert "write applied on every instance" in table.stdout and "OK: 21 checks, none failed" in table.stdout

    wait_drained(gateway.url)
    for url in [gateway.url, *(s.url for s in chroma_pair)]:
        assert scratch_collections(url) == [], url


def test_check_proves_auth_and_document_deletion_where_configured(
    gateway_with: Callable[..., GatewayProcess],
) -> None:
    gateway = gateway_with({"CHROMA_HA_ADMIN_TOKEN": "check-admin-secret", "CHROMA_HA_DELETE_EXPAND_KEY": "doc"})
    completed = check(gateway.url, "--json", "--admin-token", "check-admin-secret")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    by_name = results(completed)
    assert by_name["auth"]["status"] == "pass" and "401" in str(by_name["auth"]["detail"])
    assert by_name["document-level delete"]["status"] == "pass"
    assert "check-admin-secret" not in completed.stdout

    from_setting = check(gateway.url, "--json", env={"CHROMA_HA_ADMIN_TOKEN": "check-admin-secret"})
    assert from_setting.returncode == 0, from_setting.stdout  # the gateway's own variable, not typed where ps shows it

    refused = check(gateway.url, "--json")  # no admin token: the admin documents are refused
    assert refused.returncode == 1
    by_name = results(refused)
    assert by_name["admin /status"]["status"] == "fail" and "401" in str(by_name["admin /status"]["detail"])
    assert by_name["health"]["status"] == "pass" and by_name["scratch collection removed"]["status"] == "pass"
    assert scratch_collections(gateway.url) == []


def test_check_names_a_stopped_instance_and_fails(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer], stopped: Callable[[ChromaServer], None]
) -> None:
    frozen = chroma_pair[1]
    stopped(frozen)
    wait_for(
        "the gateway to see the stopped instance down",
        lambda: httpx.get(f"{gateway.url}/health", timeout=5).json()["instances"][frozen.url]["up"],
        until=lambda up: up is False,
    )
    completed = check(gateway.url, "--json", "--timeout", "10")
    assert completed.returncode == 1, completed.stdout + completed.stderr
    report = json.loads(completed.stdout)
    assert report["ok"] is False and report["instances_at_fault"] == [frozen.url]
    by_name = results(completed)
    failed = {name for name, c in by_name.items() if c["status"] == "fail"}
    assert {"health", "write applied on every instance"} <= failed, failed
    assert frozen.url in str(by_name["health"]["detail"])
    assert frozen.url in str(by_name["write applied on every instance"]["detail"])
    assert by_name["write visible at once"]["status"] == "pass"  # the other instance serves
    assert by_name["scratch collection removed"]["status"] == "pass"

    table = check(gateway.url, "--timeout", "5")
    assert table.returncode == 1 and f"instances at fault: {frozen.url}" in table.stdout

    assert frozen.process is not None
    os.killpg(frozen.process.pid, signal.SIGCONT)
    wait_drained(gateway.url)
    for url in [gateway.url, *(s.url for s in chroma_pair)]:
        assert scratch_collections(url) == [], url


def test_check_usage_errors_exit_2() -> None:
    assert check("ftp://somewhere").returncode == 2
    assert check("http://127.0.0.1:1", "--timeout", "0").returncode == 2
