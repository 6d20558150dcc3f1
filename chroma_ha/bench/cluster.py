"""The benchmark's own local cluster: Chroma servers on loopback and a gateway process in front of them.

The gateway runs as `python -m chroma_ha serve` in a child process, so the load generator (this process) never
shares an interpreter or an event loop with it.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from ..local_cluster import ChromaServer, GatewayProcess, free_port

INSTANCE_COUNT = 2


class BenchCluster:
    """Two Chroma instances behind a gateway on the SQLite store, and one standalone Chroma server.

    Queries are compared against the first instance asked directly (same server, same index, same data); writes
    are compared against the standalone server, so direct writes never touch what the gateway replicates.
    """

    def __init__(self, workdir: Path, gateway_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.servers = [ChromaServer(workdir / f"instance-{n}", free_port()) for n in range(INSTANCE_COUNT)]
        self.standalone = ChromaServer(workdir / "standalone", free_port())
        self.gateway = GatewayProcess(
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
