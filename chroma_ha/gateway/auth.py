"""Who may do what on the data path, and who is an admin: one gate that both the API and the admin routes ask.

Invariants:
- With no tokens configured (no `auth_tokens_file`, no `auth_tokens`), the data path is open, as a Chroma server
  without auth is; with any configured, every route but the open ones (heartbeat, version, healthcheck,
  pre-flight checks) needs a known token, and an unknown, missing or malformed one is a 401, never a 500.
- What a route needs (`need_of`) and whether a token has it (`refusal`) are pure functions of the request and the
  token; the `Gate` only finds the token and holds the book, which a reload swaps whole or not at all.
- Answers follow Chroma's conventions, so the official client raises what it would against an authenticating
  Chroma: 401 `AuthorizationError` (chromadb.errors.AuthorizationError), 403 `AuthError` (ChromaAuthError).
- The `admin_token` setting is a token too: named "admin", every tenant and database, read-write and admin. It
  may already reset everything, so reading and writing adds nothing to what it can do.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from urllib.parse import unquote

import orjson

from ..errors import SettingsError
from .http_server import HttpResponse
from .routes import Kind, Route
from .tokens import ALL, Token, TokenBook, TokenFileError, digest_of, is_token_text, load_token_file

log = logging.getLogger(__name__)

HeaderPairs = Sequence[tuple[bytes, bytes]]
ADMIN_NAME = "admin"
ADMIN_HEADER = b"x-chroma-ha-token"  # the admin routes' own header, beside Authorization
MAX_TOKEN_BYTES = 1024  # minted tokens are 47 characters; a longer credential is refused before it is hashed
OPEN_OPS = frozenset({"heartbeat", "version", "healthcheck", "pre_flight_checks"})
_CHALLENGE = (b"www-authenticate", b'Bearer realm="chroma-ha"')


class Level(Enum):
    OPEN = "open"  # no token needed
    ANY = "any"  # any known token (identity, a route the gateway refuses anyway)
    TENANT = "tenant"  # the tenant, and with `whole` every database of it
    DATABASE = "database"  # the tenant and the database
    ADMIN = "admin"  # an admin token (reset)


@dataclass(frozen=True)
class Need:
    level: Level
    write: bool = False
    tenant: str | None = None  # None with TENANT or DATABASE: only a token for every tenant will do
    database: str | None = None
    whole: bool = False  # TENANT: every database of the tenant (creating, changing, deleting tenants and databases)


_WHOLE_TENANT_OPS = frozenset(
    {"create_tenant", "update_tenant", "list_databases", "create_database", "delete_database"}
)


def need_of(route: Route, path: str, created: str | None = None) -> Need:
    """What `route` needs of a token. `created`: the name in the body of a create_tenant (the tenant it creates)."""
    if route.kind is Kind.LOCAL:
        return Need(Level.OPEN) if route.op in OPEN_OPS else Need(Level.ANY)
    if route.kind in (Kind.UNKNOWN, Kind.RESERVED):
        return Need(Level.ANY)  # answered by the gateway with no data; refused to every token alike
    write = route.kind is not Kind.READ
    if route.op == "reset":
        return Need(Level.ADMIN, write=True)
    if route.op == "create_tenant":
        return Need(Level.TENANT, write=True, tenant=created, whole=True)
    if route.op == "get_collection_by_crn":
        parts = unquote(path.rpartition("/")[2]).split(":")  # tenant:database:collection
        if len(parts) != 3:
            return Need(Level.DATABASE, write)  # no tenant to check: only a token for every tenant will do
        return Need(Level.DATABASE, write, parts[0], parts[1])
    if route.database is None:
        return Need(Level.TENANT, write, route.tenant, whole=route.op in _WHOLE_TENANT_OPS)
    if route.op in _WHOLE_TENANT_OPS:
        return Need(Level.TENANT, write, route.tenant, whole=True)
    return Need(Level.DATABASE, write, route.tenant, route.database)


def refusal(need: Need, token: Token) -> str | None:
    """Why `token` may not do what `need` says (a 403's message), or None when it may."""
    if need.level in (Level.OPEN, Level.ANY):
        return None
    if need.level is Level.ADMIN and not token.admin:
        return f"token '{token.name}' is not an admin token"
    if need.write and not token.write:
        return f"token '{token.name}' is read-only"
    if need.level is Level.ADMIN:
        return None
    tenant = need.tenant
    if not token.covers_tenant(ALL if tenant is None else tenant):
        what = f"tenant '{tenant}'" if tenant is not None else "a tenant it does not name"
        return f"token '{token.name}' may not use {what}"
    if need.level is Level.TENANT:
        if need.whole and not token.whole_tenants:
            return f"token '{token.name}' is limited to some databases of tenant '{tenant}'"
        return None
    database = need.database
    if not token.covers_database(ALL if tenant is None else tenant, ALL if database is None else database):
        return f"token '{token.name}' may not use database '{database}' of tenant '{tenant}'"
    return None


def identity(token: Token) -> dict[str, object]:
    """`GET /api/v2/auth/identity` as Chroma answers it: the client takes a single tenant or database as its
    default (with `chroma_overwrite_singleton_tenant_database_access_from_auth`); "*" stands for several."""
    tenants = sorted(token.tenants)
    return {
        "user_id": token.name,
        "tenant": tenants[0] if len(tenants) == 1 else ALL,
        "databases": sorted(token.databases),
        "attributes": {"tenants": tenants, "access": "write" if token.write else "read", "admin": token.admin},
    }


def unauthorized(message: str) -> HttpResponse:
    body = orjson.dumps({"error": "AuthorizationError", "message": message})
    return HttpResponse(401, body, [(b"content-type", b"application/json"), _CHALLENGE])


def forbidden(message: str) -> HttpResponse:
    return HttpResponse.error(403, "AuthError", f"Forbidden: {message}")


def presented(headers: HeaderPairs) -> bytes | str:
    """The one token a data request carries, from `Authorization: Bearer` or `X-Chroma-Token`; else why not
    (a 401's message)."""
    found = [(k, v) for k, v in headers if k in (b"authorization", b"x-chroma-token")]
    if not found:
        return "no token: send Authorization: Bearer <token> or X-Chroma-Token: <token>"
    if len(found) > 1:
        return "more than one Authorization or X-Chroma-Token header: send one token"
    name, value = found[0]
    value = value.strip()
    if name == b"authorization":
        scheme, _, value = value.partition(b" ")
        if scheme.lower() != b"bearer":
            return "the Authorization header must be Bearer <token>"
        value = value.strip()
    if not value:
        return "the token is empty"
    if len(value) > MAX_TOKEN_BYTES:
        return f"the token is longer than {MAX_TOKEN_BYTES} bytes: not a token of this gateway"
    if not is_token_text(value):
        return "a token is ASCII letters, digits and punctuation only"
    return value


def admin_candidates(headers: HeaderPairs) -> list[bytes]:
    """Every credential an admin request may carry: `X-Chroma-HA-Token`, `Authorization: Bearer`, `X-Chroma-Token`
    or a Basic password (a browser asks for one)."""
    found = []
    for key, value in headers:
        if key in (ADMIN_HEADER, b"x-chroma-token"):
            found.append(value.strip())
        elif key == b"authorization":
            scheme, _, rest = value.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                found.append(rest.strip())
            elif scheme.lower() == b"basic":
                with contextlib.suppress(binascii.Error, ValueError):
                    found.append(base64.b64decode(rest.strip(), validate=True).partition(b":")[2])
    return [t for t in found if t and len(t) <= MAX_TOKEN_BYTES]


class Gate:
    """The tokens in force: from the file (reloaded by `reload`), the setting, and the admin token."""

    def __init__(self, *, admin_token: str = "", tokens_file: str = "", tokens: Sequence[Token] = ()) -> None:
        """A token file that cannot be read or parsed raises SettingsError naming it: the gateway refuses to
        start rather than run with tokens other than the operator wrote."""
        self._file = tokens_file
        self._fixed = tuple(tokens)
        self.enabled = bool(tokens_file or tokens)
        self._admin = Token(ADMIN_NAME, digest_of(admin_token), write=True, admin=True) if admin_token else None
        try:
            self._book = self._build(load_token_file(tokens_file) if tokens_file else ())
        except TokenFileError as exc:
            raise SettingsError("auth_tokens_file", f"{tokens_file}: {exc}") from None

    def _build(self, from_file: Sequence[Token]) -> TokenBook:
        names = {t.name for t in self._fixed}
        clash = next((t.name for t in from_file if t.name in names or t.name == ADMIN_NAME), None)
        if clash is not None:
            raise TokenFileError(f"the name {clash!r} is taken by the auth_tokens setting or the admin token")
        admin = (self._admin,) if self._admin is not None else ()
        return TokenBook([*admin, *self._fixed, *from_file])

    def reload(self) -> bool:
        """Read the token file again; a file that cannot be taken leaves the tokens in force and is logged."""
        if not self._file:
            return False
        try:
            book = self._build(load_token_file(self._file))
        except TokenFileError as exc:
            log.error("token file %s not reloaded, the previous tokens stay in force: %s", self._file, exc)
            return False
        self._book = book
        log.info("token file %s reloaded: %d tokens", self._file, len(book))
        return True

    @property
    def guards_admin(self) -> bool:
        """Do the admin routes need an admin credential? Yes once any credential exists."""
        return self.enabled or self._admin is not None

    def token(self, headers: HeaderPairs) -> Token | HttpResponse:
        """The token of a data request, or the 401 that answers it."""
        value = presented(headers)
        if isinstance(value, str):
            return unauthorized(value)
        found = self._book.find(value)
        return found if found is not None else unauthorized("the token is not known to this gateway")

    def is_admin(self, headers: HeaderPairs, *, write: bool = False) -> bool:
        """Does the request carry an admin credential: the admin token or a token with admin scope (and with
        `write`, read-write too: a read-only admin token, for a dashboard, never resets anything)?"""
        for candidate in admin_candidates(headers):
            found = self._book.find(candidate)
            if found is not None and found.admin and (found.write or not write):
                return True
        return False

    def admits(self, need: Need, headers: HeaderPairs) -> Token | HttpResponse | None:
        """The token a request is made with, the 401 or 403 that answers it instead, or None when auth is off
        (anyone may)."""
        if not self.enabled or need.level is Level.OPEN:
            return None
        token = self.token(headers)
        if isinstance(token, HttpResponse):
            return token
        why = refusal(need, token)
        return forbidden(why) if why is not None else token
