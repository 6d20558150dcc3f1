"""The gateway's own credentials as the settings read them: instance_headers for every instance and for one (by URL
or index), the userinfo of an instance URL as Basic, which one wins, refusals that never repeat a value, and the
secrets the settings know of (for the scrubber)."""

from __future__ import annotations

import base64

import pytest

from chroma_ha.errors import SettingsError
from chroma_ha.redaction import header_item
from chroma_ha.settings import Settings

A, B = "http://10.0.0.1:8000", "http://10.0.0.2:8000"


def headers(**flags: object) -> dict[str, dict[str, str]]:
    settings = Settings.load(flags, env={})
    return {i: dict(h) for i, h in settings.headers_for_instances().items()}


def test_a_header_item_reads_with_or_without_a_key() -> None:
    assert header_item("Authorization: Bearer a=b") == (None, "Authorization", "Bearer a=b")
    assert header_item("X-Key:abc=def") == (None, "X-Key", "abc=def")
    assert header_item("1=X-Key: v") == ("1", "X-Key", "v")
    assert header_item(f"{B}=X-Key: v") == (B, "X-Key", "v")
    assert header_item("no colon") is None and header_item("bad name: v") is None


def test_headers_go_to_every_instance_or_to_one_by_index_or_url() -> None:
    found = headers(
        instances=(A, B),
        instance_headers=("X-Shared: s", "1=Authorization: Bearer b", f"{A}/=X-Own: a", "x-shared: s2"),
    )
    assert found == {
        A: {"x-shared": "s2", "X-Own": "a"},  # a later item of the same name replaces an earlier one
        B: {"x-shared": "s2", "Authorization": "Bearer b"},
    }


def test_userinfo_is_taken_out_of_the_instance_and_sent_as_basic() -> None:
    settings = Settings.load({"instances": ("http://gw:p%40ss@10.0.0.1:8000", B)}, env={})
    assert settings.instances == (A, B)
    basic = base64.b64encode(b"gw:p@ss").decode()
    assert dict(settings.headers_for_instances()[A]) == {"Authorization": f"Basic {basic}"}
    assert settings.headers_for_instances()[B] == ()
    assert "p@ss" in settings.secrets(env={}) and basic in settings.secrets(env={})
    assert "p%40ss" not in repr(settings) and "p@ss" not in repr(settings)


def test_the_most_specific_header_wins() -> None:
    found = headers(
        instances=("http://u:pw@10.0.0.1:8000", B),
        instance_headers=("Authorization: Bearer everyone", "0=Authorization: Bearer only-a"),
    )
    assert found[A] == {"Authorization": "Bearer only-a"}  # its own header, over its userinfo, over everyone's
    assert found[B] == {"Authorization": "Bearer everyone"}
    assert headers(instances=("http://u:pw@10.0.0.1:8000",), instance_headers=("Authorization: Bearer all",)) == {
        A: {"Authorization": f"Basic {base64.b64encode(b'u:pw').decode()}"}
    }


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        (("X-Key secret-value",), "is not 'Name: value'"),
        (("Host: secret-value",), "cannot be set"),
        (("Proxy-Authorization: secret-value",), "cannot be set"),
        (("X-Key:",), "has no value"),
        (("5=X-Key: secret-value",), "no instance 5"),
        (("http://u:secret-value@10.9.9.9:1=X-Key: v",), "is not one of the instances"),
    ],
)
def test_a_bad_header_item_is_refused_without_its_value(items: tuple[str, ...], problem: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.load({"instances": (A, B), "instance_headers": items}, env={})
    assert info.value.setting == "instance_headers" and problem in str(info.value)
    assert "secret-value" not in str(info.value)


def test_two_urls_that_differ_only_by_userinfo_are_one_instance() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.load({"instances": ("http://a:x@10.0.0.1:8000", A)}, env={})
    assert info.value.setting == "instances" and "x@" not in str(info.value)


def test_a_bad_instance_url_is_refused_without_its_userinfo() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.load({"instances": ("ftp://u:secret-value@h",)}, env={})
    assert "secret-value" not in str(info.value)


def test_the_secrets_in_force_are_every_secret_setting_and_the_environment_password() -> None:
    settings = Settings.load(
        {
            "instances": ("http://u:inst-pw@10.0.0.1:8000",),
            "instance_headers": ("X-Key: hdr-value",),
            "store": "postgresql://app:store-pw@db/x",
            "admin_token": "admin-tok",
            "slack_webhook": "https://hooks.slack.com/services/T/B/slack-path",
        },
        env={},
    )
    secrets = settings.secrets(env={"PGPASSWORD": "env-pw", "HOME": "/root"})
    for secret in ("inst-pw", "hdr-value", "store-pw", "admin-tok", "services/T/B/slack-path", "env-pw"):
        assert secret in secrets
    assert "/root" not in secrets
    scrub = settings.scrubber(env={"PGPASSWORD": "env-pw"})
    assert scrub("store-pw admin-tok env-pw inst-pw hdr-value") == "*** *** *** *** ***"
    shown = str(settings.redacted())
    assert all(s not in shown for s in ("inst-pw", "hdr-value", "store-pw", "admin-tok", "slack-path"))
