"""The pure decisions of the gate: what each route needs, whether a token has it, which token a request carries;
and the gate itself: its book, the admin check both paths use, and reloads that take a good file or keep the old."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest

from chroma_ha.errors import SettingsError
from chroma_ha.gateway.auth import Gate, Level, Need, identity, need_of, presented, refusal
from chroma_ha.gateway.routes import classify
from chroma_ha.gateway.tokens import ALL, Token, digest_of, toml_entry

T = "/api/v2/tenants/acme"
D = f"{T}/databases/docs"
C = f"{D}/collections/notes"


def token(
    tenants: tuple[str, ...] = (ALL,), databases: tuple[str, ...] = (ALL,), *, write: bool = True, admin: bool = False
) -> Token:
    return Token("t", digest_of("x"), frozenset(tenants), frozenset(databases), write, admin)


def need(method: str, path: str, created: str | None = None) -> Need:
    return need_of(classify(method, path), path, created)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/api/v2/heartbeat", Need(Level.OPEN)),
        ("GET", "/api/v2", Need(Level.OPEN)),
        ("GET", "/api/v2/version", Need(Level.OPEN)),
        ("GET", "/api/v2/healthcheck", Need(Level.OPEN)),
        ("GET", "/api/v2/pre-flight-checks", Need(Level.OPEN)),
        ("GET", "/api/v2/auth/identity", Need(Level.ANY)),
        ("GET", "/api/v2/no/such/route", Need(Level.ANY)),
        ("GET", "/api/v2/tenants/chroma_ha_system", Need(Level.ANY)),
        ("POST", "/api/v2/reset", Need(Level.ADMIN, write=True)),
        ("POST", "/api/v2/tenants", Need(Level.TENANT, True, "acme", whole=True)),
        ("GET", T, Need(Level.TENANT, False, "acme")),
        ("PATCH", T, Need(Level.TENANT, True, "acme", whole=True)),
        ("GET", f"{T}/databases", Need(Level.TENANT, False, "acme", whole=True)),
        ("POST", f"{T}/databases", Need(Level.TENANT, True, "acme", whole=True)),
        ("GET", D, Need(Level.DATABASE, False, "acme", "docs")),
        ("DELETE", D, Need(Level.TENANT, True, "acme", whole=True)),
        ("GET", f"{D}/collections", Need(Level.DATABASE, False, "acme", "docs")),
        ("POST", f"{D}/collections", Need(Level.DATABASE, True, "acme", "docs")),
        ("GET", f"{D}/collections_count", Need(Level.DATABASE, False, "acme", "docs")),
        ("GET", C, Need(Level.DATABASE, False, "acme", "docs")),
        ("PUT", C, Need(Level.DATABASE, True, "acme", "docs")),
        ("DELETE", C, Need(Level.DATABASE, True, "acme", "docs")),
        ("POST", f"{C}/add", Need(Level.DATABASE, True, "acme", "docs")),
        ("POST", f"{C}/upsert", Need(Level.DATABASE, True, "acme", "docs")),
        ("POST", f"{C}/update", Need(Level.DATABASE, True, "acme", "docs")),
        ("POST", f"{C}/delete", Need(Level.DATABASE, True, "acme", "docs")),
        ("POST", f"{C}/get", Need(Level.DATABASE, False, "acme", "docs")),
        ("POST", f"{C}/query", Need(Level.DATABASE, False, "acme", "docs")),
        ("POST", f"{C}/search", Need(Level.DATABASE, False, "acme", "docs")),
        ("GET", f"{C}/count", Need(Level.DATABASE, False, "acme", "docs")),
        ("POST", f"{C}/fork", Need(Level.DATABASE, True, "acme", "docs")),
        ("GET", "/api/v2/collections/acme:docs:notes", Need(Level.DATABASE, False, "acme", "docs")),
        ("GET", "/api/v2/collections/a%3Ab%3Ac", Need(Level.DATABASE, False, "a", "b")),
        ("GET", "/api/v2/collections/not-a-crn", Need(Level.DATABASE, False)),
        ("GET", "/api/v2/tenants/ac%2Fme/databases/d%20b", Need(Level.DATABASE, False, "ac/me", "d b")),
    ],
)
def test_what_each_route_needs(method: str, path: str, expected: Need) -> None:
    assert need(method, path, "acme") == expected


def test_a_create_tenant_with_no_name_needs_every_tenant() -> None:
    assert need("POST", "/api/v2/tenants") == Need(Level.TENANT, True, None, whole=True)
    assert refusal(need("POST", "/api/v2/tenants"), token(("acme",))) is not None
    assert refusal(need("POST", "/api/v2/tenants"), token()) is None


@pytest.mark.parametrize(
    ("the_need", "the_token", "refused"),
    [
        (Need(Level.OPEN), token(write=False), None),
        (Need(Level.ANY), token(("other",), ("x",), write=False), None),
        (Need(Level.ADMIN, write=True), token(), "is not an admin token"),
        (Need(Level.ADMIN, write=True), token(("acme",), write=False, admin=True), "is read-only"),
        (Need(Level.ADMIN, write=True), token(("acme",), write=True, admin=True), None),
        (Need(Level.DATABASE, False, "acme", "docs"), token(write=False), None),
        (Need(Level.DATABASE, True, "acme", "docs"), token(write=False), "is read-only"),
        (Need(Level.DATABASE, False, "acme", "docs"), token(("acme",)), None),
        (Need(Level.DATABASE, False, "beta", "docs"), token(("acme",)), "may not use tenant 'beta'"),
        (Need(Level.DATABASE, False, "acme", "docs"), token(("acme",), ("docs",)), None),
        (Need(Level.DATABASE, False, "acme", "other"), token(("acme",), ("docs",)), "may not use database 'other'"),
        (Need(Level.DATABASE, False), token(("acme",)), "may not use a tenant it does not name"),
        (Need(Level.DATABASE, False), token(), None),
        (Need(Level.TENANT, False, "acme"), token(("acme",), ("docs",), write=False), None),
        (Need(Level.TENANT, True, "acme", whole=True), token(("acme",), ("docs",)), "limited to some databases"),
        (Need(Level.TENANT, True, "acme", whole=True), token(("acme",)), None),
        (Need(Level.TENANT, True, "acme", whole=True), token(("beta",)), "may not use tenant 'acme'"),
        (Need(Level.TENANT, False, "*"), token(("acme",)), "may not use tenant '*'"),  # "*" is no tenant's name
    ],
)
def test_whether_a_token_has_what_a_route_needs(the_need: Need, the_token: Token, refused: str | None) -> None:
    said = refusal(the_need, the_token)
    if refused is None:
        assert said is None
    else:
        assert said is not None and refused in said


def test_identity_is_the_tokens_name_and_scope_with_one_tenant_as_the_default() -> None:
    one = Token("ingest", digest_of("x"), frozenset({"acme"}), frozenset({"docs"}), write=True)
    assert identity(one) == {
        "user_id": "ingest",
        "tenant": "acme",
        "databases": ["docs"],
        "attributes": {"tenants": ["acme"], "access": "write", "admin": False},
    }
    several = Token("r", digest_of("y"), frozenset({"b", "a"}), frozenset({ALL}), admin=True)
    assert identity(several)["tenant"] == ALL
    assert identity(several)["attributes"] == {"tenants": ["a", "b"], "access": "read", "admin": True}


@pytest.mark.parametrize(
    ("headers", "outcome"),
    [
        ([(b"authorization", b"Bearer abc")], b"abc"),
        ([(b"authorization", b"bearer   abc  ")], b"abc"),
        ([(b"x-chroma-token", b" abc ")], b"abc"),
        ([], "no token"),
        ([(b"authorization", b"")], "must be Bearer"),
        ([(b"authorization", b"Bearer")], "the token is empty"),
        ([(b"authorization", b"Bearer    ")], "the token is empty"),
        ([(b"authorization", b"Basic YTpi")], "must be Bearer"),
        ([(b"authorization", b"abc")], "must be Bearer"),
        ([(b"x-chroma-token", b"")], "the token is empty"),
        ([(b"authorization", b"Bearer a"), (b"authorization", b"Bearer a")], "more than one"),
        ([(b"authorization", b"Bearer a"), (b"x-chroma-token", b"a")], "more than one"),
        ([(b"authorization", b"Bearer " + b"a" * 5000)], "longer than 1024 bytes"),
        ([(b"authorization", "Bearer tökén".encode())], "ASCII letters, digits and punctuation"),
        ([(b"authorization", b"Bearer \xff\xfe\x00")], "ASCII letters, digits and punctuation"),
        ([(b"authorization", b"Bearer a b")], "ASCII letters, digits and punctuation"),
    ],
)
def test_the_token_a_request_carries(headers: list[tuple[bytes, bytes]], outcome: bytes | str) -> None:
    found = presented(headers)
    if isinstance(outcome, bytes):
        assert found == outcome
    else:
        assert isinstance(found, str) and outcome in found


def write_tokens(path: Path, *entries: str) -> None:
    path.write_text("\n".join(entries), encoding="utf-8")


def test_gate_off_admits_everyone_and_guards_no_admin_route() -> None:
    gate = Gate()
    assert not gate.enabled and not gate.guards_admin
    assert gate.admits(Need(Level.DATABASE, True, "acme", "docs"), []) is None
    assert not gate.is_admin([(b"authorization", b"Bearer anything")])


def test_gate_answers_401_and_403_in_chromas_shape(tmp_path: Path) -> None:
    file = tmp_path / "tokens.toml"
    write_tokens(file, toml_entry("reader", "cha_read", ["acme"], ["*"], write=False, admin=False))
    gate = Gate(tokens_file=str(file))
    write = Need(Level.DATABASE, True, "acme", "docs")
    missing = gate.admits(write, [])
    wrong = gate.admits(write, [(b"authorization", b"Bearer cha_nope")])
    denied = gate.admits(write, [(b"authorization", b"Bearer cha_read")])
    for answer, status, error in ((missing, 401, b"AuthorizationError"), (wrong, 401, b"AuthorizationError")):
        assert not isinstance(answer, Token) and answer is not None
        assert answer.status == status and b'"error":"%s"' % error in answer.body
        assert (b"www-authenticate", b'Bearer realm="chroma-ha"') in answer.headers
    assert not isinstance(denied, Token) and denied is not None
    assert denied.status == 403 and b'"error":"AuthError"' in denied.body and b"read-only" in denied.body
    read = gate.admits(Need(Level.DATABASE, False, "acme", "docs"), [(b"x-chroma-token", b"cha_read")])
    assert isinstance(read, Token) and read.name == "reader"


def test_the_admin_check_takes_the_admin_token_and_admin_scoped_tokens_in_every_form(tmp_path: Path) -> None:
    file = tmp_path / "tokens.toml"
    write_tokens(
        file,
        toml_entry("ops", "cha_ops", ["*"], ["*"], write=False, admin=True),
        toml_entry("app", "cha_app", ["*"], ["*"], write=True, admin=False),
    )
    gate = Gate(admin_token="adm1n", tokens_file=str(file))
    basic = base64.b64encode(b"anyone:cha_ops")
    for headers in (
        [(b"authorization", b"Bearer adm1n")],
        [(b"x-chroma-ha-token", b"adm1n")],
        [(b"x-chroma-token", b"cha_ops")],
        [(b"authorization", b"Bearer cha_ops")],
        [(b"authorization", b"Basic " + basic)],
        [(b"authorization", b"Bearer wrong"), (b"x-chroma-ha-token", b"adm1n")],
    ):
        assert gate.is_admin(headers), headers
    assert gate.is_admin([(b"authorization", b"Bearer adm1n")], write=True)  # the admin token may reset
    assert not gate.is_admin([(b"authorization", b"Bearer cha_ops")], write=True)  # a read-only admin may not
    for headers in (
        [],
        [(b"authorization", b"Bearer cha_app")],
        [(b"authorization", b"Basic !!notbase64")],
        [(b"authorization", b"Bearer " + b"adm1n" * 300)],
    ):
        assert not gate.is_admin(headers), headers
    # the admin token is a data-path token too: it may already reset everything
    admin = gate.admits(Need(Level.DATABASE, True, "acme", "docs"), [(b"authorization", b"Bearer adm1n")])
    assert isinstance(admin, Token) and admin.name == "admin" and admin.admin


def test_an_admin_token_alone_guards_the_admin_routes_but_leaves_the_data_path_open() -> None:
    gate = Gate(admin_token="adm1n")
    assert gate.guards_admin and not gate.enabled
    assert gate.admits(Need(Level.DATABASE, True, "acme", "docs"), []) is None


def test_reload_takes_a_rewritten_file_and_keeps_the_old_tokens_when_the_new_file_is_bad(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "tokens.toml"
    write_tokens(file, toml_entry("old", "cha_old", ["*"], ["*"], write=True, admin=False))
    gate = Gate(tokens_file=str(file))
    read = Need(Level.DATABASE, False, "acme", "docs")
    assert isinstance(gate.admits(read, [(b"x-chroma-token", b"cha_old")]), Token)

    write_tokens(file, toml_entry("new", "cha_new", ["*"], ["*"], write=True, admin=False))
    assert gate.reload()
    assert not isinstance(gate.admits(read, [(b"x-chroma-token", b"cha_old")]), Token)
    assert isinstance(gate.admits(read, [(b"x-chroma-token", b"cha_new")]), Token)

    file.write_text('[[token]]\nname = "broken"\n', encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="chroma_ha.gateway.auth"):
        assert not gate.reload()
    assert isinstance(gate.admits(read, [(b"x-chroma-token", b"cha_new")]), Token)
    assert any("not reloaded, the previous tokens stay in force" in r.getMessage() for r in caplog.records)
    assert any("token 1 ('broken'): 'sha256'" in r.getMessage() for r in caplog.records)

    file.unlink()
    assert not gate.reload()
    assert isinstance(gate.admits(read, [(b"x-chroma-token", b"cha_new")]), Token)

    file.write_text("", encoding="utf-8")  # an empty file: auth stays on, and no token is known
    assert gate.reload() and gate.enabled
    assert not isinstance(gate.admits(read, [(b"x-chroma-token", b"cha_new")]), Token)


def test_a_bad_file_at_start_is_a_settings_error_naming_the_file_and_the_entry(tmp_path: Path) -> None:
    file = tmp_path / "tokens.toml"
    file.write_text('[[token]]\nname = "x"\nsha256 = "00"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match=r"auth_tokens_file: .*tokens.toml: token 1 \('x'\): 'sha256'"):
        Gate(tokens_file=str(file))
    with pytest.raises(SettingsError, match=r"auth_tokens_file: .*missing.toml: cannot read"):
        Gate(tokens_file=str(tmp_path / "missing.toml"))
    write_tokens(file, toml_entry("admin", "cha_x", ["*"], ["*"], write=True, admin=False))
    with pytest.raises(SettingsError, match="the name 'admin' is taken"):
        Gate(admin_token="adm1n", tokens_file=str(file))
