"""Secrets never shown: how a DSN, a URL with userinfo, a webhook, a header or a token is printed, and a scrubber
that takes every known secret out of any text (a log line, an error, a traceback) before it leaves the process.

Invariant: every place that prints a URL or a DSN prints it through one of these functions, and every text that
leaves the gateway by a path that cannot be made structured (a driver's error message, a traceback) goes through a
`Scrubber` that knows the secrets in force. The functions are pure and never raise on malformed input: a value that
cannot be parsed is shown as `***` rather than risk showing it whole.

Two defences, on purpose: the structural one (a password field, userinfo, a webhook's path) works for values the
gateway was never told were secret; the known-value one (the `Scrubber`) catches a secret wherever a library or a
message put it, in whatever shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

HIDDEN = "***"
# Shorter secrets are not scrubbed from free text: a password of two letters would blank every word holding them,
# and a value that short protects nothing anyway.
MIN_SCRUBBED_CHARS = 4

# The fields of a libpq connection string or URI query whose value is a secret.
_SECRET_KEYS = "password|sslpassword"
# key=value conninfo: the value is a word, or a single-quoted string with \' and \\ escapes.
_CONNINFO_SECRET = re.compile(rf"(?i)(?<![\w.?&])({_SECRET_KEYS})(\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s']*)")
# ?password=... / &password=... in a URI query; the value ends at & or #, or at whitespace in free text.
_QUERY_SECRET = re.compile(rf"(?i)([?&](?:{_SECRET_KEYS})=)([^&#\s]*)")
# scheme://userinfo@ in free text: userinfo is everything between :// and the last @ before the host part ends.
# A header setting: an optional `key=` (an instance URL or index), an RFC 9110 token, a colon, the value.
_HEADER_ITEM = re.compile(r"^(?:(?P<key>[^=\s]+)=)?(?P<name>[!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*:(?P<value>.*)$", re.S)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s/?#@:]*:[^\s/?#]*|[^\s/?#@]*)@")


# --- how a value is shown ------------------------------------------------------------------------------------------


def hidden(value: str) -> str:
    """A secret shown as `***` (empty stays empty: "not set" is worth showing)."""
    return HIDDEN if value else value


def url_redacted(url: str) -> str:
    """A URL with its userinfo (user and password) replaced by `***`; the rest (host, port, path) as given."""
    return _USERINFO.sub(lambda m: f"{m[1]}{HIDDEN}@", url)


def url_without_userinfo(url: str) -> str:
    """The URL with no userinfo at all: what an instance is known by in logs, the store and every answer."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    return f"{scheme}://{netloc.rpartition('@')[2]}{tail}"


def userinfo(url: str) -> tuple[str, str] | None:
    """The (user, password) a URL carries, percent-decoded; None when it carries none."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if "@" not in parts.netloc:
        return None
    user, _, password = parts.netloc.rpartition("@")[0].partition(":")
    return unquote(user), unquote(password)


def dsn_redacted(dsn: str) -> str:
    """A store DSN with its password hidden, in each form libpq reads: `scheme://user:pw@host/db`, a
    `?password=pw` query parameter, and key=value `password=pw` (quoted or not). Everything else is kept, so the
    store is still named (host, port, database, user)."""
    shown = _QUERY_SECRET.sub(lambda m: f"{m[1]}{HIDDEN}", dsn)
    shown = _CONNINFO_SECRET.sub(lambda m: f"{m[1]}{m[2]}{HIDDEN}", shown) if "://" not in dsn else shown
    return _USERINFO.sub(_user_kept, shown)


def _user_kept(match: re.Match[str]) -> str:
    user, colon, _ = match[2].partition(":")
    return f"{match[1]}{user}:{HIDDEN}@" if colon else match[0]


def webhook_shown(url: str) -> str:
    """A webhook URL shown by its host only: its path (Slack's) or query usually is the credential."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return HIDDEN
    if not host:
        return HIDDEN
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}/{HIDDEN}"


def header_item(item: str) -> tuple[str | None, str, str] | None:
    """A header setting read as (key, name, value): `Name: value` (key None: every instance) or `key=Name: value`
    (key: an instance's URL or index); None when it is neither."""
    match = _HEADER_ITEM.match(item)
    if match is None:
        return None
    return match["key"], match["name"], match["value"].strip()


def header_redacted(item: str) -> str:
    """A header setting (`Name: value`, or `key=Name: value`) with its value hidden and its name kept."""
    parsed = header_item(item)
    if parsed is None:
        return HIDDEN
    key, name, _ = parsed
    return f"{url_redacted(key)}={name}: {HIDDEN}" if key else f"{name}: {HIDDEN}"


# --- what each secret setting holds ---------------------------------------------------------------------------------


def dsn_secrets(dsn: str) -> list[str]:
    """The secret values a DSN holds (its password, in whichever form), for a `Scrubber`."""
    found = [m[2] for m in _QUERY_SECRET.finditer(dsn)]
    if "://" not in dsn:
        found.extend(_unquoted_conninfo(m[3]) for m in _CONNINFO_SECRET.finditer(dsn))
    credentials = userinfo(dsn) if "://" in dsn else None
    if credentials is not None and credentials[1]:
        found.append(credentials[1])
    return [unquote(s) for s in found if s]


def _unquoted_conninfo(value: str) -> str:
    if value.startswith("'"):
        return re.sub(r"\\(.)", r"\1", value[1:].removesuffix("'"))
    return value


def webhook_secrets(url: str) -> list[str]:
    """What of a webhook URL is secret: all of it, and its path and query (Slack's token is the path)."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    tail = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
    return [url, *([tail] if tail else []), *([parts.query] if parts.query else [])]


def header_value(item: str) -> str:
    """The value of a `Name: value` (or `key=Name: value`) header setting; all of it when it is neither."""
    parsed = header_item(item)
    return item if parsed is None else parsed[2]


def url_secrets(url: str) -> list[str]:
    credentials = userinfo(url)
    if credentials is None:
        return []
    user, password = credentials
    return [password] if password else [user]


@dataclass(frozen=True)
class Redaction:
    """How one secret setting is shown (`shown`, also when it is called) and which of its parts are the secret
    values a `Scrubber` must find anywhere (`secrets`)."""

    shown: Callable[[Any], Any]
    secrets: Callable[[Any], Iterable[str]]

    def __call__(self, value: Any) -> Any:
        return self.shown(value)


def _each(fn: Callable[[str], Any]) -> Callable[[Any], Any]:
    """`fn` over one text, or over each item of a tuple of them."""

    def over(value: Any) -> Any:
        return tuple(fn(v) for v in value) if isinstance(value, tuple) else fn(value)

    return over


def _all_of(fn: Callable[[str], Iterable[str]]) -> Callable[[Any], list[str]]:
    def over(value: Any) -> list[str]:
        values = value if isinstance(value, tuple) else (value,)
        return [s for v in values if v for s in fn(v)]

    return over


SECRET = Redaction(_each(hidden), _all_of(lambda v: [v]))
DSN = Redaction(_each(dsn_redacted), _all_of(dsn_secrets))
WEBHOOK = Redaction(_each(webhook_shown), _all_of(webhook_secrets))
HEADERS = Redaction(_each(header_redacted), _all_of(lambda v: [header_value(v)]))
URLS = Redaction(_each(url_redacted), _all_of(url_secrets))


# --- scrubbing free text --------------------------------------------------------------------------------------------


class Scrubber:
    """Takes every known secret (and its percent-encoded form) out of a text, and hides what looks like a password
    or userinfo in any URL or conninfo it holds; secrets are replaced longest first, so one that contains another
    is never left half shown."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known: set[str] = set()
        for secret in secrets:
            for form in (secret, quote(secret, safe=""), quote(secret, safe="/:")):
                if len(form) >= MIN_SCRUBBED_CHARS:
                    known.add(form)
        ordered = sorted(known, key=len, reverse=True)
        self._known = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None

    def __call__(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(HIDDEN, text)
        text = _QUERY_SECRET.sub(lambda m: f"{m[1]}{HIDDEN}", text)
        text = _CONNINFO_SECRET.sub(lambda m: f"{m[1]}{m[2]}{HIDDEN}", text)
        return _USERINFO.sub(_user_kept, text)


NO_SECRETS = Scrubber()
