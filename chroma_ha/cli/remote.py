"""What `status`, `wal` and `bootstrap` share: the admin API of a running gateway over HTTP, and their options.

A gateway that cannot be reached, or answers an error, stops the command with the gateway's own message and exit
status 1; bad options are usage errors (exit 2).
"""

from __future__ import annotations

import functools
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import click
import orjson

from ..errors import SettingsError
from ..settings import Settings

F = Callable[..., Any]
DEFAULT_URL = "http://127.0.0.1:8000"


class Remote:
    def __init__(self, url: str, admin_token: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise click.BadParameter(f"{url!r} is not an http:// or https:// URL", param_hint="--url")
        self.url = url.rstrip("/")
        self._token = admin_token
        self._timeout = timeout

    def call(self, method: str, path: str, body: Any = None, **query: Any) -> tuple[int, Any]:
        """(HTTP status, the JSON document answered); an error status is an answer too."""
        given = {k: v for k, v in query.items() if v is not None and v is not False}
        target = self.url + path + (f"?{urlencode(given)}" if given else "")
        data = orjson.dumps(body) if body is not None else None
        request = urllib.request.Request(target, data=data, method=method)
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return response.status, _document(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _document(exc.read())
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise click.ClickException(f"cannot reach the gateway at {self.url}: {reason}") from None

    def get(self, path: str, **query: Any) -> Any:
        return self.expect(200, "GET", path, **query)

    def expect(self, status: int, method: str, path: str, body: Any = None, **query: Any) -> Any:
        got, document = self.call(method, path, body, **query)
        if got != status:
            message = document.get("message") if isinstance(document, dict) else None
            raise click.ClickException(f"{method} {path} answered {got}: {message or document}")
        return document


def _document(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return {"message": body[:300].decode(errors="replace")}


def resolve_admin_token(given: str) -> str:
    """The token given, else the gateway's own setting (`CHROMA_HA_ADMIN_TOKEN`), so that it need not be typed
    where `ps` shows it."""
    if given:
        return given
    try:
        return Settings.load().admin.token
    except SettingsError as exc:
        raise click.UsageError(f"bad setting {exc}") from None


def remote_options(fn: F) -> F:
    """--url, --admin-token and --timeout, handed to the command as one `remote`."""

    @click.option("--url", default=DEFAULT_URL, show_default=True, help="The gateway's URL")
    @click.option(
        "--admin-token", default="", help="The admin token, when the gateway has one [default: CHROMA_HA_ADMIN_TOKEN]"
    )
    @click.option(
        "--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Seconds per request"
    )
    @functools.wraps(fn)
    def wrapper(url: str, admin_token: str, timeout: float, **kwargs: Any) -> Any:
        return fn(remote=Remote(url, resolve_admin_token(admin_token), timeout), **kwargs)

    return wrapper


def print_json(document: Any) -> None:
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
