from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from chroma_ha.cli.bench import _gateway_env
from chroma_ha.cli.repair import repair
from chroma_ha.cli.serve import serve
from chroma_ha.cli.verify import verify
from chroma_ha.errors import SettingsError
from chroma_ha.ops.pressure import Thresholds
from chroma_ha.settings import (
    DEFAULT_HEALTH_RISE,
    DEFINITIONS,
    AdminSettings,
    AlertSettings,
    HealthSettings,
    MonitorSettings,
    Settings,
    definition,
)

README = Path(__file__).parents[2] / "README.md"

# The flat names deployments use, in CHROMA_HA_<NAME> variables: none may change.
FLAT_NAMES = {
    "instances", "store", "host", "port", "ack", "write_timeout", "read_wait", "stale_reads", "max_body_bytes",
    "allow_reset", "poll_interval", "health_interval", "health_timeout", "health_rise", "health_fall",
    "request_timeout", "batch_max_records", "batch_max_bytes", "backoff_base", "backoff_cap", "retention",
    "retention_max_entries", "rebuild_after", "bootstrap_page_size", "lease_ttl", "gateway_id", "instance_weights",
    "membership_poll", "delete_expand_key", "delete_expand_collections", "admin_token",
    "slack_webhook", "alert_webhook", "monitor_interval", "pressure_window", "cpu_threshold", "memory_threshold",
    "lag_threshold", "backlog_threshold", "down_ratio_threshold", "alert_dedup_window", "alert_min_interval",
    "alert_rate_per_minute", "max_connections", "idle_timeout", "head_timeout", "send_timeout",
    "max_answer_bytes", "instance_headers",
    "auth_tokens_file", "auth_tokens", "unsafe_reads_ignore_freshness", "archive_dir", "archive_interval",
}  # fmt: skip

# One refused value per setting that has a rule (with what else it needs to be judged alone).
REFUSED = {
    "instances": {"CHROMA_HA_INSTANCES": "ftp://a"},
    "instance_weights": {"CHROMA_HA_INSTANCES": "http://a:1", "CHROMA_HA_INSTANCE_WEIGHTS": "-1"},
    "instance_headers": {"CHROMA_HA_INSTANCES": "http://a:1", "CHROMA_HA_INSTANCE_HEADERS": "no colon here"},
    "store": {"CHROMA_HA_STORE": "mysql://x"},
    "request_timeout": {"CHROMA_HA_REQUEST_TIMEOUT": "0"},
    "gateway_id": {"CHROMA_HA_GATEWAY_ID": ""},
    "port": {"CHROMA_HA_PORT": "70000"},
    "max_body_bytes": {"CHROMA_HA_MAX_BODY_BYTES": "0"},
    "max_connections": {"CHROMA_HA_MAX_CONNECTIONS": "0"},
    "idle_timeout": {"CHROMA_HA_IDLE_TIMEOUT": "0"},
    "head_timeout": {"CHROMA_HA_HEAD_TIMEOUT": "-1"},
    "send_timeout": {"CHROMA_HA_SEND_TIMEOUT": "0"},
    "max_answer_bytes": {"CHROMA_HA_MAX_ANSWER_BYTES": "0"},
    "ack": {"CHROMA_HA_ACK": "most"},
    "write_timeout": {"CHROMA_HA_WRITE_TIMEOUT": "-1"},
    "read_wait": {"CHROMA_HA_READ_WAIT": "-0.5"},
    "stale_reads": {"CHROMA_HA_STALE_READS": "sometimes"},
    "health_interval": {"CHROMA_HA_HEALTH_INTERVAL": "0"},
    "health_timeout": {"CHROMA_HA_HEALTH_TIMEOUT": "-1"},
    "health_rise": {"CHROMA_HA_HEALTH_RISE": "0"},
    "health_fall": {"CHROMA_HA_HEALTH_FALL": "0"},
    "poll_interval": {"CHROMA_HA_POLL_INTERVAL": "0"},
    "batch_max_records": {"CHROMA_HA_BATCH_MAX_RECORDS": "0"},
    "batch_max_bytes": {"CHROMA_HA_BATCH_MAX_BYTES": "-1"},
    "backoff_base": {"CHROMA_HA_BACKOFF_BASE": "0"},
    "backoff_cap": {"CHROMA_HA_BACKOFF_CAP": "0"},
    "retention": {"CHROMA_HA_RETENTION": "0"},
    "lease_ttl": {"CHROMA_HA_LEASE_TTL": "-10"},
    "membership_poll": {"CHROMA_HA_MEMBERSHIP_POLL": "0"},
    "archive_interval": {"CHROMA_HA_ARCHIVE_INTERVAL": "0"},
    "bootstrap_page_size": {"CHROMA_HA_BOOTSTRAP_PAGE_SIZE": "0"},
    "rebuild_after": {"CHROMA_HA_REBUILD_AFTER": "0"},
    "retention_max_entries": {"CHROMA_HA_RETENTION_MAX_ENTRIES": "-1"},
    "slack_webhook": {"CHROMA_HA_SLACK_WEBHOOK": "hooks.example/T/B/X"},
    "alert_webhook": {"CHROMA_HA_ALERT_WEBHOOK": "ftp://alerts.example/x"},
    "alert_dedup_window": {"CHROMA_HA_ALERT_DEDUP_WINDOW": "0"},
    "alert_min_interval": {"CHROMA_HA_ALERT_MIN_INTERVAL": "-1"},
    "alert_rate_per_minute": {"CHROMA_HA_ALERT_RATE_PER_MINUTE": "0"},
    "monitor_interval": {"CHROMA_HA_MONITOR_INTERVAL": "0"},
    "pressure_window": {"CHROMA_HA_PRESSURE_WINDOW": "-5"},
    "cpu_threshold": {"CHROMA_HA_CPU_THRESHOLD": "0"},
    "memory_threshold": {"CHROMA_HA_MEMORY_THRESHOLD": "120"},
    "lag_threshold": {"CHROMA_HA_LAG_THRESHOLD": "0"},
    "backlog_threshold": {"CHROMA_HA_BACKLOG_THRESHOLD": "0"},
    "down_ratio_threshold": {"CHROMA_HA_DOWN_RATIO_THRESHOLD": "2"},
}

NO_CHROMA_HA_VARIABLES: dict[str, str | None] = {d.variable: None for d in DEFINITIONS}


def test_environment_then_flags() -> None:
    env = {"CHROMA_HA_INSTANCES": "http://a:1, http://b:2", "CHROMA_HA_ACK": "all", "CHROMA_HA_PORT": "9000"}
    settings = Settings.load({"port": 9100}, env=env)
    assert settings.instances == ("http://a:1", "http://b:2")
    assert settings.consistency.ack == "all" and settings.http.port == 9100


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
    settings = Settings(
        store="postgresql://u:hunter2@h/db", alerts=AlertSettings(slack_webhook="https://hooks.example/T/B/X")
    )
    shown = settings.redacted()
    assert "hunter2" not in str(shown) and "T/B/X" not in str(shown)
    assert shown["slack_webhook"] == "https://hooks.example/***"  # the host only


# --- one definition per setting ---------------------------------------------------------------------------------


def test_the_flat_names_and_their_variables_are_those_deployments_use() -> None:
    assert {d.name for d in DEFINITIONS} == FLAT_NAMES
    assert len(DEFINITIONS) == len(FLAT_NAMES)
    for d in DEFINITIONS:
        assert d.variable == "CHROMA_HA_" + d.name.upper()
        assert definition(d.name) is d
    with pytest.raises(SettingsError) as info:
        definition("health_intervals")
    assert info.value.setting == "health_intervals"


def test_each_definition_says_where_its_value_lives() -> None:
    settings = Settings()
    for d in DEFINITIONS:
        holder = settings if d.group is None else getattr(settings, d.group)
        assert d.value_in(settings) == getattr(holder, d.field)
    assert definition("health_interval").path == "health.interval"
    assert definition("alert_webhook").path == "alerts.webhook"
    assert definition("instances").path == "instances"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.health.interval = 5.0  # type: ignore[misc]


@pytest.mark.parametrize("command", [serve, verify, repair], ids=lambda c: c.name)
def test_every_setting_has_a_flag_generated_from_its_definition(command: click.Command) -> None:
    options = {p.name: p for p in command.params if isinstance(p, click.Option)}
    for d in DEFINITIONS:
        option = options[d.name]
        assert d.flag in option.opts
        assert f"[{d.variable}, default {d.shown_default}]" in (option.help or "")
        assert option.default is None or (d.repeatable and option.multiple)
        if d.kind is bool:
            assert option.secondary_opts == ["--no-" + d.flag.removeprefix("--")]
    assert definition("instances").flag == "--instance" and options["instances"].multiple
    assert definition("health_interval").flag == "--health-interval"
    assert definition("allow_reset").flag == "--allow-reset"


def test_serve_has_no_flag_that_is_not_a_setting() -> None:
    assert {p.name for p in serve.params} == FLAT_NAMES


def test_the_help_shows_the_variable_and_the_default() -> None:
    result = CliRunner().invoke(serve, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "--health-interval FLOAT" in result.output
    assert "[CHROMA_HA_HEALTH_INTERVAL, default 1]" in result.output
    assert "--allow-reset / --no-allow-reset" in result.output
    assert "[CHROMA_HA_BATCH_MAX_RECORDS, default 2000]" in result.output


# --- coercion from text -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "path", "expected"),
    [
        ({"CHROMA_HA_ALLOW_RESET": "yes"}, "admin.allow_reset", True),
        ({"CHROMA_HA_ALLOW_RESET": "TRUE"}, "admin.allow_reset", True),
        ({"CHROMA_HA_ALLOW_RESET": "off"}, "admin.allow_reset", False),
        ({"CHROMA_HA_ALLOW_RESET": "0"}, "admin.allow_reset", False),
        ({"CHROMA_HA_HEALTH_RISE": "5"}, "health.rise", 5),
        ({"CHROMA_HA_BATCH_MAX_BYTES": "1048576"}, "replication.batch_max_bytes", 1048576),
        ({"CHROMA_HA_HEALTH_INTERVAL": "0.25"}, "health.interval", 0.25),
        ({"CHROMA_HA_RETENTION": "60"}, "replication.retention", 60.0),
        ({"CHROMA_HA_DELETE_EXPAND_KEY": "document_id"}, "deletes.expand_key", "document_id"),
        ({"CHROMA_HA_DELETE_EXPAND_COLLECTIONS": "docs, notes,"}, "deletes.expand_collections", ("docs", "notes")),
        ({"CHROMA_HA_INSTANCES": "http://a:1,http://b:2", "CHROMA_HA_INSTANCE_WEIGHTS": "1, 2.5"},
         "instance_weights", (1.0, 2.5)),
    ],
)  # fmt: skip
def test_each_type_is_read_from_text(env: dict[str, str], path: str, expected: object) -> None:
    settings = Settings.load(env=env)
    [d] = [d for d in DEFINITIONS if d.path == path]
    value = d.value_in(settings)
    assert value == expected and type(value) is type(expected)


def test_every_type_of_setting_is_covered_by_the_readers() -> None:
    assert {str(d.kind) for d in DEFINITIONS} == {
        "<class 'bool'>", "<class 'int'>", "<class 'float'>", "<class 'str'>", "tuple[str, ...]", "tuple[float, ...]",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("CHROMA_HA_ALLOW_RESET", "perhaps"),
        ("CHROMA_HA_HEALTH_FALL", "three"),
        ("CHROMA_HA_HEALTH_FALL", "2.5"),
        ("CHROMA_HA_READ_WAIT", "soon"),
        ("CHROMA_HA_INSTANCE_WEIGHTS", "1,heavy"),
    ],
)
def test_text_that_is_not_of_the_type_is_refused_naming_the_setting(variable: str, text: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.load(env={variable: text})
    assert "CHROMA_HA_" + info.value.setting.upper() == variable
    assert repr(text) in str(info.value)


def test_every_rule_is_exercised_here() -> None:
    assert set(REFUSED) == {d.name for d in DEFINITIONS if d.rule is not None}


@pytest.mark.parametrize("setting", sorted(REFUSED))
def test_a_value_its_rule_refuses_is_named(setting: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.load(env=REFUSED[setting])
    assert info.value.setting == setting
    assert str(info.value).startswith(f"{setting}: ")


def test_a_group_checks_its_values_when_built() -> None:
    with pytest.raises(SettingsError) as info:
        HealthSettings(interval=0)
    assert info.value.setting == "health_interval"
    with pytest.raises(SettingsError) as info:
        Settings(instances=("http://a:1", "http://b:2"), instance_weights=(1.0,))
    assert info.value.setting == "instance_weights"
    with pytest.raises(SettingsError) as info:
        Settings(instances=("http://a:1", "http://a:1"))
    assert info.value.setting == "instances"


def test_refusals_do_not_repeat_secrets() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.load(env={"CHROMA_HA_STORE": "mysql://u:hunter2@db/x"})
    assert "hunter2" not in str(info.value)
    with pytest.raises(SettingsError) as info:
        Settings.load(env={"CHROMA_HA_SLACK_WEBHOOK": "hooks.example/T/B/X"})
    assert "hooks.example" not in str(info.value)


# --- flags over environment over defaults -----------------------------------------------------------------------


def test_defaults_are_the_named_constants() -> None:
    assert Settings.load(env={}) == Settings()
    assert Settings().health == HealthSettings() and Settings().health.rise == DEFAULT_HEALTH_RISE


def test_overrides_are_read_like_variables_and_must_name_a_setting() -> None:
    settings = Settings.load({"port": "9100", "retention": 60, "ack": None, "instances": ()}, env={})
    assert settings.http.port == 9100 and type(settings.replication.retention) is float
    assert settings.consistency.ack == "one" and settings.instances == ()
    with pytest.raises(SettingsError) as info:
        Settings.load({"health_intervall": 2.0}, env={})
    assert info.value.setting == "health_intervall"


def test_flags_override_environment_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Settings] = []
    monkeypatch.setattr("chroma_ha.cli.serve.run_gateway", started.append)
    env = {
        **NO_CHROMA_HA_VARIABLES,
        "CHROMA_HA_INSTANCES": "http://a:1,http://b:2",
        "CHROMA_HA_HEALTH_INTERVAL": "2",
        "CHROMA_HA_HEALTH_TIMEOUT": "0.25",
        "CHROMA_HA_ALLOW_RESET": "true",
        "CHROMA_HA_ACK": "log",
    }
    flags = [
        "--instance", "http://c:3", "--instance", "http://d:4", "--instance-weights", "1,3",
        "--health-interval", "3", "--no-allow-reset", "--delete-expand-collections", "docs,notes",
    ]  # fmt: skip
    result = CliRunner().invoke(serve, flags, env=env)
    assert result.exit_code == 0, result.output
    [settings] = started
    assert settings.instances == ("http://c:3", "http://d:4")  # flag over variable
    assert settings.instance_weights == (1.0, 3.0)
    assert settings.health.interval == 3.0  # flag over variable
    assert settings.admin.allow_reset is False  # --no- flag over variable
    assert settings.deletes.expand_collections == ("docs", "notes")
    assert settings.health.timeout == 0.25 and settings.consistency.ack == "log"  # variable over default
    assert settings.health.rise == DEFAULT_HEALTH_RISE  # default


def test_a_bad_flag_stops_serve_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("chroma_ha.cli.serve.run_gateway", lambda settings: None)
    runner = CliRunner()
    result = runner.invoke(serve, ["--instance", "http://a:1", "--port", "0"], env=NO_CHROMA_HA_VARIABLES)
    assert result.exit_code == 2 and "bad setting port" in result.output
    result = runner.invoke(serve, ["--instance", "http://a:1", "--health-interval", "soon"], env=NO_CHROMA_HA_VARIABLES)
    assert result.exit_code == 2 and "--health-interval" in result.output
    result = runner.invoke(serve, [], env=NO_CHROMA_HA_VARIABLES)
    assert result.exit_code == 2 and "bad setting instances" in result.output


def test_bench_gateway_settings_are_variables_of_known_settings() -> None:
    assert _gateway_env(("ack=all", "HEALTH_INTERVAL=0.5")) == {
        "CHROMA_HA_ACK": "all", "CHROMA_HA_HEALTH_INTERVAL": "0.5",
    }  # fmt: skip
    with pytest.raises(click.UsageError, match="acks"):
        _gateway_env(("acks=all",))


def test_thresholds_come_from_the_monitor_group() -> None:
    thresholds = Thresholds.from_settings(MonitorSettings(pressure_window=60, backlog_threshold=5))
    assert thresholds.window == 60 and thresholds.backlog_entries == 5 and thresholds.down_ratio == 0.5


# --- what /status shows -----------------------------------------------------------------------------------------


def test_redacted_shows_every_setting_by_its_flat_name_with_secrets_hidden() -> None:
    settings = Settings(
        instances=("http://a:1",),
        store="postgresql://chroma:hunter2@db:5432/chroma_ha",
        admin=AdminSettings(token="s3cret"),
        alerts=AlertSettings(slack_webhook="https://hooks.slack.example/T/B/X", webhook="https://alerts.example/x"),
    )
    shown = settings.redacted()
    assert list(shown) == [d.name for d in DEFINITIONS]
    assert shown["admin_token"] == "***"
    assert shown["slack_webhook"] == "https://hooks.slack.example/***"  # webhooks by their host only
    assert shown["alert_webhook"] == "https://alerts.example/***"
    assert shown["store"] == "postgresql://chroma:***@db:5432/chroma_ha"
    assert shown["instances"] == ("http://a:1",) and shown["health_interval"] == 1.0
    for secret in ("s3cret", "hunter2", "T/B/X", "example/x"):
        assert secret not in str(shown)
    assert Settings().redacted()["admin_token"] == ""  # nothing to hide: shown as not set


# --- the README ---------------------------------------------------------------------------------------------------


def readme_settings() -> set[str]:
    """The names in the first column of the README's settings table."""
    lines = README.read_text().splitlines()
    start = lines.index("| setting | default | meaning |") + 2
    names: set[str] = set()
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        names.update(re.findall(r"`([A-Z_]+)`", line.split("|")[1]))
    return names


def test_the_readme_table_lists_only_settings() -> None:
    assert readme_settings() - {d.name.upper() for d in DEFINITIONS} == set()


def test_the_readme_table_lists_every_setting() -> None:
    assert sorted(d.name.upper() for d in DEFINITIONS if d.name.upper() not in readme_settings()) == []
