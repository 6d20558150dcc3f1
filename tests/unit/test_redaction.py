"""The redaction functions: each form of a DSN's password, userinfo in URLs, webhooks, header settings, and the
scrubber that takes known secrets out of any text."""

from __future__ import annotations

import pytest

from chroma_ha.redaction import (
    DSN,
    HEADERS,
    SECRET,
    URLS,
    WEBHOOK,
    Scrubber,
    dsn_redacted,
    dsn_secrets,
    header_redacted,
    url_redacted,
    url_without_userinfo,
    userinfo,
    webhook_secrets,
    webhook_shown,
)

PW = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (f"postgresql://app:{PW}@db.internal:5432/chroma_ha", "postgresql://app:***@db.internal:5432/chroma_ha"),
        (f"postgres://app:{PW}@db/x?sslmode=require", "postgres://app:***@db/x?sslmode=require"),
        (f"postgresql://app@db/x?password={PW}&sslmode=require", "postgresql://app@db/x?password=***&sslmode=require"),
        (f"postgresql:///x?host=/run/pg&password={PW}", "postgresql:///x?host=/run/pg&password=***"),
        (f"postgresql://app@db/x?sslpassword={PW}", "postgresql://app@db/x?sslpassword=***"),
        (f"host=db user=app password={PW} dbname=x", "host=db user=app password=*** dbname=x"),
        (f"host=db password = {PW} dbname=x", "host=db password = *** dbname=x"),
        ("host=db password='it\\'s a pw' dbname=x", "host=db password=*** dbname=x"),
        (f"host=db PASSWORD={PW}", "host=db PASSWORD=***"),
        # a password holding @ and / as libpq reads it (percent-encoded), and one holding a raw @
        ("postgresql://app:p%40ss%2Fw@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app:p@ss@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app@db/x", "postgresql://app@db/x"),
        ("sqlite:///chroma_ha.db", "sqlite:///chroma_ha.db"),
    ],
)
def test_a_dsn_is_shown_without_its_password_in_every_form(dsn: str, shown: str) -> None:
    assert dsn_redacted(dsn) == shown
    assert DSN(dsn) == shown


def test_the_secrets_of_a_dsn_are_its_password_in_whichever_form() -> None:
    assert dsn_secrets(f"postgresql://app:{PW}@db/x") == [PW]
    assert dsn_secrets("postgresql://app:p%40ss@db/x") == ["p@ss"]
    assert dsn_secrets(f"postgresql://app@db/x?password={PW}") == [PW]
    assert dsn_secrets(f"host=db password={PW}") == [PW]
    assert dsn_secrets("host=db password='a b\\'c'") == ["a b'c"]
    assert dsn_secrets("postgresql://app@db/x") == []


@pytest.mark.parametrize(
    ("url", "shown", "bare"),
    [
        ("http://admin:pw-123@10.0.0.1:8000", "http://***@10.0.0.1:8000", "http://10.0.0.1:8000"),
        ("https://tok-abc@chroma.example/base/", "https://***@chroma.example/base/", "https://chroma.example/base/"),
        ("http://10.0.0.1:8000", "http://10.0.0.1:8000", "http://10.0.0.1:8000"),
        ("http://u:p@ss@h:1/p?q", "http://***@h:1/p?q", "http://h:1/p?q"),
    ],
)
def test_an_instance_url_is_shown_and_known_without_its_userinfo(url: str, shown: str, bare: str) -> None:
    assert url_redacted(url) == shown
    assert URLS((url,)) == (shown,)
    assert url_without_userinfo(url) == bare


def test_userinfo_is_read_percent_decoded() -> None:
    assert userinfo("http://us%20er:p%3Aw@h:1") == ("us er", "p:w")
    assert userinfo("http://tok@h") == ("tok", "")
    assert userinfo("http://h:1") is None
    assert URLS.secrets(("http://u:pw-123@h", "http://tok-abc@h", "http://h")) == ["pw-123", "tok-abc"]


def test_a_webhook_is_shown_by_its_host_only() -> None:
    slack = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"
    assert webhook_shown(slack) == "https://hooks.slack.com/***"
    assert webhook_shown("http://127.0.0.1:9999/hook?key=abc") == "http://127.0.0.1:9999/***"
    assert webhook_shown("") == ""
    assert webhook_shown("not a url") == "***"
    assert WEBHOOK(slack) == "https://hooks.slack.com/***"
    assert webhook_secrets(slack) == [slack, "services/T000/B000/XXXXXXXXXXXXXXXX"]
    assert webhook_secrets("http://h/hook?key=abc") == ["http://h/hook?key=abc", "hook?key=abc", "key=abc"]


def test_a_header_setting_keeps_its_name_and_hides_its_value() -> None:
    assert header_redacted("Authorization: Bearer abc") == "Authorization: ***"
    assert header_redacted("1=X-Api-Key: abc") == "1=X-Api-Key: ***"
    assert header_redacted("garbage") == "***"
    assert HEADERS(("A: b", "C: d")) == ("A: ***", "C: ***")
    assert HEADERS.secrets(("Authorization: Bearer abc", "http://h:1=X-Key: k-123")) == ["Bearer abc", "k-123"]


def test_a_plain_secret_is_shown_as_stars_unless_unset() -> None:
    assert SECRET("tok") == "***"
    assert SECRET("") == ""
    assert SECRET.secrets("tok-123") == ["tok-123"]
    assert SECRET.secrets("") == []


def test_the_scrubber_takes_known_secrets_out_in_any_shape() -> None:
    scrub = Scrubber([PW, "p@ss/word", "ab"])
    assert scrub(f"connection to server failed: FATAL: bad password {PW}!") == (
        "connection to server failed: FATAL: bad password ***!"
    )
    assert "p@ss/word" not in scrub("x p@ss/word y") and "p%40ss%2Fword" not in scrub("x p%40ss%2Fword y")
    assert scrub("a cab") == "a cab"  # too short to be scrubbed: it would blank every word holding it


def test_the_scrubber_hides_passwords_it_was_not_told_of() -> None:
    scrub = Scrubber()
    assert scrub('invalid dsn "postgresql://u:zz9@h/db"') == 'invalid dsn "postgresql://u:***@h/db"'
    assert scrub("missing = after host=h password=zz9 x") == "missing = after host=h password=*** x"
    assert scrub("uri postgresql://u@h/db?password=zz9&sslmode=x") == "uri postgresql://u@h/db?password=***&sslmode=x"
    assert scrub("plain text, no secret: http://h:8000/api") == "plain text, no secret: http://h:8000/api"
