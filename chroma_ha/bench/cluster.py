"""The benchmark's own local cluster: Chroma servers on loopback and a gateway process in front of them.

The gateway runs as `python -m chroma_ha serve` in a child process, so the load generator (this process) never
shares an interpreter or an event loop with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from ..local_cluster import ChromaServer, free_port

GATEWAY_READY_TIMEOUT_S = 60.0
GATEWAY_STOP_TIMEOUT_S = 15.0
INSTANCE_COUNT = 2


class GatewayChild:
    """`chroma-ha serve` with settings from the environment, its output in a log file."""

    def __init__(self, instances: list[str], store: str, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.instances = instances
        self.store = store
        self.workdir = workdir
        self.extra_env = env or {}
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "gateway.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> GatewayChild:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_HA_")}
        env.update({
            "CHROMA_HA_INSTANCES": ",".join(self.instances),
            "CHROMA_HA_STORE": self.store,
            "CHROMA_HA_HOST": "127.0.0.1",
            "CHROMA_HA_PORT": str(self.port),
        })
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chroma_ha", "serve"], env=env, cwd=self.workdir,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + GATEWAY_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited at start; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except urllib.error.HTTPError:
                pass  # 503 while no instance is up yet
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the gateway was not healthy within {GATEWAY_READY_TIMEOUT_S:g}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(GATEWAY_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class BenchCluster:
    """Two Chroma instances behind a gateway on the SQLite store, and one standalone Chroma server.

    Queries are compared against the first instance asked directly (same server, same index, same data); writes
    are compared against the standalone server, so direct writes never touch what the gateway replicates.
    """

    def __init__(self, workdir: Path, gateway_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.servers = [ChromaServer(workdir / f"instance-{n}", free_port()) for n in range(INSTANCE_COUNT)]
        self.standalone = ChromaServer(workdir / "standalone", free_port())
        self.gateway = GatewayChild(
            [s.url for s in self.servers], f"sqlite:///{workdir / 'wal.db'}", workdir / "gateway", gateway_env
        )

    @property
    def instance_urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def server_pids(self) -> list[int]:
        return [s.process.pid for s in (*self.servers, self.standalone) if s.process is not None]

    def __enter__(self) -> BenchCluster:
        try:
            for server in (*self.servers, self.standalone):
                server.start(wait=False)
            for server in (*self.servers, self.standalone):
                server.wait_ready()
            self.gateway.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.gateway.stop()
        for server in (*self.servers, self.standalone):
            server.stop()
