"""What a valid value of a setting is, and how a secret one is shown: small pure functions the groups name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..redaction import DSN, SECRET, Redaction, dsn_redacted, url_redacted

Rule = Callable[[Any], "str | None"]  # what is wrong with a value, or None when nothing is


# --- rules ------------------------------------------------------------------------------------------------------


def positive(value: float) -> str | None:
    return None if value > 0 else f"must be positive, got {value}"


def not_negative(value: float) -> str | None:
    return None if value >= 0 else "must not be negative"


def at_least_one(value: int) -> str | None:
    return None if value >= 1 else f"must be at least 1, got {value}"


def percentage(value: float) -> str | None:
    return None if 0 < value <= 100 else f"expected a percentage in (0, 100], got {value}"


def fraction(value: float) -> str | None:
    return None if 0 < value <= 1 else f"expected a fraction in (0, 1], got {value}"


def port_number(value: int) -> str | None:
    return None if 0 < value < 65536 else f"expected 1-65535, got {value}"


def not_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def store_url(value: str) -> str | None:
    if value.startswith(("sqlite:///", "postgresql://", "postgres://")):
        return None
    return f"expected sqlite:///path.db or postgresql://..., got {dsn_redacted(value)!r}"


def instance_urls(urls: tuple[str, ...]) -> str | None:
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return f"not an http(s) URL: {url_redacted(url)!r}"
    return "the same instance is listed twice" if len(set(urls)) != len(urls) else None


def webhook_url(url: str) -> str | None:
    """Empty (no webhook) or an http(s) URL; a webhook is a secret, so the message never repeats it."""
    return None if not url or urlsplit(url).scheme in ("http", "https") else "not an http(s) URL"


def positive_weights(weights: tuple[float, ...]) -> str | None:
    return None if all(w > 0 for w in weights) else "weights must be positive"


@dataclass(frozen=True)
class OneOf:
    """A rule: the value is one of `choices` (the flags offer them as a choice)."""

    choices: tuple[str, ...]

    def __call__(self, value: str) -> str | None:
        return None if value in self.choices else f"expected one of {', '.join(self.choices)}, got {value!r}"


# --- redaction (chroma_ha.redaction): how a secret setting is shown, and which of its parts are secret ------------

hidden: Redaction = SECRET
password_hidden: Redaction = DSN
