"""Tests of shared.models: function settings, names and pool entries (BRIEF.md §3.6)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotpool.shared.errors import InvalidRequest
from hotpool.shared.function_env import MAX_ENV_BYTES, MAX_ENV_VARS
from hotpool.shared.models import FunctionConfig, PoolEntry, validate_name

pytestmark = pytest.mark.unit


def env_json(env: dict) -> str:
    return orjson.dumps(env).decode()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({}, FunctionConfig(), id="defaults"),
        pytest.param({"runtime": "python"}, FunctionConfig(runtime="python"), id="runtime"),
        pytest.param({"handler": "app.main"}, FunctionConfig(handler="app.main"), id="handler"),
        pytest.param(
            {"handler": "pkg.sub.run_it"}, FunctionConfig(handler="pkg.sub.run_it"), id="dotted"
        ),
        pytest.param({"memory_mb": "256"}, FunctionConfig(memory_mb=256), id="memory"),
        pytest.param({"memory_mb": "64"}, FunctionConfig(memory_mb=64), id="memory-min"),
        pytest.param({"memory_mb": "10240"}, FunctionConfig(memory_mb=10240), id="memory-max"),
        pytest.param({"timeout_s": "1.5"}, FunctionConfig(timeout_s=1.5), id="timeout"),
        pytest.param({"timeout_s": "0.1"}, FunctionConfig(timeout_s=0.1), id="timeout-min"),
        pytest.param({"timeout_s": "900"}, FunctionConfig(timeout_s=900.0), id="timeout-max"),
        pytest.param({"env": "{}"}, FunctionConfig(env={}), id="env-empty"),
        pytest.param(
            {"env": env_json({"A": "1", "_B2": ""})},
            FunctionConfig(env={"A": "1", "_B2": ""}),
            id="env",
        ),
        pytest.param(
            {"env": env_json({f"K{i}": "v" for i in range(MAX_ENV_VARS)})},
            FunctionConfig(env={f"K{i}": "v" for i in range(MAX_ENV_VARS)}),
            id="env-max-vars",
        ),
    ],
)
def test_from_params_accepts_good_values(params, expected):
    assert FunctionConfig.from_params(params) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"memory": "128"}, "unknown setting(s) memory", id="unknown-setting"),
        pytest.param({"memory_mb": "lots"}, "memory_mb must be a number", id="memory-text"),
        pytest.param({"memory_mb": "128.5"}, "memory_mb must be a number", id="memory-float"),
        pytest.param({"memory_mb": ""}, "memory_mb must be a number", id="memory-empty"),
        pytest.param({"memory_mb": "63"}, "memory_mb must be between", id="memory-low"),
        pytest.param({"memory_mb": "10241"}, "memory_mb must be between", id="memory-high"),
        pytest.param({"memory_mb": "-128"}, "memory_mb must be between", id="memory-negative"),
        pytest.param({"timeout_s": "soon"}, "timeout_s must be a number", id="timeout-text"),
        pytest.param({"timeout_s": "0.05"}, "timeout_s must be between", id="timeout-low"),
        pytest.param({"timeout_s": "901"}, "timeout_s must be between", id="timeout-high"),
        pytest.param({"timeout_s": "nan"}, "timeout_s must be between", id="timeout-nan"),
        pytest.param({"timeout_s": "inf"}, "timeout_s must be between", id="timeout-inf"),
        pytest.param({"runtime": "node"}, "runtime 'node' is not supported", id="runtime"),
        pytest.param({"runtime": ""}, "is not supported", id="runtime-empty"),
        pytest.param({"handler": "main"}, "handler 'main' must be", id="handler-no-dot"),
        pytest.param({"handler": "main."}, "must be 'module.function'", id="handler-trailing"),
        pytest.param({"handler": "1main.h"}, "must be 'module.function'", id="handler-digit"),
        pytest.param({"handler": "os.system;x"}, "must be 'module.function'", id="handler-junk"),
        pytest.param({"env": "{not json"}, "env must be a JSON object", id="env-not-json"),
        pytest.param({"env": "[1, 2]"}, "env must be a JSON object", id="env-list"),
        pytest.param({"env": "null"}, "env must be a JSON object", id="env-null"),
        pytest.param({"env": '"A=1"'}, "env must be a JSON object", id="env-string"),
        pytest.param({"env": '{"A": 1}'}, "env value of A must be a string", id="env-number"),
        pytest.param({"env": '{"A": null}'}, "env value of A must be a string", id="env-null-val"),
        pytest.param({"env": '{"A": ["x"]}'}, "env value of A must be a string", id="env-list-val"),
        pytest.param({"env": '{"1A": "x"}'}, "env name '1A' must match", id="env-bad-name"),
        pytest.param({"env": '{"A-B": "x"}'}, "env name 'A-B' must match", id="env-dash-name"),
        pytest.param({"env": '{"": "x"}'}, "env name '' must match", id="env-empty-name"),
        pytest.param({"env": '{"A": "x\\u0000y"}'}, "must not contain NUL", id="env-nul"),
        pytest.param(
            {"env": env_json({f"K{i}": "v" for i in range(MAX_ENV_VARS + 1)})},
            f"at most {MAX_ENV_VARS} are allowed",
            id="env-too-many",
        ),
        pytest.param(
            {"env": env_json({"BIG": "x" * MAX_ENV_BYTES})},
            f"at most {MAX_ENV_BYTES} are allowed",
            id="env-too-large",
        ),
        pytest.param(
            # the limit counts encoded bytes, not characters
            {"env": env_json({"U": "é" * (MAX_ENV_BYTES // 2)})},
            f"at most {MAX_ENV_BYTES} are allowed",
            id="env-too-large-utf8",
        ),
    ],
)
def test_from_params_refuses_bad_values(params, message):
    with pytest.raises(InvalidRequest) as info:
        FunctionConfig.from_params(params)

    assert message in info.value.message
    assert info.value.status == 400


def test_from_params_names_every_unknown_setting():
    with pytest.raises(InvalidRequest) as info:
        FunctionConfig.from_params({"zeta": "1", "alpha": "2", "memory_mb": "128"})

    assert "unknown setting(s) alpha, zeta" in info.value.message


def test_env_at_the_byte_limit_is_accepted():
    value = "x" * (MAX_ENV_BYTES - len("BIG"))

    config = FunctionConfig.from_params({"env": env_json({"BIG": value})})

    assert config.env == {"BIG": value}


def test_to_dict_masks_env_values_on_request():
    config = FunctionConfig(env={"TOKEN": "s3cret"})

    assert config.to_dict(mask_env=True)["env"] == {"TOKEN": "***"}
    assert config.to_dict()["env"] == {"TOKEN": "s3cret"}


@pytest.mark.parametrize(
    "name",
    ["a", "echo", "hello-world", "fn_2", "x" * 63, "a0-_"],
)
def test_validate_name_accepts(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 64, id="too-long"),
        pytest.param("Echo", id="upper"),
        pytest.param("1abc", id="digit-first"),
        pytest.param("-abc", id="dash-first"),
        pytest.param("_abc", id="underscore-first"),
        pytest.param("a b", id="space"),
        pytest.param("a.b", id="dot"),
        pytest.param("a/b", id="slash"),
        pytest.param("../etc", id="traversal"),
        pytest.param("a|b", id="pipe"),  # '|' separates the fields of a pool entry
        pytest.param("a:b", id="colon"),  # ':' separates the parts of a pool key
        pytest.param("café", id="non-ascii"),
    ],
)
def test_validate_name_refuses(name):
    with pytest.raises(InvalidRequest):
        validate_name(name)


def test_validate_name_refuses_trailing_newline():
    with pytest.raises(InvalidRequest):
        validate_name("echo\n")


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"handler": "main.handler\n"}, id="handler"),
        pytest.param({"env": '{"KEY\\n": "x"}'}, id="env-name"),
    ],
)
def test_from_params_refuses_trailing_newline(params):
    with pytest.raises(InvalidRequest):
        FunctionConfig.from_params(params)


# --- PoolEntry ---------------------------------------------------------------------------------

# what a real entry holds: a valid function name, ids and an address without the separator
names = st.from_regex(r"\A[a-z][a-z0-9_-]{0,62}\Z")
fields = st.text(
    alphabet=st.characters(blacklist_characters="|", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=40,
)


@given(
    function=names,
    version=st.integers(min_value=1, max_value=2**31),
    manager_id=fields,
    container_id=fields,
    address=fields,
    secret=fields,
)
def test_pool_entry_roundtrip(function, version, manager_id, container_id, address, secret):
    e = PoolEntry(function, version, manager_id, container_id, address, secret)

    encoded = e.encode()

    assert PoolEntry.decode(encoded) == e
    assert PoolEntry.decode(encoded.encode()) == e  # Redis hands back bytes


def test_pool_entry_encoding_is_pipe_separated():
    e = PoolEntry("echo", 3, "m1", "c-9", "127.0.0.1:9000", "s3cr3t")

    assert e.encode() == "echo|3|m1|c-9|127.0.0.1:9000|s3cr3t"


def test_pool_entry_without_a_secret_decodes_and_hides_it_from_repr():
    # an entry from a Manager of before container secrets still decodes (rolling upgrade)
    assert PoolEntry.decode("echo|3|m1|c-9|127.0.0.1:9000").secret == ""
    assert "s3cr3t" not in repr(PoolEntry("echo", 3, "m1", "c-9", "h:1", "s3cr3t"))
