"""Tokens against real Chroma servers behind a real gateway process, seen through the official client: what a
client without a token, a read-only one and one scoped to a tenant get, in Chroma's error shape; auth/identity;
a token file rewritten and reloaded by SIGHUP; a bad file at start; the warning of a gateway open to the network;
odd Authorization headers on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import chromadb
import httpx
import pytest
from chromadb.api import ClientAPI
from chromadb.config import Settings
from chromadb.errors import AuthorizationError, ChromaAuthError

from chroma_ha.gateway.tokens import mint, toml_entry
from chroma_ha.settings import Settings as GatewaySettings
from chroma_ha.store import open_store
from tests.harness import GatewayProcess, admin_client, client_auth, client_headers, on_every_store, wait_for

EMB = [[0.1, 0.2], [0.3, 0.4]]


class Tokens:
    """A token file of four tokens: read-write everywhere, read-only everywhere, read-write in tenant acme only,
    and read-write in database docs of tenant acme only."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "tokens.toml"
        self.rw, self.ro, self.acme, self.docs = mint(), mint(), mint(), mint()
        self.path.write_text(
            toml_entry("rw", self.rw, ["*"], ["*"], write=True, admin=False)
            + toml_entry("ro", self.ro, ["*"], ["*"], write=False, admin=False)
            + toml_entry("acme-app", self.acme, ["acme"], ["*"], write=True, admin=False)
            + toml_entry("docs-app", self.docs, ["acme"], ["docs"], write=True, admin=False),
            encoding="utf-8",
        )


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    return Tokens(tmp_path)


@pytest.fixture
def guarded(gateway_with: Callable[..., GatewayProcess], tokens: Tokens) -> GatewayProcess:
    return gateway_with({"CHROMA_HA_AUTH_TOKENS_FILE": str(tokens.path), "CHROMA_HA_ADMIN_TOKEN": mint()})


def client(gateway: GatewayProcess, token: str, header: str = "Authorization", **scope: str) -> ClientAPI:
    """The official sync client of `gateway` with `token` (in the tenant and database of `scope`, if given)."""
    return chromadb.HttpClient(
        host="127.0.0.1", port=gateway.port, settings=Settings(**client_auth(token, header)), **scope
    )


def test_without_a_token_or_with_a_wrong_one_the_client_gets_authorization_error(guarded: GatewayProcess) -> None:
    with pytest.raises(AuthorizationError, match="no token"):
        chromadb.HttpClient(host="127.0.0.1", port=guarded.port)
    for header in ("Authorization", "X-Chroma-Token"):
        with pytest.raises(AuthorizationError, match="not known to this gateway"):
            client(guarded, mint(), header)
    answer = httpx.post(f"{guarded.url}/api/v2/tenants/default_tenant/databases/default_database/collections")
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == 'Bearer realm="chroma-ha"'
    assert answer.json() == {
        "error": "AuthorizationError",
        "message": "no token: send Authorization: Bearer <token> or X-Chroma-Token: <token>",
    }
    assert httpx.get(f"{guarded.url}/api/v2/heartbeat").status_code == 200  # load balancers probe it without one

    async def scenario() -> None:
        with pytest.raises(AuthorizationError):
            await chromadb.AsyncHttpClient(host="127.0.0.1", port=guarded.port)

    asyncio.run(scenario())


def test_a_read_only_token_reads_and_its_writes_are_refused_with_auth_error(
    guarded: GatewayProcess, tokens: Tokens
) -> None:
    writer = chromadb.HttpClient(host="127.0.0.1", port=guarded.port, settings=Settings(**client_auth(tokens.rw)))
    written = writer.create_collection("shared", embedding_function=None)
    written.add(ids=["a", "b"], embeddings=EMB)

    reader = client(guarded, tokens.ro, "X-Chroma-Token")
    collection = reader.get_collection("shared", embedding_function=None)
    assert collection.count() == 2 and sorted(collection.get()["ids"]) == ["a", "b"]
    for write in (
        lambda: collection.add(ids=["c"], embeddings=[EMB[0]]),
        lambda: collection.delete(ids=["a"]),
        lambda: reader.create_collection("mine", embedding_function=None),
        lambda: reader.delete_collection("shared"),
    ):
        with pytest.raises(ChromaAuthError, match="Forbidden: token 'ro' is read-only"):
            write()
    assert writer.get_collection("shared", embedding_function=None).count() == 2

    async def scenario() -> None:
        auth = client_auth(tokens.ro, "Authorization")
        aclient = await chromadb.AsyncHttpClient(host="127.0.0.1", port=guarded.port, headers=client_headers(auth))
        acollection = await aclient.get_collection("shared", embedding_function=None)
        assert await acollection.count() == 2
        with pytest.raises(ChromaAuthError, match="read-only"):
            await acollection.upsert(ids=["z"], embeddings=[EMB[1]])

    asyncio.run(scenario())
    headers = {"x-chroma-token": tokens.ro}
    answer = httpx.post(f"{guarded.url}/api/v2/tenants", json={"name": "nope"}, headers=headers)
    assert (answer.status_code, answer.json()) == (
        403,
        {"error": "AuthError", "message": "Forbidden: token 'ro' is read-only"},
    )


def test_a_token_scoped_to_one_tenant_is_refused_every_other(guarded: GatewayProcess, tokens: Tokens) -> None:
    admin = admin_client(guarded.port, client_auth(tokens.rw))
    admin.create_tenant("acme")
    admin.create_tenant("beta")
    admin.create_database("docs", tenant="acme")
    admin.create_database("default_database", tenant="beta")

    acme = client(guarded, tokens.acme, tenant="acme", database="docs")
    acme.create_collection("inside", embedding_function=None).add(ids=["i"], embeddings=[EMB[0]])
    with pytest.raises(ChromaAuthError, match="Forbidden: token 'acme-app' may not use tenant 'beta'"):
        client(guarded, tokens.acme, tenant="beta", database="default_database")  # the client reads beta at once
    acme_admin = admin_client(guarded.port, client_auth(tokens.acme))
    acme_admin.create_database("more", tenant="acme")
    with pytest.raises(ChromaAuthError, match="may not use tenant 'beta'"):
        acme_admin.create_database("more", tenant="beta")
    with pytest.raises(ChromaAuthError, match="may not use tenant 'gamma'"):
        acme_admin.create_tenant("gamma")

    # a token for one database of acme: that database, and nothing of the tenant as a whole
    docs = client(guarded, tokens.docs, tenant="acme", database="docs")
    assert docs.get_collection("inside", embedding_function=None).count() == 1
    docs_admin = admin_client(guarded.port, client_auth(tokens.docs))
    with pytest.raises(ChromaAuthError, match="limited to some databases of tenant 'acme'"):
        docs_admin.create_database("mine", tenant="acme")
    with pytest.raises(ChromaAuthError, match="may not use database 'more' of tenant 'acme'"):
        client(guarded, tokens.docs, tenant="acme", database="more")

    base = f"{guarded.url}/api/v2/tenants/beta/databases/default_database/collections"
    answer = httpx.get(base, headers={"authorization": f"Bearer {tokens.acme}"})
    assert (answer.status_code, answer.json()["error"]) == (403, "AuthError")
    # the gateway's own tenant stays the gateway's, whatever the token
    answer = httpx.get(f"{guarded.url}/api/v2/tenants/chroma_ha_system", headers={"x-chroma-token": tokens.rw})
    assert answer.status_code == 403 and answer.json()["error"] != "AuthError"


@on_every_store
def test_every_logged_write_names_the_token_that_made_it(guarded: GatewayProcess, tokens: Tokens) -> None:
    admin_client(guarded.port, client_auth(tokens.rw)).create_tenant("acme")
    admin_client(guarded.port, client_auth(tokens.acme)).create_database("default_database", tenant="acme")
    rw = client(guarded, tokens.rw, "X-Chroma-Token")
    rw.create_collection("mixed", embedding_function=None).add(ids=["a"], embeddings=[EMB[0]])
    acme = client(guarded, tokens.acme, tenant="acme", database="default_database")
    acme.create_collection("theirs", embedding_function=None).add(ids=["b"], embeddings=[EMB[1]])
    guarded.wait_drained()

    async def authors() -> list[tuple[str, str]]:
        store = open_store(GatewaySettings.load(env={"CHROMA_HA_STORE": guarded.store}))
        await store.open()
        try:
            return [(e.op, e.author) for e in await store.read(0, 100)]
        finally:
            with contextlib.suppress(Exception):
                await store.close()

    assert asyncio.run(authors()) == [
        ("create_tenant", "rw"),
        ("create_database", "acme-app"),
        ("create_collection", "rw"),
        ("add", "rw"),
        ("create_collection", "acme-app"),
        ("add", "acme-app"),
    ]


def test_identity_answers_the_tokens_scope_and_the_client_takes_its_defaults_from_it(
    guarded: GatewayProcess, tokens: Tokens
) -> None:
    admin = admin_client(guarded.port, client_auth(tokens.rw))
    admin.create_tenant("acme")
    admin.create_database("docs", tenant="acme")

    docs = chromadb.HttpClient(
        host="127.0.0.1",
        port=guarded.port,
        settings=Settings(**client_auth(tokens.docs), chroma_overwrite_singleton_tenant_database_access_from_auth=True),
    )
    identity = docs.get_user_identity()
    assert (identity.user_id, identity.tenant, identity.databases) == ("docs-app", "acme", ["docs"])
    assert (docs.tenant, docs.database) == ("acme", "docs")  # type: ignore[attr-defined]
    docs.create_collection("defaulted", embedding_function=None)
    rw = client(guarded, tokens.rw, tenant="acme", database="docs")
    assert [c.name for c in rw.list_collections()] == ["defaulted"]
    everything = rw.get_user_identity()
    assert (everything.user_id, everything.tenant, everything.databases) == ("rw", "*", ["*"])


def test_a_rewritten_token_file_takes_effect_on_sighup_without_a_restart(
    guarded: GatewayProcess, tokens: Tokens
) -> None:
    url = f"{guarded.url}/api/v2/tenants/default_tenant/databases/default_database/collections"
    assert httpx.get(url, headers={"authorization": f"Bearer {tokens.rw}"}).status_code == 200
    pid = guarded.pid
    new = mint()
    tokens.path.write_text(toml_entry("rotated", new, ["*"], ["*"], write=True, admin=False), encoding="utf-8")
    os.kill(pid, signal.SIGHUP)

    wait_for(
        "the old token to be refused",
        lambda: httpx.get(url, headers={"authorization": f"Bearer {tokens.rw}"}).status_code,
        until=lambda status: status == 401,
    )
    assert httpx.get(url, headers={"authorization": f"Bearer {new}"}).status_code == 200
    rotated = client(guarded, new)
    assert rotated.get_user_identity().user_id == "rotated"

    # a broken file is not taken: the tokens in force stay, and the log says why
    tokens.path.write_text('[[token]]\nname = "half"\n', encoding="utf-8")
    os.kill(pid, signal.SIGHUP)
    wait_for("the reload to be refused in the log", lambda: "not reloaded" in guarded.log_text())
    assert "token 1 ('half'): 'sha256' must be" in guarded.log_text()
    assert httpx.get(url, headers={"authorization": f"Bearer {new}"}).status_code == 200
    assert guarded.process is not None and guarded.process.poll() is None and guarded.pid == pid
    assert new not in guarded.log_text() and tokens.rw not in guarded.log_text()


def test_a_bad_token_file_at_start_stops_the_gateway_naming_the_problem(
    gateway_with: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[token]]\nname = "ops"\nsha256 = "abc"\naccess = "all"\n', encoding="utf-8")
    with pytest.raises(RuntimeError, match=r"auth_tokens_file: .*bad.toml: token 1 \('ops'\): 'sha256' must be"):
        gateway_with({"CHROMA_HA_AUTH_TOKENS_FILE": str(bad)})
    with pytest.raises(RuntimeError, match=r"auth_tokens_file: .*absent.toml: cannot read"):
        gateway_with({"CHROMA_HA_AUTH_TOKENS_FILE": str(tmp_path / "absent.toml")})


def test_serve_beyond_loopback_without_tokens_warns_loudly(
    gateway_with: Callable[..., GatewayProcess], tokens: Tokens
) -> None:
    open_one = gateway_with({"CHROMA_HA_HOST": "0.0.0.0"})
    assert "WARNING: the gateway listens on 0.0.0.0, beyond this machine, and no tokens are configured" in (
        open_one.log_text()
    )
    assert "chroma_ha.cli.serve: WARNING: the gateway listens on 0.0.0.0" in open_one.log_text()  # the log too
    with_tokens = gateway_with({"CHROMA_HA_HOST": "0.0.0.0", "CHROMA_HA_AUTH_TOKENS_FILE": str(tokens.path)})
    on_loopback = gateway_with()
    assert "no tokens are configured" not in with_tokens.log_text() + on_loopback.log_text()


def raw_answer(port: int, head: bytes) -> tuple[int, bytes]:
    """The status and body of the answer to one request sent as these bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        status_line, _, rest = data.partition(b"\r\n")
        fields, _, body = rest.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in fields.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += sock.recv(65536)
        return int(status_line.split()[1]), body


ODD_AUTHORIZATION = [  # (header lines, what the 401 says)
    (b"Authorization: \r\n", b"must be Bearer"),
    (b"Authorization: Bearer\r\n", b"the token is empty"),
    (b"Authorization: Bearer \r\n", b"the token is empty"),
    (b"Authorization: Basic dXNlcjpwYXNz\r\n", b"must be Bearer"),
    (b"Authorization: Bearer a\r\nAuthorization: Bearer b\r\n", b"more than one"),
    (b"Authorization: Bearer a\r\nX-Chroma-Token: a\r\n", b"more than one"),
    (b"Authorization: Bearer " + b"x" * 30_000 + b"\r\n", b"longer than 1024 bytes"),
    (b"Authorization: Bearer \xe2\x98\x83\xff\r\n", b"ASCII letters, digits and punctuation"),
    (b"X-Chroma-Token: \x80\x81\r\n", b"ASCII letters, digits and punctuation"),
    (b"Authorization: Bearer cha_ab cd\r\n", b"ASCII letters, digits and punctuation"),
]


def test_odd_authorization_headers_get_a_clear_401(guarded: GatewayProcess) -> None:
    path = b"/api/v2/tenants/default_tenant/databases/default_database/collections"
    for authorization, said in ODD_AUTHORIZATION:
        for method in (b"GET", b"POST"):
            head = method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n" + authorization + b"\r\n{}"
            status, body = raw_answer(guarded.port, head)
            assert status == 401, (authorization[:80], body)
            assert b'"error":"AuthorizationError"' in body and said in body, (authorization[:80], body)
    assert guarded.process is not None and guarded.process.poll() is None
