"""Real parts for tests: Chroma servers and gateway processes on loopback, and ways to compare instances."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from chroma_ha.local_cluster import ChromaServer, free_port

GATEWAY_READY_TIMEOUT_S = 60.0


def start_chroma(base: Path, count: int, allow_reset: bool = False) -> list[ChromaServer]:
    servers = [ChromaServer(base / f"chroma-{n}", free_port(), allow_reset=allow_reset) for n in range(count)]
    for server in servers:
        server.start(wait=False)
    for server in servers:
        server.wait_ready()
    return servers


class GatewayProcess:
    """`chroma-ha serve` in a child process, so a test can SIGKILL it like a crash."""

    def __init__(
        self, instances: list[str], store: str, workdir: Path, env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.instances = instances
        self.store = store
        self.workdir = workdir
        self.extra_env = dict(env or {})
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_HA_")}
        env.update({
            "CHROMA_HA_INSTANCES": ",".join(self.instances),
            "CHROMA_HA_STORE": self.store,
            "CHROMA_HA_PORT": str(self.port),
            "CHROMA_HA_HEALTH_INTERVAL": "0.25",
            "CHROMA_HA_HEALTH_FALL": "2",
            "CHROMA_HA_HEALTH_RISE": "1",
            "CHROMA_HA_BACKOFF_CAP": "0.5",
            "CHROMA_HA_POLL_INTERVAL": "0.1",
        })
        env.update(self.extra_env)
        log = open(self.workdir / f"gateway-{self.port}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chroma_ha", "serve"], env=env, cwd=self.workdir,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + GATEWAY_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"gateway did not start: {self.log_text()[-3000:]}")

    def log_text(self) -> str:
        path = self.workdir / f"gateway-{self.port}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def wal_status(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/wal/status", timeout=10).json()

    def wait_drained(self, timeout: float = 60.0) -> dict[str, Any]:
        """Until every instance has applied the whole log."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.wal_status()
            if all(i["cursor"] >= status["head"] for i in status["instances"].values()):
                return status
            time.sleep(0.1)
        raise AssertionError(f"log not drained in {timeout}s: {status}")


def snapshot(url: str, tenant: str = "default_tenant", database: str = "default_database") -> dict[str, Any]:
    """Everything an instance holds in one database, compared with `get` (never `query`: HNSW is approximate)."""
    base = f"{url}/api/v2/tenants/{tenant}/databases/{database}"
    collections = httpx.get(f"{base}/collections", params={"limit": 100000}, timeout=30).json()
    state: dict[str, Any] = {}
    for c in sorted(collections, key=lambda c: c["name"]):
        got = httpx.post(
            f"{base}/collections/{c['id']}/get",
            json={"include": ["embeddings", "metadatas", "documents", "uris"]}, timeout=60,
        ).json()
        records = {
            rid: (
                [round(x, 5) for x in (got["embeddings"][n] or [])], got["metadatas"][n], got["documents"][n],
                got["uris"][n],
            )
            for n, rid in enumerate(got["ids"])
        }
        state[c["name"]] = {
            "metadata": c["metadata"], "configuration": c["configuration_json"], "records": records,
        }
    return state
