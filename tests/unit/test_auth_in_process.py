"""The gate inside a whole gateway, fast: a gateway in this process on an in-memory store, in front of fake
instances (tests/fake_chroma.py). The same behaviour is proven with the official client against real Chroma
servers and a real gateway process in tests/integration/test_auth_client.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from chroma_ha.app import Gateway
from chroma_ha.errors import SettingsError
from chroma_ha.gateway.http_server import HttpRequest
from chroma_ha.gateway.tokens import toml_entry
from tests.fake_chroma import FakeCluster, drained, error, in_process, settings_for

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"
WRITER, READER, ACME, OPS, ROOT = "cha_writer", "cha_reader", "cha_acme", "cha_ops", "cha_root"


def token_file(tmp_path: Path) -> str:
    path = tmp_path / "tokens.toml"
    path.write_text(
        toml_entry("writer", WRITER, ["*"], ["*"], write=True, admin=False)
        + toml_entry("reader", READER, ["*"], ["*"], write=False, admin=False)
        + toml_entry("acme-app", ACME, ["acme"], ["*"], write=True, admin=False)
        + toml_entry("ops", OPS, ["*"], ["*"], write=False, admin=True)
        + toml_entry("root", ROOT, ["*"], ["*"], write=True, admin=True),
        encoding="utf-8",
    )
    return str(path)


async def send(gateway: Gateway, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    headers = [(b"content-type", b"application/json")]
    if token is not None:
        headers.append((b"authorization", b"Bearer " + token.encode()))
    raw = orjson.dumps(body) if body is not None else b""
    response = await gateway.routes(HttpRequest(method, path, "", headers, raw))
    return response.status, orjson.loads(response.body) if response.body else None


async def test_writes_are_logged_with_their_tokens_name_and_refusals_reach_no_instance(tmp_path: Path) -> None:
    cluster = FakeCluster(2)
    async with in_process(cluster, AUTH_TOKENS_FILE=token_file(tmp_path)) as gateway:
        assert await send(gateway, "POST", COLLECTIONS, {"name": "notes"}) == (
            401,
            {"error": "AuthorizationError", "message": "no token: send Authorization: Bearer <token> or "
             "X-Chroma-Token: <token>"},
        )  # fmt: skip
        status, body = await send(gateway, "POST", COLLECTIONS, {"name": "notes"}, READER)
        assert (status, body) == (403, {"error": "AuthError", "message": "Forbidden: token 'reader' is read-only"})
        status, body = await send(gateway, "POST", "/api/v2/tenants", {"name": "beta"}, ACME)
        assert status == 403 and body["message"] == "Forbidden: token 'acme-app' may not use tenant 'beta'"
        assert [e.op for e in await gateway.store.read(0, 10)] == []
        assert all(not i.requests or ("POST", COLLECTIONS) not in i.requests for i in cluster.instances)

        status, created = await send(gateway, "POST", COLLECTIONS, {"name": "notes"}, WRITER)
        assert status == 200, created
        status, _ = await send(gateway, "POST", "/api/v2/tenants", {"name": "acme"}, ACME)
        assert status == 200
        status, _ = await send(gateway, "POST", f"{COLLECTIONS}/{created['id']}/get", {}, READER)
        assert status == 200
        entries = await gateway.store.read(0, 10)
        assert [(e.op, e.author) for e in entries] == [("create_collection", "writer"), ("create_tenant", "acme-app")]
        await drained(gateway)


async def test_identity_is_answered_by_the_gateway_from_the_token(tmp_path: Path) -> None:
    async with in_process(FakeCluster(1), AUTH_TOKENS_FILE=token_file(tmp_path)) as gateway:
        status, body = await send(gateway, "GET", "/api/v2/auth/identity", token=ACME)
        assert (status, body["user_id"], body["tenant"], body["databases"]) == (200, "acme-app", "acme", ["*"])
        assert (await send(gateway, "GET", "/api/v2/auth/identity"))[0] == 401
        assert (await send(gateway, "GET", "/api/v2/heartbeat"))[0] == 200  # open, as load balancers probe it


async def test_the_admin_routes_take_an_admin_scoped_token_and_refuse_the_others(tmp_path: Path) -> None:
    async with in_process(FakeCluster(1), AUTH_TOKENS_FILE=token_file(tmp_path)) as gateway:
        assert (await send(gateway, "GET", "/wal/status", token=OPS))[0] == 200
        assert (await send(gateway, "GET", "/wal/status", token=WRITER))[0] == 401
        assert (await send(gateway, "GET", "/wal/status"))[0] == 401


async def test_reset_needs_an_admin_token_and_keeps_the_log_when_an_instance_refuses(tmp_path: Path) -> None:
    cluster = FakeCluster(2)
    first, second = cluster.instances
    async with in_process(cluster, AUTH_TOKENS_FILE=token_file(tmp_path), ALLOW_RESET="true") as gateway:
        status, created = await send(gateway, "POST", COLLECTIONS, {"name": "kept"}, WRITER)
        assert status == 200
        await drained(gateway)

        status, body = await send(gateway, "POST", "/api/v2/reset", token=WRITER)
        assert (status, body["error"]) == (403, "AuthError") and "token 'writer' is not one" in body["message"]
        status, body = await send(gateway, "POST", "/api/v2/reset", token=OPS)
        assert status == 403 and "needs a read-write admin token; token 'ops' is read-only" in body["message"]
        assert (await send(gateway, "POST", "/api/v2/reset"))[0] == 401
        assert ("POST", "/api/v2/reset") not in first.requests + second.requests

        refusal = error(403, "ChromaError", "Resetting is not allowed by this configuration")
        second.poison = lambda method, path, payload: refusal if path == "/api/v2/reset" else None
        status, body = await send(gateway, "POST", "/api/v2/reset", token=ROOT)
        assert status == 403 and body["error"] == "ChromaError"
        assert "refused by instance 2 (403: Resetting is not allowed by this configuration)" in body["message"]
        assert "the log is kept" in body["message"]
        assert [e.op for e in await gateway.store.read(0, 10)] == ["create_collection"]
        # the first instance did reset: its applier finds it wiped and rebuilds it from the kept log
        await drained(gateway)
        assert "kept" in first.collections() and "kept" in second.collections()
        assert (await send(gateway, "GET", f"{COLLECTIONS}/kept", token=READER))[1]["id"] == created["id"]

        second.poison = None
        assert await send(gateway, "POST", "/api/v2/reset", token=ROOT) == (200, True)
        assert await gateway.store.read(0, 10) == []
        assert first.collections() == {} and second.collections() == {}


async def test_with_no_tokens_the_data_path_is_open_and_reset_needs_the_admin_token() -> None:
    cluster = FakeCluster(1)
    async with in_process(cluster, ALLOW_RESET="true", ADMIN_TOKEN="adm1n") as gateway:
        assert (await send(gateway, "POST", COLLECTIONS, {"name": "notes"}))[0] == 200
        assert [e.author for e in await gateway.store.read(0, 10)] == [""]
        status, body = await send(gateway, "POST", "/api/v2/reset")
        assert status == 401 and body["error"] == "AuthorizationError"
        assert await send(gateway, "POST", "/api/v2/reset", token="adm1n") == (200, True)
    async with in_process(FakeCluster(1), ALLOW_RESET="true") as gateway:
        status, body = await send(gateway, "POST", "/api/v2/reset")
        assert status == 403 and "none is configured" in body["message"]


def test_a_bad_token_setting_or_file_stops_the_gateway_naming_the_setting(tmp_path: Path) -> None:
    cluster = FakeCluster(1)
    with pytest.raises(SettingsError, match=r"auth_tokens: token 2: expected name:sha256"):
        Gateway(settings_for(cluster, AUTH_TOKENS=f"ci:{'0' * 64},oops"))
    bad = tmp_path / "tokens.toml"
    bad.write_text('[[token]]\nname = "x"\naccess = "write"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match=r"auth_tokens_file: .*tokens.toml: token 1 \('x'\): 'sha256'"):
        Gateway(settings_for(cluster, AUTH_TOKENS_FILE=str(bad)))
