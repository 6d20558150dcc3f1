"""The clusters tests run against, each a fixture that stops what it started at teardown, also when the test failed.

- `chroma_pair`: two fresh Chroma servers.
- `gateway_with(env)`: gateway processes in front of `chroma_pair` on the `store_url` store, with extra settings;
  `gateway` is one with none. The store is SQLite unless the test is marked `on_every_store` or `on_postgres`
  (tests/harness.py); every gateway one test starts shares it, as gateways share a PostgreSQL.
- `store_url`: that store, fresh and empty; `postgres_server`: the session's PostgreSQL (chroma_ha/local_postgres.py).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chroma_ha.local_cluster import ChromaServer
from chroma_ha.local_postgres import create_database, database_uri, drop_database, running_postgres
from tests.harness import GatewayProcess, running_chroma


@pytest.fixture
def chroma_pair(tmp_path: Path) -> Iterator[list[ChromaServer]]:
    """Two fresh Chroma servers."""
    with running_chroma(tmp_path, 2) as servers:
        yield servers


@pytest.fixture
def gateway_with(
    tmp_path: Path, store_url: str, chroma_pair: list[ChromaServer]
) -> Iterator[Callable[..., GatewayProcess]]:
    """Starts a gateway process on `store_url` in front of `chroma_pair`, with extra settings (`CHROMA_HA_*`), as
    many times as the test asks; each is stopped at teardown."""
    with contextlib.ExitStack() as stopping:  # stops every gateway even when stopping one of them fails

        def start(env: dict[str, str] | None = None) -> GatewayProcess:
            process = GatewayProcess([s.url for s in chroma_pair], store_url, tmp_path / "gateway", env=env)
            stopping.callback(process.stop)  # before it starts: a gateway that fails at start is stopped too
            process.start()
            return process

        yield start


@pytest.fixture
def gateway(gateway_with: Callable[..., GatewayProcess]) -> GatewayProcess:
    """A gateway process on `store_url` in front of `chroma_pair`."""
    return gateway_with()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One real PostgreSQL for the session (a fresh database per test comes from `store_url`)."""
    # Under the system temp dir: the server runs as another user and must traverse the path.
    base = Path(tempfile.mkdtemp(prefix="chroma-ha-pg-"))
    try:
        with running_postgres(base) as dsn:
            yield dsn
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty log store, as the `store` setting names it: SQLite, or the backend the test is parametrized
    with (`on_every_store`, `on_postgres`)."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'wal.db'}"
        return
    assert backend == "postgres", f"no store backend {backend!r}"
    server = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    create_database(server, name)
    try:
        yield database_uri(server, name)
    finally:
        drop_database(server, name)
