"""Tests of shared.settings: building Settings from an environment mapping."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hotpool.shared.settings import Settings, SettingsError

pytestmark = pytest.mark.unit


def test_empty_environment_gives_the_defaults():
    s = Settings.from_env({})

    assert s == Settings()
    assert s.port == 8080
    assert s.backend == "process"
    assert s.redis_url == ""
    assert s.idle_ttl_s == 600.0


def test_an_explicit_mapping_ignores_the_process_environment(monkeypatch):
    monkeypatch.setenv("HOTPOOL_PORT", "9999")

    assert Settings.from_env({}).port == 8080
    assert Settings.from_env().port == 9999


def test_values_are_converted_to_the_field_types(tmp_path):
    s = Settings.from_env(
        {
            "HOTPOOL_PORT": "9000",
            "HOTPOOL_IDLE_TTL_S": "12.5",
            "HOTPOOL_CAPACITY_CONTAINERS": "3",
            "HOTPOOL_STATE_DIR": str(tmp_path / "state"),
            "HOTPOOL_BACKEND": "docker",
            "HOTPOOL_REDIS_URL": "redis://r:6379/0",
        }
    )

    assert s.port == 9000 and type(s.port) is int
    assert s.idle_ttl_s == 12.5 and type(s.idle_ttl_s) is float
    assert s.capacity_containers == 3
    assert s.state_dir == tmp_path / "state"
    assert isinstance(s.state_dir, Path)
    assert s.backend == "docker"
    assert s.redis_url == "redis://r:6379/0"


def test_an_int_is_accepted_for_a_float_field():
    assert Settings.from_env({"HOTPOOL_LEASE_GRACE_S": "7"}).lease_grace_s == 7.0


def test_unrelated_variables_are_ignored():
    assert Settings.from_env({"PORT": "1", "HOTPOOL_URL": "http://x"}) == Settings()


def test_overrides_win_over_the_environment():
    s = Settings.from_env({"HOTPOOL_PORT": "9000"}, port=9100)

    assert s.port == 9100


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("HOTPOOL_PORT", "eighty"),
        ("HOTPOOL_PORT", "80.5"),
        ("HOTPOOL_PORT", ""),
        ("HOTPOOL_IDLE_TTL_S", "ten"),
        ("HOTPOOL_MAX_EVENT_BYTES", "6MB"),
    ],
)
def test_bad_number_names_the_variable(variable, raw):
    with pytest.raises(SettingsError) as info:
        Settings.from_env({variable: raw})

    assert variable in str(info.value)


def test_an_unknown_docker_reach_is_refused_naming_the_choices():
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"HOTPOOL_DOCKER_REACH": "tunnel"})
    assert "HOTPOOL_DOCKER_REACH='tunnel'" in str(info.value)
    assert "auto, bridge, published" in str(info.value)


def test_bad_backend_is_refused():
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"HOTPOOL_BACKEND": "kubernetes"})

    assert "HOTPOOL_BACKEND" in str(info.value)


@pytest.mark.parametrize(
    "variable",
    [
        "HOTPOOL_PORT",
        "HOTPOOL_MANAGER_PORT",
        "HOTPOOL_IDLE_TTL_S",
        "HOTPOOL_HEARTBEAT_TTL_S",
        "HOTPOOL_CAPACITY_CONTAINERS",
        "HOTPOOL_MAX_EVENT_BYTES",
        "HOTPOOL_LOG_LIMIT_BYTES",
        "HOTPOOL_PACKAGE_CACHE_MB",
    ],
)
def test_negative_value_is_refused_naming_the_variable(variable):
    with pytest.raises(SettingsError) as info:
        Settings.from_env({variable: "-1"})

    assert variable in str(info.value)


@pytest.mark.parametrize("variable", ["HOTPOOL_PUBLIC_RATE_PER_S", "HOTPOOL_AUTH_FAILURES_PER_S"])
def test_a_rate_of_zero_is_refused_naming_the_variable(variable):
    # a public web function's rate of 0 would mean "metered already": no limit at all
    with pytest.raises(SettingsError) as info:
        Settings.from_env({variable: "0"})

    assert variable in str(info.value)


def test_settings_error_is_a_value_error():
    assert issubclass(SettingsError, ValueError)


def test_relative_state_dir_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    s = Settings.from_env({"HOTPOOL_STATE_DIR": "rel/state"})

    assert s.state_dir.is_absolute()
    assert s.state_dir == tmp_path / "rel" / "state"
    assert s.code_dir == tmp_path / "rel" / "state" / "code"
    assert s.effective_database_url == f"sqlite+aiosqlite:///{tmp_path}/rel/state/hotpool.db"


def test_default_state_dir_is_absolute():
    assert Settings().state_dir.is_absolute()


def test_secrets_are_not_in_repr():
    s = Settings.from_env(
        {
            "HOTPOOL_REDIS_URL": "redis://:redispass@r:6379/0",
            "HOTPOOL_DATABASE_URL": "mysql+asyncmy://u:dbpass@db/hotpool",
        }
    )

    for text in (repr(s), str(s)):
        assert "redispass" not in text
        assert "dbpass" not in text
    assert s.redis_url.endswith("@r:6379/0")
    assert s.effective_database_url == "mysql+asyncmy://u:dbpass@db/hotpool"


def test_replace_validates_again():
    s = Settings()

    assert s.replace(port=1).port == 1
    with pytest.raises(SettingsError):
        s.replace(backend="nope")


def test_nan_is_refused():
    with pytest.raises(SettingsError):
        Settings.from_env({"HOTPOOL_IDLE_TTL_S": "nan"})


def test_every_numeric_setting_refuses_negative_values():
    accepted = []
    for f in dataclasses.fields(Settings):
        if f.type not in ("int", "float", int, float):
            continue
        try:
            Settings.from_env({f"HOTPOOL_{f.name.upper()}": "-1"})
        except SettingsError:
            continue
        accepted.append(f.name)

    assert accepted == []


def test_function_region_defaults_to_us_east_1_and_is_checked():
    assert Settings.from_env({}).function_region == "us-east-1"
    assert (
        Settings.from_env({"HOTPOOL_FUNCTION_REGION": "eu-west-3"}).function_region == "eu-west-3"
    )
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"HOTPOOL_FUNCTION_REGION": "Not A Region"})
    assert "HOTPOOL_FUNCTION_REGION" in str(info.value)


@pytest.mark.parametrize("url", ["not a url", "ftp://x/ws", "http://", "http://a b/ws"])
def test_a_connections_url_that_is_not_http_stops_start_up_naming_it(url):
    with pytest.raises(SettingsError, match="HOTPOOL_CONNECTIONS_URL"):
        Settings.from_env({"HOTPOOL_CONNECTIONS_URL": url})


@pytest.mark.parametrize("name", ["HOTPOOL_MAX_STREAM_BYTES", "HOTPOOL_STREAM_BUFFER_BYTES"])
def test_a_stream_limit_of_zero_is_refused(name):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: "0"})


@pytest.mark.parametrize(
    "name",
    [
        "HOTPOOL_PORT",
        "HOTPOOL_MANAGER_PORT",
        "HOTPOOL_METRICS_PORT",
        "HOTPOOL_MANAGER_METRICS_PORT",
    ],
)
def test_a_port_beyond_65535_is_refused_naming_the_variable(name):
    # no TCP port is above 65535: the ready line would announce an address nothing listens on
    with pytest.raises(SettingsError, match=f"{name} must be a port number, 0-65535"):
        Settings.from_env({name: "70000"})
    assert Settings.from_env({name: "65535"})
