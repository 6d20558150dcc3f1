"""The membership decisions, pure: which URLs may be added, which members removed, how the setting and the store's
list differ, when a joining member has caught up, and what this gateway's copy of the list says."""

from __future__ import annotations

import pytest

from chroma_ha.cluster.membership import (
    ACTIVE,
    DRAINING,
    JOINING,
    Members,
    caught_up,
    check_add,
    check_remove,
    checked_url,
    seed_difference,
)
from chroma_ha.errors import MembershipRefused
from chroma_ha.store import Member, Roster

A, B, C = "http://a:8000", "http://b:8000", "http://c:8000"


def roster(*members: tuple[str, str], version: int = 3) -> Roster:
    return Roster(version, tuple(Member(url, state, 0.0) for url, state in members))


def reason(fn: object, *args: object) -> str:
    with pytest.raises(MembershipRefused) as refused:
        fn(*args)  # type: ignore[operator]
    return refused.value.reason


def test_a_url_is_known_without_its_trailing_slash() -> None:
    assert checked_url("http://a:8000/") == A
    assert checked_url(" https://chroma.internal ") == "https://chroma.internal"
    assert checked_url("http://a:8000/prefix") == "http://a:8000/prefix"


@pytest.mark.parametrize(
    "given",
    [
        "",
        "   ",
        None,
        12,
        ["http://a"],
        "a:8000",
        "ftp://a:8000",
        "http://",
        "http://a:port",
        "http://a/?x=1",
        "http://a/#f",
    ],
)
def test_what_is_not_an_http_url_is_invalid(given: object) -> None:
    assert reason(checked_url, given) == "invalid"


def test_a_url_with_credentials_is_refused_and_the_message_does_not_repeat_the_password() -> None:
    with pytest.raises(MembershipRefused) as refused:
        checked_url("http://admin:s3cret@a:8000")
    assert refused.value.reason == "invalid"
    assert "s3cret" not in refused.value.message
    assert "instance_headers" in refused.value.message


def test_adding_a_member_twice_is_a_duplicate_whatever_its_state() -> None:
    current = roster((A, ACTIVE), (B, JOINING), (C, DRAINING))
    for url in (A, B, C):
        assert reason(check_add, current, url) == "duplicate"
    check_add(current, "http://d:8000")


def test_removing_an_unknown_instance_is_refused() -> None:
    assert reason(check_remove, roster((A, ACTIVE)), B) == "unknown"


def test_the_last_active_member_is_not_removed_even_beside_joining_or_draining_ones() -> None:
    assert reason(check_remove, roster((A, ACTIVE)), A) == "last_active"
    assert reason(check_remove, roster((A, ACTIVE), (B, JOINING), (C, DRAINING)), A) == "last_active"


def test_a_joining_or_draining_member_may_be_removed_beside_one_active() -> None:
    current = roster((A, ACTIVE), (B, JOINING), (C, DRAINING))
    assert check_remove(current, B).state == JOINING
    assert check_remove(current, C).state == DRAINING
    assert check_remove(roster((A, ACTIVE), (B, ACTIVE)), A).url == A


def test_the_difference_between_the_setting_and_the_store_names_both_sides() -> None:
    difference = seed_difference((A, B), roster((B, ACTIVE), (C, JOINING)))
    assert difference.only_configured == (A,)
    assert difference.only_stored == (C,)
    assert difference
    assert not seed_difference((A, B), roster((A, ACTIVE), (B, ACTIVE)))


def test_a_joining_member_has_caught_up_once_its_cursor_reached_the_head_seen_a_look_earlier() -> None:
    assert not caught_up(100, None)  # no earlier look yet
    assert not caught_up(99, 100)
    assert caught_up(100, 100)
    assert caught_up(150, 100)


def test_members_serve_reads_only_when_active_and_have_appliers_unless_draining() -> None:
    members = Members(roster((A, ACTIVE), (B, JOINING), (C, DRAINING), version=7))
    assert members.version == 7
    assert members.urls == (A, B, C)
    assert members.serving == {A}
    assert members.applied_to() == (A, B)
    assert (members.state(B), members.state("http://d:8000")) == (JOINING, None)
    members.update(roster((A, ACTIVE), (B, ACTIVE), version=8))
    assert members.serving == {A, B}
    assert members.state(C) is None
