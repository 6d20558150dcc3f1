"""The cluster a torture run drives: real `chroma run` servers, real `chroma-ha serve` gateway processes, a SQLite
or a real PostgreSQL log, and a fault-injecting proxy in front of the first instance.

Everything it starts it stops when the block exits, also when the run failed.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from ..local_cluster import ChromaServer, GatewayProcess, free_port
from ..local_postgres import StoppablePostgres, create_database, database_uri, stoppable_postgres
from ..settings import definition
from .proxy import FaultyProxy

# Fast health checks, retries and takeovers, so that a fault is seen and recovered from within a second or two,
# and a read stuck on a frozen instance fails over after a few seconds rather than Chroma's default thirty.
GATEWAY_SETTINGS = {
    "health_interval": "0.25",
    "health_fall": "2",
    "health_rise": "1",
    "backoff_cap": "0.5",
    "poll_interval": "0.1",
    "lease_ttl": "2",
    "request_timeout": "5",
}
COLLECTION = "torture"
DRAIN_POLL_S = 0.2


def settings_env(settings: dict[str, str]) -> dict[str, str]:
    """Settings by flat name as the gateway's variables."""
    return {definition(name).variable: value for name, value in settings.items()}


class TortureCluster:
    def __init__(
        self,
        workdir: Path,
        *,
        instances: int,
        gateways: int,
        store: str,
        seed: int,
        gateway_settings: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.store_kind = store
        self.seed = seed
        self.servers = [ChromaServer(workdir / f"instance-{n}", free_port()) for n in range(instances)]
        self.proxy = FaultyProxy(free_port(), self.servers[0].port, seed)
        self.postgres: StoppablePostgres | None = None
        self.gateway_count = gateways
        self.gateway_settings = {**GATEWAY_SETTINGS, **(gateway_settings or {})}
        self.gateways: list[GatewayProcess] = []
        self.generations = [0] * gateways  # bumped on each restart of a gateway (see workload.Connections)
        self.collection = ""
        self._stack = contextlib.ExitStack()

    @property
    def instance_urls(self) -> list[str]:
        """The instances as the gateways reach them: the first one through the proxy."""
        return [self.proxy.url] + [s.url for s in self.servers[1:]]

    @property
    def direct_urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def gateway_urls(self) -> list[str]:
        return [g.url for g in self.gateways]

    def __enter__(self) -> TortureCluster:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stack.close()

    def _start(self) -> None:
        for server in self.servers:
            self._stack.callback(server.stop)
            server.start(wait=False)
        for server in self.servers:
            server.wait_ready()
        self.proxy.start()
        self._stack.callback(self.proxy.stop)
        if self.store_kind == "postgres":
            # under the system temp dir: the server may run as another user, which must traverse the path
            base = Path(tempfile.mkdtemp(prefix="chroma-ha-torture-pg-"))
            self.postgres = self._stack.enter_context(stoppable_postgres(base))
            store = database_uri(create_database(self.postgres.dsn, "chroma_ha"), "chroma_ha")
        else:
            store = f"sqlite:///{self.workdir / 'wal.db'}"
        for n in range(self.gateway_count):
            env = settings_env({**self.gateway_settings, "gateway_id": f"torture-g{n}"})
            gateway = GatewayProcess(self.instance_urls, store, self.workdir / f"gateway-{n}", env=env)
            self._stack.callback(gateway.stop)
            gateway.start()
            self.gateways.append(gateway)
        self.collection = self._create_collection()

    def _create_collection(self) -> str:
        import chromadb  # the official client, as a user would create it; heavy, so only here

        client = chromadb.HttpClient(host="127.0.0.1", port=self.gateways[0].port)
        return str(client.get_or_create_collection(COLLECTION, embedding_function=None).id)

    def restart_gateway(self, n: int) -> None:
        self.generations[n] += 1
        self.gateways[n].start()

    def wal_status(self, n: int = 0) -> dict[str, Any]:
        return dict(httpx.get(f"{self.gateways[n].url}/wal/status", timeout=5).raise_for_status().json())

    def wait_caught_up(self, timeout: float, head: int | None = None) -> bool:
        """Until every instance has applied the log up to `head` (by default: the head now), seen through
        every gateway; False if that did not happen within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                statuses = [self.wal_status(n) for n in range(len(self.gateways))]
            except (httpx.HTTPError, ValueError):
                time.sleep(DRAIN_POLL_S)
                continue
            wanted = head if head is not None else max(s["head"] for s in statuses)
            if all(i["cursor"] >= wanted for s in statuses for i in s["instances"].values()):
                return True
            if head is None:
                head = wanted
            time.sleep(DRAIN_POLL_S)
        return False

    def head(self) -> int | None:
        for n in range(len(self.gateways)):
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                return int(self.wal_status(n)["head"])
        return None
