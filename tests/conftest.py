from __future__ import annotations

from collections.abc import Iterator
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
def gateway(tmp_path: Path, chroma_pair: list[ChromaServer]) -> Iterator[GatewayProcess]:
    """A gateway process on the SQLite store in front of `chroma_pair`."""
    process = GatewayProcess(
        [s.url for s in chroma_pair], f"sqlite:///{tmp_path / 'wal.db'}", tmp_path / "gateway"
    ).start()
    yield process
    process.stop()
