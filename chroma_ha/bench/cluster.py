"""The benchmark's own local cluster: Chroma servers on loopback and gateway processes in front of them, on the
store the run measures (a SQLite file, or a throwaway PostgreSQL started for the run).

Each gateway runs as `python -m chroma_ha serve` in a child process, so the load generator (this process) never
shares an interpreter or an event loop with it.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

from ..local_cluster import ChromaServer, GatewayProcess, free_port
from ..local_postgres import database_uri, running_postgres

INSTANCE_COUNT = 2
STORES = ("sqlite", "postgres")
STORE_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


class BenchCluster:
    """Two Chroma instances behind `gateways` gateways on one store, and one standalone Chroma server.

    Queries are compared against the first instance asked directly (same server, same index, same data); writes
    are compared against the standalone server, so direct writes never touch what the gateways replicate. Several
    gateways need a shared store: PostgreSQL.
    """

    def __init__(
        self, workdir: Path, gateway_env: dict[str, str] | None = None, *, store: str = "sqlite", gateways: int = 1
    ) -> None:
        if store not in STORES:
            raise ValueError(f"bench store must be one of {', '.join(STORES)}, got {store!r}")
        if gateways < 1 or (gateways > 1 and store != "postgres"):
            raise ValueError("several gateways share one log only on PostgreSQL: use --store postgres")
        self.workdir = workdir
        self.store = store
        self.servers = [ChromaServer(workdir / f"instance-{n}", free_port()) for n in range(INSTANCE_COUNT)]
        self.standalone = ChromaServer(workdir / "standalone", free_port())
        self._env = gateway_env
        self._count = gateways
        self.gateways: list[GatewayProcess] = []
        self._resources = ExitStack()

    @property
    def store_name(self) -> str:
        return STORE_NAMES[self.store]

    @property
    def gateway(self) -> GatewayProcess:
        """The first gateway: the one asked for the log's status."""
        return self.gateways[0]

    @property
    def instance_urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def gateway_pids(self) -> list[int]:
        return [g.pid for g in self.gateways]

    @property
    def server_pids(self) -> list[int]:
        return [s.process.pid for s in (*self.servers, self.standalone) if s.process is not None]

    def _store_url(self) -> str:
        if self.store == "sqlite":
            return f"sqlite:///{self.workdir / 'wal.db'}"
        dsn = self._resources.enter_context(running_postgres(self.workdir / "postgres"))
        return database_uri(dsn, "postgres")

    def __enter__(self) -> BenchCluster:
        try:
            for server in (*self.servers, self.standalone):
                server.start(wait=False)
            store_url = self._store_url()
            for server in (*self.servers, self.standalone):
                server.wait_ready()
            for n in range(self._count):
                gateway = GatewayProcess(self.instance_urls, store_url, self.workdir / f"gateway-{n}", self._env)
                self.gateways.append(gateway)
                gateway.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for gateway in self.gateways:
            gateway.stop()
        for server in (*self.servers, self.standalone):
            server.stop()
        self._resources.close()  # the store goes last: the gateways stop cleanly on it
