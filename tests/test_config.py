"""Settings: defaults, environment, then the app's own mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.config import ConfigError, Settings
from tests.conftest import make_app, runtime_of


def test_defaults_are_the_contracts() -> None:
    settings = Settings.from_mapping(Settings.defaults())
    assert settings.database_url == "sqlite:///taskapi.sqlite3"
    assert settings.workers == 32
    assert settings.max_queued == 10_000
    assert settings.result_ttl == 7 * 24 * 3600
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.log_level == "INFO"
    assert settings.log_format == "text"


def test_environment_values_are_converted_and_layered() -> None:
    env = Settings.from_environ(
        {"TASKS_WORKERS": "8", "TASKS_RESULT_TTL": "3600.5", "HOME": "/root", "TASKS_IMPORT": "a,b"}
    )
    assert env == {"TASKS_WORKERS": "8", "TASKS_RESULT_TTL": "3600.5", "TASKS_IMPORT": "a,b"}
    settings = Settings.from_mapping({**Settings.defaults(), **env, "TASKS_WORKERS": 2})
    assert settings.workers == 2
    assert settings.result_ttl == 3600.5
    assert settings.import_modules == ["a", "b"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("TASKS_WORKERS", "-1"),
        ("TASKS_WORKERS", "four"),
        ("TASKS_MAX_QUEUED", "0"),
        ("TASKS_RESULT_TTL", "0"),
        ("TASKS_MAX_BODY_BYTES", "10"),
        ("TASKS_POLL_INTERVAL", "0"),
        ("TASKS_LOG_LEVEL", "LOUD"),
        ("TASKS_LOG_FORMAT", "xml"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        Settings.from_mapping({key: value})


def test_the_log_settings_are_read_alone_before_the_others() -> None:
    env = {"TASKS_LOG_LEVEL": "debug", "TASKS_LOG_FORMAT": "json", "TASKS_WORKERS": "-1"}
    settings = Settings.for_logging(env)
    assert (settings.log_level, settings.log_format) == ("debug", "json")
    assert settings.workers == 32  # a bad TASKS_WORKERS is create_app's to report
    with pytest.raises(ConfigError, match="TASKS_LOG_FORMAT must be text or json, not 'xml'"):
        Settings.for_logging({"TASKS_LOG_FORMAT": "xml"})


def test_queues_and_admins_are_comma_separated_names() -> None:
    settings = Settings.from_mapping(
        {"TASKS_QUEUES": " emails, reports.daily ,,emails", "TASKS_ADMINS": "alice, ops"}
    )
    assert settings.queues == ("emails", "reports.daily"), "blanks dropped, each once, in order"
    assert settings.admins == ("alice", "ops")
    defaults = Settings.from_mapping(Settings.defaults())
    assert defaults.queues == () and defaults.admins == (), "every queue; no admins"
    assert Settings.from_mapping({"TASKS_QUEUES": ""}).queues == ()
    assert Settings.from_mapping({"TASKS_QUEUES": ["a", "b"]}).queues == ("a", "b")


@pytest.mark.parametrize("value", ["Emails", "emails,-x", "a b", "x" * 64, "emails!", "é"])
def test_a_bad_queue_name_says_what_a_queue_name_is(value: str) -> None:
    with pytest.raises(ConfigError, match=r"TASKS_QUEUES: .* is not a queue name; .*lower-case"):
        Settings.from_mapping({"TASKS_QUEUES": value})


@pytest.mark.parametrize("value", ["al ice", "alice:tok"])
def test_a_bad_admin_name_says_how_to_name_admins(value: str) -> None:
    with pytest.raises(ConfigError, match=r"TASKS_ADMINS: .* is not a caller name"):
        Settings.from_mapping({"TASKS_ADMINS": value})


def test_admins_must_be_callers_of_the_api_keys(db_path: Path) -> None:
    keys = "alice:tok-a,bob:tok-b"
    with pytest.raises(
        ConfigError,
        match=r"TASKS_ADMINS: 'carol' is not a caller of TASKS_API_KEYS \(its "
        r"callers: alice, bob\)",
    ):
        make_app(db_path, TASKS_API_KEYS=keys, TASKS_ADMINS="alice,carol")
    with pytest.raises(ConfigError, match="no API keys are set: set TASKS_API_KEYS"):
        make_app(db_path, TASKS_ADMINS="alice")
    app = make_app(db_path, TASKS_API_KEYS=keys, TASKS_ADMINS="bob")
    try:
        assert runtime_of(app).settings.admins == ("bob",)
    finally:
        runtime_of(app).store.close()
