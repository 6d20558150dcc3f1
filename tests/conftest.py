from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, start_chroma


@pytest.fixture
def chroma_pair(tmp_path: Path) -> Iterator[list[ChromaServer]]:
    """Two fresh Chroma servers."""
    servers = start_chroma(tmp_path, 2)
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def gateway_with(tmp_path: Path, chroma_pair: list[ChromaServer]) -> Iterator[Callable[..., GatewayProcess]]:
    """Starts a gateway process on the SQLite store in front of `chroma_pair`, with extra settings."""
    started: list[GatewayProcess] = []

    def start(env: dict[str, str] | None = None) -> GatewayProcess:
        process = GatewayProcess(
            [s.url for s in chroma_pair], f"sqlite:///{tmp_path / 'wal.db'}", tmp_path / "gateway", env=env
        )
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def gateway(gateway_with: Callable[..., GatewayProcess]) -> GatewayProcess:
    """A gateway process on the SQLite store in front of `chroma_pair`."""
    return gateway_with()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One real PostgreSQL for the session (a fresh database per test comes from `store_url`)."""
    import shutil
    import tempfile

    from tests.pg import running_postgres

    # Under the system temp dir: the server runs as another user and must traverse the path.
    base = Path(tempfile.mkdtemp(prefix="chroma-ha-pg-"))
    try:
        with running_postgres(base) as dsn:
            yield dsn
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty log store of each backend, as the `store` setting names it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'wal.db'}"
        return
    import uuid

    from tests.pg import create_database, database_uri, drop_database

    server = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    create_database(server, name)
    yield database_uri(server, name)
    drop_database(server, name)
