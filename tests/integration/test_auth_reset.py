"""Reset against real Chroma servers: it needs an admin token as well as allow_reset, and clears the log only when
every instance reset. With one instance refusing (started without ALLOW_RESET) or stopped, the log is kept, the
client gets a clear error, and the instance that did reset is rebuilt from the log."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import chromadb
import httpx
import pytest
from chromadb.config import Settings
from chromadb.errors import AuthorizationError, ChromaAuthError, ChromaError

from chroma_ha.gateway.tokens import mint, toml_entry
from chroma_ha.local_cluster import ChromaServer, free_port
from tests.harness import GatewayProcess, client_auth, snapshot, wait_for, wait_until_identical

EMB = [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]


@pytest.fixture
def allowing_and_refusing(tmp_path: Path) -> Iterator[list[ChromaServer]]:
    """Two Chroma servers: the first allows reset, the second does not."""
    with contextlib.ExitStack() as stopping:
        servers = [ChromaServer(tmp_path / f"chroma-{n}", free_port(), allow_reset=n == 0) for n in range(2)]
        for server in servers:
            stopping.callback(server.stop)
            server.start()
        yield servers


def test_reset_needs_an_admin_token_and_keeps_the_log_unless_every_instance_resets(
    tmp_path: Path, store_url: str, allowing_and_refusing: list[ChromaServer]
) -> None:
    first, second = allowing_and_refusing
    urls = [first.url, second.url]
    rw, viewer, ops, admin_token = mint(), mint(), mint(), mint()
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        toml_entry("rw", rw, ["*"], ["*"], write=True, admin=False)
        + toml_entry("viewer", viewer, ["*"], ["*"], write=False, admin=True)
        + toml_entry("ops", ops, ["*"], ["*"], write=True, admin=True),
        encoding="utf-8",
    )
    env = {
        "CHROMA_HA_ALLOW_RESET": "true",
        "CHROMA_HA_ADMIN_TOKEN": admin_token,
        "CHROMA_HA_AUTH_TOKENS_FILE": str(tokens),
    }
    gateway = GatewayProcess(urls, store_url, tmp_path / "gateway", env=env)
    try:
        gateway.start()
        writer = chromadb.HttpClient(host="127.0.0.1", port=gateway.port, settings=Settings(**client_auth(rw)))
        writer.create_collection("kept", embedding_function=None).add(ids=["a", "b", "c"], embeddings=EMB)
        head = gateway.wait_drained()["head"]
        reset = f"{gateway.url}/api/v2/reset"

        # no admin token: refused before any instance is asked
        answer = httpx.post(reset, timeout=30)
        assert answer.status_code == 401 and answer.json()["error"] == "AuthorizationError"
        answer = httpx.post(reset, headers={"authorization": f"Bearer {rw}"}, timeout=30)
        assert answer.json() == {
            "error": "AuthError",
            "message": "Forbidden: reset needs a read-write admin token; token 'rw' is not one",
        }
        with pytest.raises(ChromaAuthError, match="reset needs a read-write admin token"):
            writer.reset()
        answer = httpx.post(reset, headers={"x-chroma-token": viewer}, timeout=30)  # admin for the dashboard only
        assert answer.status_code == 403 and "token 'viewer' is read-only" in answer.json()["message"]
        with pytest.raises(AuthorizationError):
            chromadb.HttpClient(host="127.0.0.1", port=gateway.port).reset()
        assert all(len(snapshot(url)["kept"]["records"]) == 3 for url in urls)

        # the second instance refuses: the log is kept, the first (which reset) is rebuilt from it
        operator = chromadb.HttpClient(host="127.0.0.1", port=gateway.port, settings=Settings(**client_auth(ops)))
        with pytest.raises(ChromaError, match=r"Reset refused by instance 2 .*so the log is kept") as refused:
            operator.reset()
        assert "1 instance(s) reset before it are rebuilt from the log" in str(refused.value)
        status = gateway.wal_status()
        assert status["head"] == head and status["oldest"] == 1
        state = wait_until_identical(urls, timeout=60)
        assert sorted(state["kept"]["records"]) == ["a", "b", "c"]
        assert writer.get_collection("kept", embedding_function=None).count() == 3

        # the second instance stopped: the same, with a 503
        second.stop()
        wait_for("the second instance to be down", lambda: not gateway.wal_status()["instances"][second.url]["up"])
        answer = httpx.post(reset, headers={"authorization": f"Bearer {ops}"}, timeout=60)
        assert answer.status_code == 503 and "so the log is kept" in answer.json()["message"]
        assert gateway.wal_status()["head"] == head

        # both allow it: everything is reset, the log included; the admin token resets too
        second.allow_reset = True
        second.start()
        wait_until_identical(urls, timeout=60)
        assert all(sorted(snapshot(url)["kept"]["records"]) == ["a", "b", "c"] for url in urls)
        superuser = chromadb.HttpClient(
            host="127.0.0.1", port=gateway.port, settings=Settings(**client_auth(admin_token))
        )
        assert superuser.reset() is True
        assert all(snapshot(url) == {} for url in urls)
        assert writer.list_collections() == []
        assert gateway.wal_status()["oldest"] > gateway.wal_status()["head"]  # no entry left
    finally:
        gateway.stop()
