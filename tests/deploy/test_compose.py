"""deploy/compose.yaml comes up as written (images substituted by locally built stand-ins, tests/deploy/images.py)
and keeps its promise through faults: the official client writes through the load balancer while a Chroma container
is SIGKILLed and started again and a gateway container is SIGKILLed; no acknowledged write is lost, both instances end
identical (read with `get` on each through its own published port), and `chroma-ha check --url` passes before and
after and names the killed instance while it is down."""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chromadb
import httpx
import orjson
import pytest
import yaml

from chroma_ha.local_cluster import free_port
from tests.deploy.conftest import Images
from tests.deploy.docker import DOCKER_ENV, compose_command
from tests.harness import snapshot, wait_for, wait_until_identical

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
CHROMAS = ("chroma-0", "chroma-1")
COLLECTION = "compose-acceptance"
DIM = 4
_PYTHON_GET = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)"


def override(images: Images) -> dict[str, Any]:
    """The test's substitutions, nothing else: local images, each Chroma published on a loopback port of its own
    (to compare the instances directly), and no automatic restart (the test kills and restarts containers itself)."""
    chroma = {
        "image": images.chroma,
        "restart": "no",
        "ports": ["127.0.0.1::8000"],
        # Chroma's own image has curl; the stand-in has python
        "healthcheck": {"test": ["CMD", "python3", "-c", _PYTHON_GET, "http://127.0.0.1:8000/api/v2/heartbeat"]},
    }
    gateway = {"image": images.gateway, "restart": "no"}
    return {
        "services": {
            "chroma-0": chroma,
            "chroma-1": chroma,
            "postgres": {"image": images.postgres, "restart": "no"},
            "gateway-1": gateway,
            "gateway-2": gateway,
            "lb": {"image": images.haproxy, "restart": "no"},
        }
    }


@dataclass
class Stack:
    command: list[str]
    env: dict[str, str]
    admin_token: str
    lb_port: int

    def compose(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.command, *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=COMPOSE_FILE.parent,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    def instance_url(self, service: str) -> str:
        published = self.compose("port", service, "8000").stdout.strip()
        return f"http://{published}"

    def check(self, timeout: float = 30) -> tuple[int, dict[str, Any]]:
        """`chroma-ha check --url` against the load balancer: its exit code and its JSON report."""
        args = ["check", "--url", self.url, "--admin-token", self.admin_token, "--timeout", str(timeout), "--json"]
        result = subprocess.run(
            [sys.executable, "-m", "chroma_ha", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=timeout * 10,
        )
        try:
            report = orjson.loads(result.stdout)
        except orjson.JSONDecodeError:
            pytest.fail(f"check printed no JSON (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result.returncode, report


def failing(report: dict[str, Any]) -> list[str]:
    """The report's failed checks, as lines: what an assertion shows."""
    return [f"{c['name']}: {c['detail']} {c['instances']}" for c in report["checks"] if c["status"] == "fail"]


@pytest.fixture
def stack(stack_images: Images, tmp_path: Path) -> Iterator[Stack]:
    override_file = tmp_path / "compose.override.yaml"
    override_file.write_text(yaml.safe_dump(override(stack_images)))
    project = f"chtest{uuid.uuid4().hex[:8]}"
    lb_port = free_port()
    admin_token = secrets.token_hex(16)
    env = {
        **DOCKER_ENV,
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "CHROMA_HA_ADMIN_TOKEN": admin_token,
        "CHROMA_HA_PUBLISH": f"127.0.0.1:{lb_port}",
    }
    command = [*compose_command(), "-p", project, "-f", str(COMPOSE_FILE), "-f", str(override_file)]
    stack = Stack(command, env, admin_token, lb_port)
    try:
        stack.compose("up", "-d", "--no-build", timeout=600)
        wait_for(
            "the load balancer to answer /health from a gateway",
            lambda: httpx.get(f"{stack.url}/health", timeout=2).status_code == 200,
            120,
            ignoring=(httpx.HTTPError,),
        )
        yield stack
    finally:
        logs = stack.compose("logs", "--no-color", "--tail", "80", check=False).stdout
        (tmp_path / "compose.log").write_text(logs)
        stack.compose("down", "-v", "--remove-orphans", "-t", "5", check=False)
        print(f"compose logs (last lines of each service): {tmp_path / 'compose.log'}\n{logs[-6000:]}")


@dataclass
class Writer:
    """Adds batches through the load balancer with the official client until stopped; keeps the ids acknowledged."""

    url_port: int
    acked: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    batches: int = 0

    def run(self) -> None:
        client = chromadb.HttpClient(host="127.0.0.1", port=self.url_port)
        collection = client.get_or_create_collection(COLLECTION, embedding_function=None)
        while not self.stop.is_set():
            n = self.batches
            ids = [f"b{n}-{k}" for k in range(5)]
            try:
                collection.add(
                    ids=ids,
                    embeddings=[[float(n), float(k), 1.0, 0.5] for k in range(5)],
                    metadatas=[{"batch": n, "k": k} for k in range(5)],
                    documents=[f"batch {n} record {k}" for k in range(5)],
                )
            except Exception as exc:  # a write in flight when its gateway died: not acknowledged
                self.failures.append(f"batch {n}: {type(exc).__name__}: {exc}")
                time.sleep(0.2)
            else:
                self.acked += ids
            self.batches += 1
            time.sleep(0.05)

    def wait_for_more(self, count: int, timeout: float = 60) -> None:
        target = len(self.acked) + count
        wait_for(f"{count} more acknowledged writes", lambda: len(self.acked) >= target, timeout)


def test_compose_stack_survives_a_chroma_and_a_gateway_killed(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = stack.check()
    assert code == 0 and report["ok"], failing(report)

    writer = Writer(stack.lb_port)
    thread = threading.Thread(target=writer.run, name="compose-writer", daemon=True)
    thread.start()
    try:
        writer.wait_for_more(50)

        stack.compose("kill", "-s", "SIGKILL", "chroma-0")
        writer.wait_for_more(50)  # ack=one: writes go on with one instance
        code, report = stack.check(timeout=5)
        assert code == 1 and not report["ok"], report
        assert any("chroma-0" in instance for instance in report["instances_at_fault"]), report
        assert not any("chroma-1" in instance for instance in report["instances_at_fault"]), report
        while_down = failing(report)

        stack.compose("start", "chroma-0")
        writer.wait_for_more(50)

        stack.compose("kill", "-s", "SIGKILL", "gateway-1")
        writer.wait_for_more(100)  # through gateway-2 alone, which takes over gateway-1's appliers
    finally:
        writer.stop.set()
        thread.join(30)
    assert len(writer.acked) >= 250

    urls = [stack.instance_url(name) for name in CHROMAS]
    state = wait_until_identical(urls, timeout=120)
    held = set(state[COLLECTION]["records"])
    lost = sorted(set(writer.acked) - held)
    assert lost == [], f"{len(lost)} acknowledged writes missing on the instances, e.g. {lost[:10]}"
    # each instance answers for itself, through its own published port
    for url in urls:
        assert set(writer.acked) <= set(snapshot(url)[COLLECTION]["records"])

    code, report = stack.check()
    assert code == 0 and report["ok"], failing(report)
    with capsys.disabled():
        print(
            f"\ncompose: {len(writer.acked)} records acknowledged and on both instances; {len(writer.failures)} "
            f"batches refused or cut while containers were killed; check with chroma-0 down: {while_down}"
        )
