"""Data-path tokens: what each one may do, read from a TOML file or a setting, and how a presented one is matched.

Invariant: the gateway never holds a client's token in plain text, only its SHA-256. A plain hash (no salt, no
slow key derivation) is the right tool here because every token is minted by `chroma-ha token new` as 256 random
bits: nobody can guess one from its hash, so the cost a slow hash adds to a password guess buys nothing, while it
would cost every request milliseconds. A presented token is hashed once and compared with every known hash in
constant time (`hmac.compare_digest`, without stopping at the first match), so the time an answer takes says
nothing of how close a guess came to any hash.

The file holds one `[[token]]` table per token:

    [[token]]
    name = "ingest"                      # who wrote an entry, in the log and in `auth/identity`
    sha256 = "9f86d08..."                # hex SHA-256 of the token
    tenants = ["acme"]                   # "*" for every tenant (the default)
    databases = ["*"]                    # within those tenants; "*" for every database (the default)
    access = "write"                     # "read" (the default) or "write"
    admin = false                        # the admin routes and reset (the default false)

Every mistake is named with the entry it is in (`token 2 ('ingest'): ...`): a typo must never widen a scope, so
unknown keys are refused too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALL = "*"
READ = "read"
WRITE = "write"
TOKEN_PREFIX = "cha_"
TOKEN_BYTES = 32  # 256 random bits
# What Chroma's own client accepts in a token (ASCII letters, digits and punctuation); anything else is no token.
_TOKEN_TEXT = re.compile(r"[!-~]+")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")
_KEYS = {"name", "sha256", "tenants", "databases", "access", "admin"}


class TokenFileError(ValueError):
    """A token file or setting that cannot be taken; the message names the entry and what is wrong with it."""


@dataclass(frozen=True)
class Token:
    """One token's name and scope; `digest` is the SHA-256 of the token itself."""

    name: str
    digest: bytes
    tenants: frozenset[str] = frozenset({ALL})
    databases: frozenset[str] = frozenset({ALL})
    write: bool = False
    admin: bool = False

    def covers_tenant(self, tenant: str) -> bool:
        return ALL in self.tenants or tenant in self.tenants

    def covers_database(self, tenant: str, database: str) -> bool:
        return self.covers_tenant(tenant) and (ALL in self.databases or database in self.databases)

    @property
    def whole_tenants(self) -> bool:
        """Every database of its tenants: what creating, changing or deleting a tenant or a database needs."""
        return ALL in self.databases


def digest_of(token: str | bytes) -> bytes:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


def is_token_text(token: bytes) -> bool:
    return _TOKEN_TEXT.fullmatch(token.decode("latin-1")) is not None


class TokenBook:
    """The tokens in force; `find` matches a presented one in constant time over all of them."""

    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens = tuple(tokens)

    def find(self, presented: bytes) -> Token | None:
        digest = digest_of(presented)
        found = None
        for token in self.tokens:  # no early exit: the time taken does not depend on which hash matched
            if hmac.compare_digest(token.digest, digest):
                found = token
        return found

    def __len__(self) -> int:
        return len(self.tokens)


def mint() -> str:
    """A new token: a recognisable prefix (so secret scanners can find leaked ones) and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def toml_entry(
    name: str, token: str, tenants: Iterable[str], databases: Iterable[str], *, write: bool, admin: bool
) -> str:
    """The `[[token]]` table that grants `token` this scope, holding its hash only."""
    lines = [
        "[[token]]",
        f"name = {_toml_string(name)}",
        f'sha256 = "{digest_of(token).hex()}"',
        f"tenants = [{', '.join(_toml_string(t) for t in tenants)}]",
        f"databases = [{', '.join(_toml_string(d) for d in databases)}]",
        f'access = "{WRITE if write else READ}"',
        f"admin = {'true' if admin else 'false'}",
    ]
    return "\n".join(lines) + "\n"


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_token_file(text: str) -> tuple[Token, ...]:
    """The tokens of a TOML file's `[[token]]` tables; TokenFileError naming the first bad entry."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TokenFileError(f"not valid TOML: {exc}") from None
    unknown = set(document) - {"token"}
    if unknown:
        raise TokenFileError(f"unknown top-level key(s) {sorted(unknown)}: expected only [[token]] tables")
    entries = document.get("token", [])
    if not isinstance(entries, list):
        raise TokenFileError("'token' must be an array of tables: write each entry as [[token]]")
    return _checked([_token(n, entry) for n, entry in enumerate(entries, 1)])


def load_token_file(path: str) -> tuple[Token, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_token_file(text)


def parse_token_setting(entries: Sequence[str]) -> tuple[Token, ...]:
    """Tokens of the `auth_tokens` setting: `name:sha256hex` each, read-write on every tenant and database."""
    tokens = []
    for n, entry in enumerate(entries, 1):
        name, sep, digest = entry.strip().partition(":")
        if not sep:
            raise TokenFileError(f"token {n}: expected name:sha256, got no ':'")
        tokens.append(_token(n, {"name": name, "sha256": digest, "access": WRITE}))
    return _checked(tokens)


def _token(n: int, entry: Any) -> Token:
    if not isinstance(entry, dict):
        raise TokenFileError(f"token {n}: expected a table of name, sha256, tenants, databases, access, admin")
    name = entry.get("name")
    where = f"token {n} ({name!r})" if isinstance(name, str) else f"token {n}"
    unknown = set(entry) - _KEYS
    if unknown:
        raise TokenFileError(f"{where}: unknown key(s) {sorted(unknown)}; the keys are {', '.join(sorted(_KEYS))}")
    if isinstance(name, str) and name.startswith(TOKEN_PREFIX) and len(name) > len(TOKEN_PREFIX) + 20:
        # a token pasted where its name goes would be shown in logs and /status: refused, and not repeated
        raise TokenFileError(f"token {n}: 'name' looks like a token itself; give the token's hash, never the token")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TokenFileError(f"{where}: 'name' must be 1-100 letters, digits or _.@- (starting with a letter or digit)")
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not _HEX_SHA256.fullmatch(digest.lower()):
        raise TokenFileError(f"{where}: 'sha256' must be the 64 hex digits of the token's SHA-256")
    access = entry.get("access", READ)
    if access not in (READ, WRITE):
        raise TokenFileError(f'{where}: \'access\' must be "read" or "write", got {access!r}')
    admin = entry.get("admin", False)
    if not isinstance(admin, bool):
        raise TokenFileError(f"{where}: 'admin' must be true or false")
    return Token(
        name=name,
        digest=bytes.fromhex(digest),
        tenants=_names(where, "tenants", entry.get("tenants", [ALL])),
        databases=_names(where, "databases", entry.get("databases", [ALL])),
        write=access == WRITE,
        admin=admin,
    )


def _names(where: str, key: str, value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise TokenFileError(f"{where}: '{key}' must be a non-empty list of names, or [\"*\"] for all")
    return frozenset(value)


def _checked(tokens: list[Token]) -> tuple[Token, ...]:
    names: set[str] = set()
    digests: set[bytes] = set()
    for n, token in enumerate(tokens, 1):
        if token.name in names:
            raise TokenFileError(f"token {n} ({token.name!r}): the name is used by an earlier token")
        if token.digest in digests:
            raise TokenFileError(f"token {n} ({token.name!r}): the same sha256 as an earlier token")
        names.add(token.name)
        digests.add(token.digest)
    return tuple(tokens)
