from __future__ import annotations

import pytest

from chroma_ha.errors import SettingsError
from chroma_ha.settings import Settings


def test_environment_then_flags() -> None:
    env = {"CHROMA_HA_INSTANCES": "http://a:1, http://b:2", "CHROMA_HA_ACK": "all", "CHROMA_HA_PORT": "9000"}
    settings = Settings.load({"port": 9100}, env=env)
    assert settings.instances == ("http://a:1", "http://b:2")
    assert settings.ack == "all" and settings.port == 9100


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"CHROMA_HA_ACK": "most"}, "ack"),
        ({"CHROMA_HA_INSTANCES": "ftp://a"}, "instances"),
        ({"CHROMA_HA_STORE": "mysql://x"}, "store"),
        ({"CHROMA_HA_PORT": "eighty"}, "port"),
        ({"CHROMA_HA_WRITE_TIMEOUT": "-1"}, "write_timeout"),
        ({"CHROMA_HA_ALLOW_RESET": "perhaps"}, "allow_reset"),
    ],
)
def test_a_bad_setting_is_named(env: dict[str, str], setting: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.load(env=env)
    assert info.value.setting == setting
    assert setting in str(info.value)


def test_sqlite_paths_read_as_sqlalchemy_writes_them() -> None:
    assert Settings(store="sqlite:///rel/wal.db").sqlite_path == "rel/wal.db"
    assert Settings(store="sqlite:////abs/wal.db").sqlite_path == "/abs/wal.db"


def test_secrets_are_redacted() -> None:
    settings = Settings(store="postgresql://u:hunter2@h/db", slack_webhook="https://hooks.example/T/B/X")
    shown = settings.redacted()
    assert "hunter2" not in str(shown) and "hooks.example" not in str(shown)
