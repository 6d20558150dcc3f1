"""The members: which instances this gateway serves, and what each may do now.

The store's list is the truth (seeded from the `instances` setting the first time, then changed only through the
admin API); `Members` is this gateway's copy of it, replaced whole by the reconciler when the store's version moves,
and read by everything that reports or routes per instance. The decisions on a change are pure functions here.

Invariants: reads go only to `active` members (`serving`); a `joining` one is applied to and probed but serves no
read until its cursor has caught up; a `draining` one serves no new read and has no applier; the last active member
is never removed; a URL is kept bare: a credential in it is refused, never stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import MembershipRefused
from ..redaction import url_redacted
from ..store import Member, Roster
from ..store.base import ACTIVE, DRAINING, JOINING

__all__ = ["ACTIVE", "DRAINING", "JOINING", "Members", "SeedDifference", "check_add", "check_remove", "checked_url"]


def checked_url(url: object) -> str:
    """The URL an instance is known by (no trailing slash), or MembershipRefused("invalid") saying why not."""
    if not isinstance(url, str) or not url.strip():
        raise MembershipRefused("invalid", "url is required: the instance's http:// or https:// URL")
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise MembershipRefused("invalid", f"not a URL: {url_redacted(url)!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MembershipRefused("invalid", f"not an http(s) URL: {url_redacted(url)!r}")
    if "@" in parts.netloc:
        raise MembershipRefused(
            "invalid",
            f"{url_redacted(url)}: an instance URL added at run time may not carry credentials (they would be "
            "kept in the store); give the instance's credentials with the instance_headers setting",
        )
    if parts.query or parts.fragment:
        raise MembershipRefused("invalid", f"{url!r}: an instance URL has no query or fragment")
    return url.strip().rstrip("/")


def check_add(roster: Roster, url: str) -> None:
    if url in roster.urls:
        state = next(m.state for m in roster.members if m.url == url)
        raise MembershipRefused("duplicate", f"{url} is already an instance ({state})")


def check_remove(roster: Roster, url: str) -> Member:
    """The member to remove; refused when it is unknown or the last active one (reads need one)."""
    member = next((m for m in roster.members if m.url == url), None)
    if member is None:
        known = ", ".join(roster.urls) or "none"
        raise MembershipRefused("unknown", f"{url} is not one of the instances: {known}")
    others = [m for m in roster.members if m.state == ACTIVE and m.url != url]
    if member.state == ACTIVE and not others:
        raise MembershipRefused(
            "last_active", f"{url} is the last active instance: add another and wait until it is active first"
        )
    return member


@dataclass(frozen=True)
class SeedDifference:
    """How the `instances` setting differs from the store's list, which wins once it exists."""

    only_configured: tuple[str, ...]  # configured but not members: not added back
    only_stored: tuple[str, ...]  # members that are not configured: still served

    def __bool__(self) -> bool:
        return bool(self.only_configured or self.only_stored)


def seed_difference(configured: Sequence[str], roster: Roster) -> SeedDifference:
    stored = set(roster.urls)
    return SeedDifference(
        tuple(u for u in configured if u not in stored), tuple(u for u in roster.urls if u not in set(configured))
    )


def caught_up(cursor: int, head_then: int | None) -> bool:
    """A joining member may serve once its cursor has reached the head seen one look earlier: it is then as far as
    a member that applies as fast as writes come (reads still ask each instance for the writes they depend on)."""
    return head_then is not None and cursor >= head_then


class Members:
    """This gateway's copy of the store's list; only the reconciler replaces it (`update`)."""

    def __init__(self, roster: Roster) -> None:
        self.update(roster)

    def update(self, roster: Roster) -> None:
        self.roster = roster
        self.serving: frozenset[str] = frozenset(m.url for m in roster.members if m.state == ACTIVE)
        self._states = {m.url: m.state for m in roster.members}

    @property
    def version(self) -> int:
        return self.roster.version

    @property
    def urls(self) -> tuple[str, ...]:
        return self.roster.urls

    def state(self, url: str) -> str | None:
        return self._states.get(url)

    def applied_to(self) -> tuple[str, ...]:
        """The members that have an applier: every one but the draining."""
        return tuple(m.url for m in self.roster.members if m.state != DRAINING)
